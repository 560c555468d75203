// Command lastcall runs the lastcall webhook's injection engine offline: `lastcall inject` on manifests (for
// CI and GitOps), `lastcall explain` to see what the webhook will do and why, `lastcall profiles` for the
// catalog. See docs/cli.md; the logic lives in internal/cli.
package main

import (
	"os"

	"github.com/lastcall-dev/lastcall/internal/cli"
)

func main() {
	os.Exit(cli.Run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
