package policy_test

import (
	"strings"
	"testing"
	"time"

	"github.com/lastcall-dev/lastcall/pkg/mutate"
	"github.com/lastcall-dev/lastcall/pkg/policy"
	"github.com/lastcall-dev/lastcall/pkg/profiles"
)

// ProfileProblems and Compile agree: a profile has problems exactly when a catalog holding it does not
// compile, and each problem names the field and its value. (policy render relies on this to leave out only
// the profiles that cannot be compiled.)
func TestProfileProblemsAgreeWithCompile(t *testing.T) {
	for _, p := range profiles.Builtins().All() {
		if probs := policy.ProfileProblems(p); len(probs) > 0 {
			t.Errorf("built-in %s: %q", p.Name, probs)
		}
	}
	for _, tc := range []struct {
		name string
		ov   profiles.Override
		want []string // in the problems, in order; none: compiles
	}{
		{"fine", profiles.Override{StopSignal: "SIGTERM", DrainDelay: dur(1500 * time.Millisecond), Match: &profiles.Match{Images: []string{"example.com/app*", "[a-c]pp"}}}, nil},
		{"sub-ms-delay", profiles.Override{StopSignal: "SIGTERM", DrainDelay: dur(1500 * time.Microsecond)}, []string{"drainDelay 1.5ms"}},
		{"sub-ms-timeout", profiles.Override{StopSignal: "SIGTERM", DrainTimeout: dur(2*time.Second + time.Nanosecond)}, []string{"drainTimeout 2.000000001s"}},
		// path.Match accepts a reversed range (it matches nothing); RE2 refuses it.
		{"image-range", profiles.Override{StopSignal: "SIGTERM", Match: &profiles.Match{Images: []string{"ok", "[z-a]pp"}}}, []string{`match.images[1] "[z-a]pp"`}},
		{"command-range", profiles.Override{StopSignal: "SIGTERM", Match: &profiles.Match{Commands: []string{"[z-a]"}}}, []string{`match.commands[0] "[z-a]"`}},
		{"two", profiles.Override{StopSignal: "SIGTERM", DrainDelay: dur(time.Microsecond), Match: &profiles.Match{Commands: []string{"[9-0]"}}}, []string{"drainDelay 1µs", `match.commands[0] "[9-0]"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.ov.Name, tc.ov.Source = tc.name, "ShutdownProfile/"+tc.name
			c, errs := profiles.Builtins().Layer([]profiles.Override{tc.ov})
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			p, _ := c.Get(tc.name)
			probs := policy.ProfileProblems(p)
			_, err := policy.Compile(policy.Options{Policy: mutate.DefaultPolicy(), Catalog: c})
			if (len(probs) == 0) != (err == nil) {
				t.Fatalf("ProfileProblems %q, Compile error %v: they disagree", probs, err)
			}
			if len(probs) != len(tc.want) {
				t.Fatalf("problems %q; want %d naming %q", probs, len(tc.want), tc.want)
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(probs[i], w) {
					t.Errorf("problem %q does not start with %q", probs[i], w)
				}
			}
		})
	}
}
