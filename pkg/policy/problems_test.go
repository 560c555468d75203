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
		// path.Match accepts a reversed range (it holds no rune): the translation leaves it out of the class.
		{"image-range", profiles.Override{StopSignal: "SIGTERM", Match: &profiles.Match{Images: []string{"ok", "[z-a]pp", "[^z-a]pp"}}}, nil},
		// A byte that is not UTF-8, outside a class: path.Match compares it as a byte, RE2 refuses the pattern
		// (not a pattern the API server can store: it keeps strings UTF-8).
		{"image-bytes", profiles.Override{StopSignal: "SIGTERM", Match: &profiles.Match{Images: []string{"ok", "app\xff"}}}, []string{`match.images[1] "app\xff"`}},
		{"command-bytes", profiles.Override{StopSignal: "SIGTERM", Match: &profiles.Match{Commands: []string{"\xfe"}}}, []string{`match.commands[0] "\xfe"`}},
		{"two", profiles.Override{StopSignal: "SIGTERM", DrainDelay: dur(time.Microsecond), Match: &profiles.Match{Commands: []string{"x\xfe"}}}, []string{"drainDelay 1µs", `match.commands[0] "x\xfe"`}},
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
