// Package version holds tandem's version, set at build time with
// -ldflags "-X tandem/version.Version=…".
package version

// Version is the release; "dev" for builds from a work tree.
var Version = "dev"
