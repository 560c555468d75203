package policy_test

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

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
	l := policy.Layer(ovs)
	cat, refused, problems := l.Catalog, l.Refused, l.Problems
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

// A pod whose container would get a ShutdownProfile the compiler left out (the webhook would apply it: named
// by an annotation, the namespace default, or detected by its match rule) is admitted unchanged with the
// fallback warning, through whichever mutating policy matches it, instead of getting another profile, and the
// annotation is no bad one (strict mode does not deny it); without Options.Uncompiled the same pods are
// injected with another profile (and an "unknown profile" warning where they name it), so the test can fail.
// A pod whose profile is another one, detected or named, is injected with it, as by the webhook.
func TestUncompiledProfileFallsBack(t *testing.T) {
	ovs := []profiles.Override{
		{Name: "sub-ms", StopSignal: "SIGTERM", DrainDelay: dur(1500 * time.Microsecond), Match: &profiles.Match{Images: []string{"slowapp*"}}, Source: "ShutdownProfile/sub-ms"},
		{Name: "nginx", DrainTimeout: dur(time.Second + time.Nanosecond), Source: "ShutdownProfile/nginx"},
	}
	layered := policy.Layer(ovs)
	uncompiled := policy.UncompiledNames(layered.Problems)
	if len(uncompiled) != 1 || uncompiled[0] != "sub-ms" {
		t.Fatalf("UncompiledNames %q; want [sub-ms] (an override of a built-in leaves the built-in)", uncompiled)
	}
	pod := func(image string, anns map[string]string) *corev1.Pod {
		return &corev1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}, ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "shop", Annotations: anns},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: image}}}}
	}
	ns := func(anns map[string]string) *corev1.Namespace {
		return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{mutate.LabelInject: "enabled"}, Annotations: anns}}
	}
	nsDefault := map[string]string{mutate.AnnotationDefaultProfile: "sub-ms"}
	cases := []struct {
		name      string
		pod       *corev1.Pod
		ns        *corev1.Namespace
		fallBack  bool
		annotated bool // names the profile: "unknown" without the list
	}{
		{"pod annotation", pod("busybox", map[string]string{mutate.AnnotationProfile: "sub-ms"}), ns(nil), true, true},
		{"container annotation", pod("busybox", map[string]string{mutate.AnnotationProfile + ".web": " sub-ms"}), ns(nil), true, true},
		{"namespace default, plain pod", pod("busybox", nil), ns(nsDefault), true, true},
		{"namespace default, detected profile", pod("nginx:1.27", nil), ns(nsDefault), false, true},
		{"detected by its match rule", pod("slowapp:2", nil), ns(nil), true, false},
		{"detected by its match rule, annotated otherwise", pod("slowapp:2", map[string]string{mutate.AnnotationProfile: "http"}), ns(nil), false, false},
	}
	for _, run := range []struct{ withList, strict bool }{{true, false}, {false, false}, {true, true}} {
		withList := run.withList
		o := policy.Options{Policy: mutate.DefaultPolicy(), Capabilities: mutate.Capabilities{PreStopSleep: true}, Version: "v0"}
		o.Policy.Strict = run.strict
		layered.Apply(&o)
		if !withList {
			o.Uncompiled = nil
		}
		ps, err := policy.Compile(o)
		if err != nil {
			t.Fatal(err)
		}
		e := newEvaluator(t, ps)
		for _, c := range cases {
			got := e.mutate(t, e.mutate(t, c.pod, c.ns), c.ns)
			warnings := strings.Join(e.warnings(t, got, c.ns), "\n")
			injected := got.Annotations[mutate.AnnotationInjected] != ""
			warned := strings.Contains(warnings, "policy mode cannot handle this pod (a ShutdownProfile policy mode could not compile")
			// A profile the webhook would apply is no bad annotation (strict mode would deny the pod); without
			// the list it is reported as unknown.
			if bad := strings.Contains(warnings, "strict mode") || strings.Contains(warnings, "unknown profile"); bad != (!withList && c.annotated) {
				t.Errorf("Uncompiled set %v, strict %v, %s: reported as a bad annotation %v: %q", withList, run.strict, c.name, bad, warnings)
			}
			if fell := !injected && warned; fell != (withList && c.fallBack) {
				t.Errorf("Uncompiled set %v, %s: injected %v (%s), warnings %q; want fallback %v", withList, c.name, injected, got.Annotations[mutate.AnnotationInjected], warnings, withList && c.fallBack)
			}
		}
	}
}

// A ShutdownProfile whose patterns hold reversed ranges (path.Match takes them: such a range holds no rune)
// is compiled, not left out, and detects exactly what the webhook detects.
func TestReversedRangeProfileMatchesEngine(t *testing.T) {
	ovs := []profiles.Override{{Name: "shop", StopSignal: "SIGQUIT", Source: "ShutdownProfile/shop",
		Match: &profiles.Match{Images: []string{"shop[z-a]app", "shop[^z-a]app"}, Commands: []string{"[^9-0]worker"}}}}
	layered := policy.Layer(ovs)
	if len(layered.Problems) != 0 {
		t.Fatalf("problems %v: the profile must compile", layered.Problems)
	}
	o := policy.Options{Policy: mutate.DefaultPolicy(), Capabilities: mutate.Capabilities{PreStopSleep: true}, Version: "v0"}
	layered.Apply(&o)
	ps, err := policy.Compile(o)
	if err != nil {
		t.Fatal(err)
	}
	e := newEvaluator(t, ps)
	eng := mutate.New(mutate.Options{Policy: o.Policy, Capabilities: o.Capabilities, Version: o.Version})
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{mutate.LabelInject: "enabled"}}}
	for _, c := range []struct {
		image   string
		command []string
		want    string // the profile both must pick
	}{
		{"registry.example.com/team/shop-app:1", nil, "shop"},
		{"shop/app:1", nil, "http"},
		{"busybox", []string{"/bin/xworker"}, "shop"},
		{"busybox", []string{"worker"}, "http"},
	} {
		pod := &corev1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}, ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "shop"},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: c.image, Command: c.command}}}}
		got := e.mutate(t, e.mutate(t, pod, ns), ns).Annotations[mutate.AnnotationInjected]
		res := eng.Mutate(pod, mutate.Namespace{Name: ns.Name, Labels: ns.Labels}, layered.Webhook)
		if want := res.Pod.Annotations[mutate.AnnotationInjected]; got != want || want != "web="+c.want {
			t.Errorf("%s %q: policy %q, engine %q; want web=%s", c.image, c.command, got, want, c.want)
		}
	}
}
