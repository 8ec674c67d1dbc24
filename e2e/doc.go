// Package e2e holds end-to-end tests that run the real tandem binary.
package e2e
