package policy

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/lastcall-dev/lastcall/pkg/mutate"
	"github.com/lastcall-dev/lastcall/pkg/patch"
	"github.com/lastcall-dev/lastcall/pkg/policy"
)

// latencyRun is set by LASTCALL_LATENCY=1: the measurement is not part of make test (it takes a minute and
// its numbers depend on the machine); docs/performance.md records its output.
var latencyRun = os.Getenv("LASTCALL_LATENCY") == "1"

// TestCreateLatency measures pod CREATE (stored, not dry run) through the same API server for a namespace no
// admission serves, three served by reference policies that show what any mutating policy costs, one the
// lastcall policies serve and one the webhook serves (the real server in-process, TLS), the modes interleaved
// pod by pod so load on the machine hits all of them alike.
//
// The reference policies separate the cost of a mutating policy that runs from the cost of one that changes
// the pod: a change makes the API server decode the patched pod, convert it and run the whole mutating chain
// (every in-tree plugin and every policy's matchConditions) a second time, whatever the policy computed.
func TestCreateLatency(t *testing.T) {
	if !latencyRun {
		t.Skip("set LASTCALL_LATENCY=1 to measure")
	}
	n := 300
	o := policy.Options{Policy: mutate.DefaultPolicy(), Capabilities: mutate.Capabilities{PreStopSleep: true}, Version: "v0.0.0-test"}
	install(t, "latency", o)
	// The same policies without their warning policies: what the validating half costs.
	install(t, "latency-mut", o)
	dropWarnings(t, "latency-mut", o)
	pod := func(ns string, i int) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p%04d", i), Namespace: ns},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx:1.27"}, {Name: "php", Image: "php:8.3-fpm"}}}}
	}
	grace := func(p *corev1.Pod) int64 {
		if p.Spec.TerminationGracePeriodSeconds == nil {
			return -1
		}
		return *p.Spec.TerminationGracePeriodSeconds
	}
	injected := func(p *corev1.Pod) bool { return p.Annotations[mutate.AnnotationInjected] != "" }
	// The pod as the lastcall policies store it (dry run): the injected-pod and constant references start from it.
	stored, _, err := create(pod("probe-latency", 0), true)
	if err != nil {
		t.Fatal(err)
	}
	modes := []struct {
		name, ns string
		// applied tells whether the pod as stored shows this mode's admission, and only it.
		applied func(*corev1.Pod) bool
		// pod is what the mode creates: the plain pod unless set.
		pod func(ns string, i int) *corev1.Pod
	}{
		{"no admission", "lat-none", func(p *corev1.Pod) bool { return !injected(p) && len(p.Annotations) == 0 && grace(p) == 30 }, nil},
		// The pod lastcall would store, created as it is with no admission (what lastcall inject gives a GitOps
		// repository): what storing the larger pod costs, without any admission.
		{"injected pod, no admission", "lat-pre", injected, preInjected(stored)},
		{"policy, no change", "lat-noop", func(p *corev1.Pod) bool { return !injected(p) && len(p.Annotations) == 0 && grace(p) == 30 }, nil},
		{"policy, one field", "lat-one", func(p *corev1.Pod) bool { return !injected(p) && grace(p) == 41 }, nil},
		{"minimal policy", "lat-floor", func(p *corev1.Pod) bool {
			return !injected(p) && grace(p) == 40 && p.Spec.Containers[1].Lifecycle != nil
		}, nil},
		{"lastcall's change as constants", "lat-const", injected, nil},
		{"lastcall mutating policies only", "probe-latency-mut", injected, nil},
		{"lastcall policies", "probe-latency", injected, nil},
		{"lastcall webhook", "lat-webhook", injected, nil},
	}
	namespace(t, "lat-none", nil, nil)
	namespace(t, "lat-pre", nil, nil)
	// The no-change policy runs and returns no operation: the cost of evaluating a mutating policy.
	referencePolicy(t, "lat-noop", "[JSONPatch{op: 'add', path: '/spec/terminationGracePeriodSeconds', value: 42}].filter(p, false)", func(p *corev1.Pod) bool { return p != nil })
	// One operation: the cost of a change, whatever computed it.
	referencePolicy(t, "lat-one", "[JSONPatch{op: 'add', path: '/spec/terminationGracePeriodSeconds', value: 41}]",
		func(p *corev1.Pod) bool { return grace(p) == 41 })
	// The smallest useful one: a preStop sleep for every container and a grace period, no variables.
	referencePolicy(t, "lat-floor", "lists.range(size(object.spec.containers)).map(i, JSONPatch{op: 'add', path: '/spec/containers/' + string(i) + '/lifecycle', value: {'preStop': {'sleep': {'seconds': 5}}}}) + "+
		"[JSONPatch{op: 'add', path: '/spec/terminationGracePeriodSeconds', value: 40}]", func(p *corev1.Pod) bool { return grace(p) == 40 })
	// lastcall's change to this pod written out as constant operations, nothing computed: the cost of the
	// change itself (a larger patch, a larger pod to decode), which the webhook's patch costs the API server too.
	referencePolicy(t, "lat-const", constantPatch(t, pod("lat-none", 0), stored), injected)
	namespace(t, "lat-webhook", map[string]string{webhookLabel: "yes", mutate.LabelInject: "enabled"}, nil)
	cs := kubernetes.NewForConfigOrDie(cfg)
	ctx := context.Background()
	for k := range modes {
		if modes[k].pod == nil {
			modes[k].pod = pod
		}
	}
	// Warm every path (policy compilation, webhook connections) before measuring.
	for i := 0; i < 20; i++ {
		for _, m := range modes {
			if _, err := cs.CoreV1().Pods(m.ns).Create(ctx, m.pod(m.ns, 9000+i), metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	lat := make([][]time.Duration, len(modes))
	for i := 0; i < n; i++ {
		for k, m := range modes {
			start := time.Now()
			got, err := cs.CoreV1().Pods(m.ns).Create(ctx, m.pod(m.ns, i), metav1.CreateOptions{})
			lat[k] = append(lat[k], time.Since(start))
			if err != nil {
				t.Fatal(err)
			}
			if !m.applied(got) {
				t.Fatalf("%s: the stored pod does not show this mode's admission: annotations %v, grace %d", m.name, got.Annotations, grace(got))
			}
		}
	}
	p50 := func(k int) float64 { return ms(lat[k][len(lat[k])/2]) }
	ratio := func(name string) float64 {
		for k, m := range modes {
			if m.name == name {
				return p50(k) / p50(0)
			}
		}
		panic(name)
	}
	for k, m := range modes {
		l := lat[k]
		sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
		t.Logf("%-32s n=%d p50=%.2fms (%.2fx) p99=%.2fms", m.name, len(l), ms(l[len(l)/2]), p50(k)/p50(0), ms(l[len(l)*99/100]))
	}
	t.Logf("lastcall policies p50 / no-admission p50 = %.2f (bar 1.3); a policy that changes one field %.2f; lastcall's change as constants %.2f; webhook %.2f",
		ratio("lastcall policies"), ratio("policy, one field"), ratio("lastcall's change as constants"), ratio("lastcall webhook"))
	pre := ratio("injected pod, no admission")
	t.Logf("against the injected pod created with no admission (%.2fx): lastcall policies %.2f, mutating policies only %.2f, change as constants %.2f, webhook %.2f",
		pre, ratio("lastcall policies")/pre, ratio("lastcall mutating policies only")/pre, ratio("lastcall's change as constants")/pre, ratio("lastcall webhook")/pre)
}

// preInjected returns pods that are stored (a pod as admission stored it) without what the API server sets
// on a created object, for creating with no admission.
func preInjected(stored *corev1.Pod) func(ns string, i int) *corev1.Pod {
	got := stored.DeepCopy()
	got.ObjectMeta = metav1.ObjectMeta{Labels: got.Labels, Annotations: got.Annotations}
	got.Status = corev1.PodStatus{}
	return func(ns string, i int) *corev1.Pod {
		p := got.DeepCopy()
		p.Name, p.Namespace = fmt.Sprintf("p%04d", i), ns
		return p
	}
}

// constantPatch is a JSON Patch expression that writes, as constants, what the lastcall policies changed on
// plain (a pod in a namespace no admission serves) to store got (the webhook's diff, pkg/patch, of the pod as
// admission sees it, defaulted, and as they store it).
func constantPatch(t *testing.T, plain, got *corev1.Pod) string {
	t.Helper()
	orig, _, err := create(plain, true)
	if err != nil {
		t.Fatal(err)
	}
	ops, err := patch.Pod(orig, got)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, op := range ops {
		e := "JSONPatch{op: " + strconv.Quote(op.Operation) + ", path: " + strconv.Quote(op.Path)
		if op.Value != nil {
			v, err := policy.CELValue(op.Value)
			if err != nil {
				t.Fatal(err)
			}
			e += ", value: " + v
		}
		out = append(out, e+"}")
	}
	return "[" + strings.Join(out, ", ") + "]"
}

// dropWarnings deletes the warning policies' bindings of a set and waits until the API server no longer
// warns about a bad annotation in its namespace.
func dropWarnings(t *testing.T, set string, o policy.Options) {
	t.Helper()
	o.Name = "lc-" + set
	ps, err := policy.Compile(o)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range ps.ValidatingBindings {
		if err := k8s.Delete(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
	bad := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "probe", Namespace: "probe-" + set, Annotations: map[string]string{mutate.AnnotationDrainDelay: "soonish"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx:1.27"}}}}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, warnings, err := create(bad.DeepCopy(), true)
		if err == nil && len(warnings) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("set %s still warns 30s after its validating bindings were deleted: %v %q", set, err, warnings)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// referencePolicy serves ns with a mutating policy named after it whose JSON Patch is expr: no variables, no
// matchConditions, no warnings. It returns once a dry-run pod shows that the API server applies it (ready).
func referencePolicy(t *testing.T, ns, expr string, ready func(*corev1.Pod) bool) {
	t.Helper()
	fp := admissionregistrationv1.Fail
	p := &admissionregistrationv1.MutatingAdmissionPolicy{ObjectMeta: metav1.ObjectMeta{Name: ns},
		Spec: admissionregistrationv1.MutatingAdmissionPolicySpec{
			MatchConstraints: &admissionregistrationv1.MatchResources{ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{RuleWithOperations: admissionregistrationv1.RuleWithOperations{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
			}}}},
			Mutations:          []admissionregistrationv1.Mutation{{PatchType: admissionregistrationv1.PatchTypeJSONPatch, JSONPatch: &admissionregistrationv1.JSONPatch{Expression: expr}}},
			FailurePolicy:      &fp,
			ReinvocationPolicy: admissionregistrationv1.NeverReinvocationPolicy,
		}}
	b := &admissionregistrationv1.MutatingAdmissionPolicyBinding{ObjectMeta: metav1.ObjectMeta{Name: ns},
		Spec: admissionregistrationv1.MutatingAdmissionPolicyBindingSpec{PolicyName: ns, MatchResources: &admissionregistrationv1.MatchResources{
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns}}}}}
	ctx := context.Background()
	for _, o := range []client.Object{p, b} {
		if err := k8s.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	namespace(t, ns, nil, nil)
	// The no-change policy shows nothing on the pod (ready is true at once); it is created first, so by the
	// time the API server applies the ones after it, it has loaded it too (one watch, in order).
	deadline := time.Now().Add(30 * time.Second)
	for {
		// The measured pod's shape: the constant patch addresses its second container.
		got, _, err := create(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "probe", Namespace: ns},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx:1.27"}, {Name: "php", Image: "php:8.3-fpm"}}}}, true)
		if err == nil && ready(got) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("policy %s not active after 30s: %v", ns, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
