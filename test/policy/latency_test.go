package policy

import (
	"context"
	"fmt"
	"os"
	"sort"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/lastcall-dev/lastcall/pkg/mutate"
	"github.com/lastcall-dev/lastcall/pkg/policy"
)

// latencyRun is set by LASTCALL_LATENCY=1: the measurement is not part of make test (it takes a minute and
// its numbers depend on the machine); docs/performance.md records its output.
var latencyRun = os.Getenv("LASTCALL_LATENCY") == "1"

// TestCreateLatency measures pod CREATE (stored, not dry run) through the same API server for a namespace no
// admission serves, one the policies serve and one the webhook serves (the real server in-process, TLS), the
// modes interleaved pod by pod so load on the machine hits all three alike.
func TestCreateLatency(t *testing.T) {
	if !latencyRun {
		t.Skip("set LASTCALL_LATENCY=1 to measure")
	}
	n := 300
	install(t, "latency", policy.Options{Policy: mutate.DefaultPolicy(), Capabilities: mutate.Capabilities{PreStopSleep: true}, Version: "v0.0.0-test"})
	if os.Getenv("LASTCALL_LATENCY_NOVAP") == "1" {
		if err := k8s.DeleteAllOf(context.Background(), &admissionregistrationv1.ValidatingAdmissionPolicyBinding{}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * time.Second)
	}
	modes := []struct{ name, ns string }{{"no admission", "lat-none"}, {"minimal policy", "lat-floor"}, {"policy", "probe-latency"}, {"webhook", "lat-webhook"}}
	namespace(t, "lat-none", nil, nil)
	minimalPolicy(t, "lat-floor")
	namespace(t, "lat-webhook", map[string]string{webhookLabel: "yes", mutate.LabelInject: "enabled"}, nil)
	cs := kubernetes.NewForConfigOrDie(cfg)
	ctx := context.Background()
	pod := func(ns string, i int) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p%04d", i), Namespace: ns},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx:1.27"}, {Name: "php", Image: "php:8.3-fpm"}}}}
	}
	// Warm every path (policy compilation, webhook connections) before measuring.
	for i := 0; i < 20; i++ {
		for _, m := range modes {
			if _, err := cs.CoreV1().Pods(m.ns).Create(ctx, pod(m.ns, 9000+i), metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	lat := make([][]time.Duration, len(modes))
	for i := 0; i < n; i++ {
		for k, m := range modes {
			start := time.Now()
			got, err := cs.CoreV1().Pods(m.ns).Create(ctx, pod(m.ns, i), metav1.CreateOptions{})
			lat[k] = append(lat[k], time.Since(start))
			if err != nil {
				t.Fatal(err)
			}
			if injected := got.Annotations[mutate.AnnotationInjected] != ""; injected != (k > 1) {
				t.Fatalf("%s: injected %v", m.name, injected)
			}
			if minimal := got.Spec.TerminationGracePeriodSeconds != nil && *got.Spec.TerminationGracePeriodSeconds == 40; minimal != (k == 1) {
				t.Fatalf("%s: minimal policy applied %v", m.name, minimal)
			}
		}
	}
	for k, m := range modes {
		l := lat[k]
		sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
		t.Logf("%-12s n=%d p50=%.2fms p99=%.2fms", m.name, len(l), ms(l[len(l)/2]), ms(l[len(l)*99/100]))
	}
	p50 := func(k int) float64 { return ms(lat[k][len(lat[k])/2]) }
	t.Logf("policy p50 / no-admission p50 = %.2f (bar 1.3); minimal policy %.2f; webhook %.2f", p50(2)/p50(0), p50(1)/p50(0), p50(3)/p50(0))
}

// minimalPolicy serves ns with the smallest useful mutating policy: a preStop sleep for every container and a
// grace period, no variables, no warnings. It is the floor of what any mutating policy costs a pod CREATE.
func minimalPolicy(t *testing.T, ns string) {
	t.Helper()
	fp := admissionregistrationv1.Fail
	p := &admissionregistrationv1.MutatingAdmissionPolicy{ObjectMeta: metav1.ObjectMeta{Name: "lat-floor"},
		Spec: admissionregistrationv1.MutatingAdmissionPolicySpec{
			MatchConstraints: &admissionregistrationv1.MatchResources{ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{RuleWithOperations: admissionregistrationv1.RuleWithOperations{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
			}}}},
			Mutations: []admissionregistrationv1.Mutation{{PatchType: admissionregistrationv1.PatchTypeJSONPatch, JSONPatch: &admissionregistrationv1.JSONPatch{
				Expression: "lists.range(size(object.spec.containers)).map(i, JSONPatch{op: 'add', path: '/spec/containers/' + string(i) + '/lifecycle', value: {'preStop': {'sleep': {'seconds': 5}}}}) + " +
					"[JSONPatch{op: 'add', path: '/spec/terminationGracePeriodSeconds', value: 40}]"}}},
			FailurePolicy:      &fp,
			ReinvocationPolicy: admissionregistrationv1.NeverReinvocationPolicy,
		}}
	b := &admissionregistrationv1.MutatingAdmissionPolicyBinding{ObjectMeta: metav1.ObjectMeta{Name: "lat-floor"},
		Spec: admissionregistrationv1.MutatingAdmissionPolicyBindingSpec{PolicyName: "lat-floor", MatchResources: &admissionregistrationv1.MatchResources{
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns}}}}}
	ctx := context.Background()
	for _, o := range []client.Object{p, b} {
		if err := k8s.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	namespace(t, ns, nil, nil)
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, _, err := create(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "probe", Namespace: ns}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx:1.27"}}}}, true)
		if err == nil && got.Spec.TerminationGracePeriodSeconds != nil && *got.Spec.TerminationGracePeriodSeconds == 40 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("minimal policy not active after 30s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
