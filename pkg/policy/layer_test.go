package policy_test

import (
	"testing"
	"time"

	"github.com/lastcall-dev/lastcall/pkg/mutate"
	"github.com/lastcall-dev/lastcall/pkg/policy"
	"github.com/lastcall-dev/lastcall/pkg/profiles"
)

// Layer leaves out exactly the overrides the webhook refuses or the compiler cannot compile, keeps the
// others, and a dropped override of a built-in leaves the built-in: the catalog it returns compiles, while
// the plain layering of the same overrides does not.
func TestLayerLeavesOutWhatCannotCompile(t *testing.T) {
	sig := profiles.Signal("SIGQUIT")
	ovs := []profiles.Override{
		{Name: "good", StopSignal: string(sig), DrainDelay: dur(2 * time.Second), Source: "ShutdownProfile/good"},
		{Name: "sub-ms", StopSignal: "SIGTERM", DrainDelay: dur(1500 * time.Microsecond), Source: "ShutdownProfile/sub-ms"},
		{Name: "nginx", DrainTimeout: dur(time.Second + time.Nanosecond), Source: "ShutdownProfile/nginx"},
		{Name: "no-signal", Source: "ShutdownProfile/no-signal"},
	}
	plain, _ := profiles.Builtins().Layer(ovs)
	if _, err := policy.Compile(policy.Options{Policy: mutate.DefaultPolicy(), Catalog: plain}); err == nil {
		t.Fatal("the plain layering compiles: the test proves nothing")
	}
	cat, refused, problems := policy.Layer(ovs)
	if len(refused) != 1 || refused["no-signal"] == nil {
		t.Errorf("refused %v; want no-signal only", refused)
	}
	if len(problems) != 2 || len(problems["sub-ms"]) != 1 || len(problems["nginx"]) != 1 {
		t.Errorf("problems %q; want sub-ms and nginx, one each", problems)
	}
	if p, ok := cat.Get("good"); !ok || p.StopSignal != sig {
		t.Errorf("good: %+v %v; want kept", p, ok)
	}
	for _, n := range []string{"sub-ms", "no-signal"} {
		if _, ok := cat.Get(n); ok {
			t.Errorf("%s is in the catalog", n)
		}
	}
	builtin, _ := profiles.Builtins().Get("nginx")
	if p, _ := cat.Get("nginx"); p.DrainTimeout != builtin.DrainTimeout || p.Source != builtin.Source {
		t.Errorf("nginx %s from %s; want the built-in's %s", p.DrainTimeout, p.Source, builtin.DrainTimeout)
	}
	if _, err := policy.Compile(policy.Options{Policy: mutate.DefaultPolicy(), Catalog: cat}); err != nil {
		t.Errorf("Layer's catalog does not compile: %v", err)
	}
}
