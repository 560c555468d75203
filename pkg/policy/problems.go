package policy

import (
	"fmt"
	"strings"
	"time"

	"github.com/lastcall-dev/lastcall/pkg/profiles"
)

// ProfileProblems returns why Compile cannot compile the profile, one message per field that names the value
// (nil: it can). Compile refuses the whole catalog for any of them; `lastcall policy render` asks first, per
// ShutdownProfile, so it can leave out just the ones that cannot be compiled (the way the webhook leaves out a
// ShutdownProfile the catalog refuses) and report them, instead of rendering nothing.
func ProfileProblems(p *profiles.Profile) []string {
	var out []string
	if err := p.Validate(); err != nil {
		out = append(out, strings.Split(err.Error(), "\n")...)
	}
	// Durations become CEL duration literals and integer milliseconds.
	for _, d := range []struct {
		field string
		v     time.Duration
	}{{"drainDelay", p.DrainDelay}, {"drainTimeout", p.DrainTimeout}} {
		if d.v%time.Millisecond != 0 {
			out = append(out, fmt.Sprintf("%s %s: policy mode renders durations with millisecond precision", d.field, d.v))
		}
	}
	// Patterns become CEL string tests (globExpr), as the compiler writes them.
	pattern := func(field, pat string) {
		if _, err := globExpr("s", pat); err != nil {
			out = append(out, fmt.Sprintf("%s %q: %v", field, pat, err))
		}
	}
	for i, pat := range p.Match.Images {
		pattern(fmt.Sprintf("match.images[%d]", i), pat)
	}
	for i, pat := range p.Match.Commands {
		pattern(fmt.Sprintf("match.commands[%d]", i), pat)
	}
	for _, w := range p.Wrappers {
		pattern("wrapper", w.Command)
	}
	return out
}
