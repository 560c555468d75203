// Command lastcall-shim is the small static helper that lastcall installs into pods: it installs itself into a
// shared volume, runs graceful preStop hooks, supervises a known command as PID 1 and checks server settings.
// See package github.com/lastcall-dev/lastcall/pkg/shim for the subcommands and exit codes.
package main

import (
	"os"

	"github.com/lastcall-dev/lastcall/pkg/shim"
)

func main() {
	os.Exit(shim.Main(os.Args[1:], os.Stdout, os.Stderr))
}
