package policy_test

import (
	"bytes"
	"os"
	"path"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/lastcall-dev/lastcall/pkg/mutate"
	"github.com/lastcall-dev/lastcall/pkg/policy"
	"github.com/lastcall-dev/lastcall/pkg/profiles"
)

func render(t *testing.T, o policy.Options) []byte {
	t.Helper()
	ps, err := policy.Compile(o)
	if err != nil {
		t.Fatal(err)
	}
	data, err := ps.YAML()
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func dur(d time.Duration) *time.Duration { return &d }

// The same inputs give the same bytes (GitOps diffs stay quiet), whatever order the ShutdownProfiles were
// read in; a changed input changes the output.
func TestRenderIsByteStable(t *testing.T) {
	ovs := []profiles.Override{
		{Name: "zeta", StopSignal: "SIGINT", DrainDelay: dur(2 * time.Second), Match: &profiles.Match{Images: []string{"zeta*"}}, Source: "ShutdownProfile/zeta"},
		{Name: "alpha", StopSignal: "SIGHUP", Match: &profiles.Match{Commands: []string{"alpha-[0-9]"}}, Source: "ShutdownProfile/alpha"},
		{Name: "nginx", DrainDelay: dur(7 * time.Second), Source: "ShutdownProfile/nginx"},
	}
	reversed := []profiles.Override{ovs[2], ovs[1], ovs[0]}
	layer := func(o []profiles.Override) *profiles.Catalog {
		c, errs := profiles.Builtins().Layer(o)
		if len(errs) > 0 {
			t.Fatal(errs)
		}
		return c
	}
	opts := func(c *profiles.Catalog) policy.Options {
		return policy.Options{Policy: mutate.DefaultPolicy(), Catalog: c, Capabilities: mutate.Capabilities{PreStopSleep: true}, Version: "v1.2.3"}
	}
	a := render(t, opts(layer(ovs)))
	b := render(t, opts(layer(reversed)))
	if !bytes.Equal(a, b) {
		t.Fatal("rendering depends on the order the profiles were read in")
	}
	if again := render(t, opts(layer(ovs))); !bytes.Equal(a, again) {
		t.Fatal("two renderings of the same input differ")
	}
	if builtin := render(t, opts(profiles.Builtins())); bytes.Equal(a, builtin) {
		t.Fatal("ShutdownProfiles did not change the rendering")
	}
	for _, want := range []string{"kind: MutatingAdmissionPolicy", "kind: MutatingAdmissionPolicyBinding", "kind: ValidatingAdmissionPolicy", "- Warn", "reinvocationPolicy: IfNeeded", "Kubernetes >= 1.36"} {
		if !bytes.Contains(a, []byte(want)) {
			t.Errorf("rendering lacks %q", want)
		}
	}
	if bytes.Contains(a, []byte("- Deny")) {
		t.Error("a Deny binding without strict mode")
	}
	strict := opts(profiles.Builtins())
	strict.Policy.Strict = true
	if s := render(t, strict); !bytes.Contains(s, []byte("- Deny")) {
		t.Error("strict mode has no Deny binding")
	}
}

// A profile the policy cannot express is reported by name and no policy is returned.
func TestUncompilableProfileIsReported(t *testing.T) {
	c, errs := profiles.Builtins().Layer([]profiles.Override{{Name: "fast", StopSignal: "SIGTERM", DrainDelay: dur(1500 * time.Microsecond), Source: "ShutdownProfile/fast"}})
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	ps, err := policy.Compile(policy.Options{Policy: mutate.DefaultPolicy(), Catalog: c})
	if err == nil || ps != nil {
		t.Fatalf("got policies %v, error %v; want no policies and an error", ps != nil, err)
	}
	if !strings.Contains(err.Error(), "profile fast") || !strings.Contains(err.Error(), "1.5ms") {
		t.Errorf("error %q does not name the profile and the value", err)
	}
}

// A policy file that does not validate is an error, not a policy with defaults.
func TestBadPolicyIsReported(t *testing.T) {
	p := mutate.DefaultPolicy()
	p.ExistingPreStop = "merge"
	if _, err := policy.Compile(policy.Options{Policy: p}); err == nil || !strings.Contains(err.Error(), "merge") {
		t.Fatalf("error %v does not name existingPreStop's value", err)
	}
}

// The glob translation agrees with path.Match, which the engine uses, on every pattern shape the catalog
// may hold.
func TestGlobMatchesPathMatch(t *testing.T) {
	patterns := []string{"nginx", "php-fpm*", "php:*fpm*", "*-fpm", "a?c", "[a-c]x", "[^a-c]x", `a\*b`, "gunicorn", "x[0-9][0-9]", "*", `[\x]b`, `[\]]`, `[\-a]x`, `[\d]x`, "[é]x",
		// Reversed ranges hold no rune (path.Match takes them, RE2 would not); negated classes match '/'.
		"[z-a]x", "[^z-a]x", "[az-b]x", "x[^a]y", "[^a-c]", "[é-a]x", "[a-é]x", "x[^\\/]y"}
	subjects := []string{"xb", "]", "-x", "dx", "éx", "nginx", "nginx-unprivileged", "php-fpm", "php-fpm8.2", "php:8.3-fpm", "php:8.3-fpm-alpine", "php:8.3-cli", "x-fpm", "abc", "aXc", "ax", "bx", "dx", `a*b`, "axb", "x12", "x1", "", "gunicorn", "/x", "x/y", "xay", "zx", "/", "cx"}
	for _, p := range patterns {
		re, err := policy.GlobRegexp(p)
		if err != nil {
			t.Fatalf("%q: %v", p, err)
		}
		for _, s := range subjects {
			want, _ := path.Match(p, s)
			if got := re.MatchString(s); got != want {
				t.Errorf("pattern %q on %q: regexp %s says %v, path.Match %v", p, s, re, got, want)
			}
		}
	}
}

// TestNotAlreadyHandledMatchesWebhook holds the mutating policy's condition to the webhook configuration's.
func TestNotAlreadyHandledMatchesWebhook(t *testing.T) {
	data, err := os.ReadFile("../../config/webhook/manifests.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	i := strings.Index(s, "name: not-already-handled")
	if i < 0 {
		t.Fatal("config/webhook/manifests.yaml has no not-already-handled condition")
	}
	s = s[i:]
	s = s[strings.Index(s, ">-")+2:]
	if j := strings.Index(s, "\n  - "); j >= 0 {
		s = s[:j]
	}
	got := strings.Join(strings.Fields(s), " ")
	if want := strings.Join(strings.Fields(policy.NotAlreadyHandled), " "); got != want {
		t.Errorf("webhook condition\n%s\npolicy condition\n%s", got, want)
	}
}

// FuzzGlobMatchesPathMatch: whenever a pattern translates, the expression matches exactly what path.Match
// matches (a pattern that is not UTF-8, the only kind it cannot take, is reported by the compiler, never
// translated differently).
func FuzzGlobMatchesPathMatch(f *testing.F) {
	for _, p := range []string{"php:*fpm*", "[a-c]x", "[^a-c]x", `a\*b`, `[\x]b`, `[\]]`, "x[0-9]?", "[^z-a]x", "x[^a]y"} {
		f.Add(p, "php:8.3-fpm")
		f.Add(p, "xb")
		f.Add(p, "x/y")
	}
	f.Fuzz(func(t *testing.T, pattern, subject string) {
		if _, err := path.Match(pattern, ""); err != nil {
			return // path.Match refuses the pattern: so does the profile validation
		}
		re, err := policy.GlobRegexp(pattern)
		if err != nil {
			if utf8.ValidString(pattern) {
				t.Errorf("pattern %q: path.Match takes it, the translation refuses it: %v", pattern, err)
			}
			return
		}
		want, _ := path.Match(pattern, subject)
		if got := re.MatchString(subject); got != want {
			t.Errorf("pattern %q on %q: regexp %s says %v, path.Match %v", pattern, subject, re, got, want)
		}
	})
}
