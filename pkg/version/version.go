// Package version holds the build's version string, shared by the three binaries (the shim prints it, the
// webhook stamps it on pods); the Makefile sets it with
// -ldflags '-X github.com/lastcall-dev/lastcall/pkg/version.Version=...'.
package version

// Version is the release this binary was built from ("v0.1.0-dev" for builds outside the Makefile).
var Version = "v0.1.0-dev"
