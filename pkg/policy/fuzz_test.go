package policy_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/lastcall-dev/lastcall/internal/testcases"
	"github.com/lastcall-dev/lastcall/pkg/mutate"
	"github.com/lastcall-dev/lastcall/pkg/policy"
	"github.com/lastcall-dev/lastcall/pkg/profiles"
)

// FuzzPolicyMatchesEngine holds the compiled policies to the engine on any pod: run through the API
// server's own admission CEL (both passes of the mutating chain, then the warnings on the mutated pod), a
// pod comes out as the engine makes it, with the engine's warnings, unless the policy says it falls back to
// the webhook (then the pod is unchanged). The golden pods seed it; the parity test on a real API server
// covers the goldens themselves with defaulting and storage.
func FuzzPolicyMatchesEngine(f *testing.F) {
	for _, g := range goldenCases(f) {
		raw, _ := json.Marshal(g.Pod)
		f.Add(raw, "")
		f.Add(raw, "haproxy")
	}
	p := newParity(f)
	f.Fuzz(func(t *testing.T, raw []byte, nsDefault string) {
		var pod corev1.Pod
		if err := json.Unmarshal(raw, &pod); err != nil || !admissible(&pod) || !quotable(nsDefault) {
			return
		}
		p.check(t, &pod, nsDefault)
	})
}

// goldenCases are the engine's golden cases (pkg/mutate/testdata), read as every golden test reads them.
func goldenCases(tb testing.TB) []testcases.Case {
	tb.Helper()
	cases, err := testcases.Load("../mutate/testdata")
	if err != nil {
		tb.Fatal(err)
	}
	return cases
}

// TestPolicyMatchesEngineWithUserInitContainers is the fuzz target's invariant on every golden pod given
// init containers of the user's before or after its own (ordinary ones and native sidecars; a name that
// collides with lastcall's shim, commands or args only; pods with duplicate names are left out as
// the API server would reject them). The fuzzer's byte mutations seldom build such
// structure, and pods with init containers are common: most take the plain policy's way (TestPlainPolicyTakes).
func TestPolicyMatchesEngineWithUserInitContainers(t *testing.T) {
	p := newParity(t)
	always := corev1.ContainerRestartPolicyAlways
	users := [][]corev1.Container{
		{{Name: "migrate", Image: "example.com/shop/migrate:1", Command: []string{"/migrate", "up"}}},
		{{Name: "lastcall-shim", Image: "busybox:1.36", Args: []string{"true"}}, {Name: "istio-init", Image: "istio/proxyv2:1.24", Args: []string{"istio-iptables"}}},
		// Native sidecars: a log shipper, a mesh proxy, one running nginx (detection does not apply to them).
		{{Name: "log-shipper", Image: "fluent/fluent-bit:3", RestartPolicy: &always}, {Name: "istio-proxy", Image: "istio/proxyv2:1.24", Args: []string{"proxy", "sidecar"}, RestartPolicy: &always}},
		{{Name: "migrate", Image: "example.com/shop/migrate:1"}, {Name: "edge", Image: "nginx:1.27", RestartPolicy: &always}},
	}
	n := 0
	for _, g := range goldenCases(t) {
		if !admissible(g.Pod) {
			continue
		}
		for i, extra := range users {
			for _, at := range []string{"first", "last"} {
				pod := g.Pod.DeepCopy()
				if at == "first" {
					pod.Spec.InitContainers = append(slices.Clone(extra), pod.Spec.InitContainers...)
				} else {
					pod.Spec.InitContainers = append(pod.Spec.InitContainers, extra...)
				}
				if !admissible(pod) {
					continue
				}
				n++
				t.Run(g.Name+"/"+strconv.Itoa(i)+"-"+at, func(t *testing.T) { p.check(t, pod, "") })
			}
		}
	}
	if n < 100 {
		t.Fatalf("only %d pods checked: the golden cases or admissible changed", n)
	}
}

// TestPolicyMatchesEngineWithPodAnnotations is the fuzz target's invariant on every golden pod given a
// pod-wide profile or supervision annotation, the documented way to choose them: every built-in profile,
// "auto" and "none", each supervision spelling, and spellings the engine accepts but the plain policy
// leaves to the general one (spaces, capitals). Most of these pods take the plain policy's way (plainPod);
// the test fails if too few do, so the fast path cannot quietly stop being tested.
func TestPolicyMatchesEngineWithPodAnnotations(t *testing.T) {
	p := newParity(t)
	prof, sup := mutate.AnnotationProfile, mutate.AnnotationSupervise
	var sets []map[string]string
	for _, n := range append(profiles.Builtins().Names(), "auto", "none", " nginx", "Celery", "nope") {
		sets = append(sets, map[string]string{prof: n})
	}
	for _, v := range []string{"true", "no", "yes", "TRUE", "maybe"} {
		sets = append(sets, map[string]string{sup: v})
	}
	sets = append(sets, map[string]string{prof: "celery", sup: "true"}, map[string]string{prof: "nginx", sup: "false"}, map[string]string{prof: "gunicorn", sup: "enabled"})
	ns := &corev1.Namespace{}
	ns.Name, ns.Labels = "fuzz", map[string]string{mutate.LabelInject: "enabled"}
	n, plain := 0, 0
	for _, g := range goldenCases(t) {
		for i, set := range sets {
			pod := g.Pod.DeepCopy()
			if pod.Annotations == nil {
				pod.Annotations = map[string]string{}
			}
			maps.Copy(pod.Annotations, set)
			if !admissible(pod) {
				continue
			}
			n++
			pod.Namespace = ns.Name
			if p.ev.plainWay(t, pod, ns) {
				plain++
			}
			t.Run(g.Name+"/"+strconv.Itoa(i), func(t *testing.T) { p.check(t, pod, "") })
		}
	}
	if n < 1000 || plain < 400 {
		t.Fatalf("%d pods checked, %d of them on the plain way: the golden cases, admissible or plainPod changed", n, plain)
	}
	t.Logf("%d pods checked, %d of them on the plain way", n, plain)
}

// TestPolicyMatchesEngineWithCappedGrace is the fuzz target's invariant where maxGracePeriod is below what
// the pods need, so delays are fitted below the capped grace period (mutate's fit: a proxy one second below
// its ordered upstream, sleeps shorter than the grace period as the API requires). With the default cap no
// pod the catalog can describe reaches it, so the fuzzer never does. Every golden pod, with pod-wide drain
// delays around the cap (whole and fractional seconds) and with an nginx added next to it, under two caps.
func TestPolicyMatchesEngineWithCappedGrace(t *testing.T) {
	n := 0
	for _, limit := range []time.Duration{20 * time.Second, 60 * time.Second} {
		pol := mutate.DefaultPolicy()
		pol.MaxGracePeriod = metav1.Duration{Duration: limit}
		p := newParityWith(t, pol)
		for _, g := range goldenCases(t) {
			for _, delay := range []string{"", "2m", "59500ms", "58s", "19s", "18600ms"} {
				for _, proxy := range []bool{false, true} {
					pod := g.Pod.DeepCopy()
					if delay != "" {
						if pod.Annotations == nil {
							pod.Annotations = map[string]string{}
						}
						pod.Annotations[mutate.AnnotationDrainDelay] = delay
					}
					if proxy {
						pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: "added", Image: "nginx:1.27"})
					}
					if !admissible(pod) {
						continue
					}
					n++
					t.Run(fmt.Sprintf("%s/%s/%q/%v", limit, g.Name, delay, proxy), func(t *testing.T) { p.check(t, pod, "") })
				}
			}
		}
	}
	if n < 1000 {
		t.Fatalf("only %d pods checked: the golden cases or admissible changed", n)
	}
}

// parity runs pods through a compiled policy set and the engine compiled from the same options.
type parity struct {
	ev     *evaluator
	engine *mutate.Engine
	cat    *profiles.Catalog
}

func newParity(tb testing.TB) *parity { return newParityWith(tb, mutate.DefaultPolicy()) }

func newParityWith(tb testing.TB, pol mutate.Policy) *parity {
	tb.Helper()
	o := policy.Options{Policy: pol, Capabilities: mutate.Capabilities{PreStopSleep: true}, Version: "fuzz"}
	ps, err := policy.Compile(o)
	if err != nil {
		tb.Fatal(err)
	}
	return &parity{ev: newEvaluator(tb, ps), engine: mutate.New(mutate.Options{Policy: o.Policy, Capabilities: o.Capabilities, Version: o.Version}), cat: profiles.Builtins()}
}

// check: through the API server's admission CEL (both passes of the mutating chain, then the warnings on the
// mutated pod), pod comes out as the engine makes it, with the engine's warnings, unless the policy says it
// falls back to the webhook (then the pod is unchanged). nsDefault is the namespace's default profile.
func (p *parity) check(t *testing.T, pod *corev1.Pod, nsDefault string) {
	t.Helper()
	// Admission always sees a v1 Pod (the API server decoded it as one), whatever kind the input names.
	pod.APIVersion, pod.Kind = "v1", "Pod"
	pod.Namespace = "fuzz"
	ns := mutate.Namespace{Name: "fuzz", Labels: map[string]string{mutate.LabelInject: "enabled"}}
	if nsDefault != "" {
		ns.Annotations = map[string]string{mutate.AnnotationDefaultProfile: nsDefault}
	}
	nsObj := &corev1.Namespace{}
	nsObj.Name, nsObj.Labels, nsObj.Annotations = ns.Name, ns.Labels, ns.Annotations

	res := p.engine.Mutate(pod, ns, p.cat)
	first := p.ev.mutate(t, pod, nsObj)
	second := p.ev.mutate(t, first, nsObj)
	if d := cmp.Diff(first, second, cmpopts.EquateEmpty()); d != "" {
		t.Fatalf("the second pass of the mutating chain changed the pod (-first +second):\n%s", d)
	}
	warnings := p.ev.warnings(t, first, nsObj)
	for _, w := range warnings {
		if strings.Contains(w, "policy mode cannot handle this pod") {
			if d := cmp.Diff(pod, first, cmpopts.EquateEmpty()); d != "" {
				t.Fatalf("a pod the policy leaves to the webhook was changed (-in +out):\n%s", d)
			}
			return
		}
	}
	if d := cmp.Diff(res.Pod, first, cmpopts.EquateEmpty()); d != "" {
		t.Fatalf("pod (-engine +policy):\n%s", d)
	}
	if res.Skip != nil {
		return // bad annotations of skipped pods are not reported by the policy (Limitations)
	}
	if want, got := expectedWarnings(res.AllWarnings()), strings.Join(warnings, "; "); want != got {
		t.Fatalf("warnings:\nengine %s\npolicy %s", want, got)
	}
}

// expectedWarnings is the engine's warnings without the ones the policy cannot give (Limitations): what the
// validating policy cannot see on the mutated pod, and bad annotations of containers lastcall skips.
func expectedWarnings(ws []string) string {
	var out []string
	for _, w := range ws {
		if strings.Contains(w, "raised from 0") || strings.Contains(w, "replaced its preStop hook") || strings.Contains(w, "; ignored: ") {
			continue
		}
		out = append(out, w)
	}
	return strings.Join(out, "; ")
}

// quotable: Go's %q writes s as the policy's quoting does (quotes and backslashes escaped only). Other
// strings appear differently in warnings, a documented difference (Limitations); the API server's JSON
// decoding already replaces invalid UTF-8.
func quotable(s string) bool {
	return strconv.Quote(s) == `"`+strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s)+`"`
}

// admissible keeps the inputs the API server would store (what it rejects never reaches a policy) whose
// strings quotable can compare.
func admissible(p *corev1.Pod) bool {
	for _, v := range p.Annotations {
		if !quotable(v) {
			return false
		}
	}
	for _, list := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
		for _, c := range list {
			for _, w := range append(append([]string{c.Image}, c.Command...), c.Args...) {
				if !quotable(w) {
					return false
				}
			}
		}
	}
	if len(p.Spec.Containers) == 0 || len(p.Spec.Containers) > 8 || len(p.Spec.InitContainers) > 8 {
		return false
	}
	seen := map[string]bool{}
	for _, list := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
		for _, c := range list {
			if c.Name == "" || len(c.Name) > 63 || strings.ContainsAny(c.Name, ",=/ ") || seen[c.Name] {
				return false
			}
			seen[c.Name] = true
		}
	}
	return true
}
