//go:build !unix

package testserver

// lockFile does not lock where flock is missing: concurrent builds then
// each write their own temporary file and the last rename wins.
func lockFile(string) (unlock func(), err error) { return func() {}, nil }
