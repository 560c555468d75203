// Command lastcall runs the lastcall webhook's injection engine offline: `lastcall inject` on manifests (for
// CI and GitOps), `lastcall explain` to see what the webhook will do and why, `lastcall profiles` for the
// catalog. See docs/cli.md; the logic lives in internal/cli.
package main

import (
	"os"
	"runtime/debug"

	"github.com/lastcall-dev/lastcall/internal/cli"
)

func main() {
	// A short batch run over one input: trading memory for fewer collections is the cheapest speed-up
	// (docs/performance.md). GOGC in the environment still wins.
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(cli.GCPercent)
	}
	os.Exit(cli.Run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
