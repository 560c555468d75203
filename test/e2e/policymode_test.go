//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/lastcall-dev/lastcall/pkg/policy"
	"github.com/lastcall-dev/lastcall/test/e2e/framework"
	"github.com/lastcall-dev/lastcall/test/e2e/scenario"
)

// Issue 18: the rollout-under-load proof of TestIngressRolloutUnderLoad with lastcall in policy mode. The
// chart is installed a second time with mode=policy (only the admission policies; framework.InstallLastcallPolicy),
// and the webhook Deployment is scaled to 0 for the test, so only the MutatingAdmissionPolicy can have changed
// the pods: a pod it did not handle would reach the webhook, fail open and stay unchanged, and the API
// server's counters would show that call. Then the same scenario, the same function, zero failed requests,
// against the baseline without lastcall of this `go test` run (or one bounded run of it when
// TestIngressRolloutUnderLoad did not run). The app's pod is also compared field by field as the webhook and
// as the policy store it. Not parallel: it takes the webhook away from every other test and the policies
// serve every opted-in namespace while they are installed.
func TestIngressRolloutUnderLoadPolicyMode(t *testing.T) {
	env := framework.Current(t)
	ctx := context.Background()
	tr := ingress(t, env)

	baseline := ingressBaselines["rollout"]
	if len(baseline) == 0 {
		b := runIngress(t, env, tr, "baseline without lastcall", env.Namespace(t, nil), rolloutIngress)
		checkIngressWithout(t, "baseline without lastcall", b)
		baseline = append(baseline, b)
	} else {
		t.Logf("baseline: the %d runs without lastcall of TestIngressRolloutUnderLoad in this go test run", len(baseline))
	}
	for i, b := range baseline {
		if len(b.Failures()) == 0 {
			t.Errorf("baseline %d (%s): 0 of %d requests failed: zero failures in policy mode would prove nothing", i+1, b.Namespace, len(b.Records))
		}
	}

	ns := env.Namespace(t, optedIn)
	_, d, _ := scenario.IngressApp(rolloutIngress)
	appPod := func(name string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: d.Spec.Template.Labels}, Spec: *d.Spec.Template.Spec.DeepCopy()}
	}
	viaWebhook := dryRunPod(ctx, t, env, ns, appPod("via-webhook"))
	if viaWebhook.Annotations[annInjected] != "nginx=nginx,php=php-fpm" {
		t.Fatalf("the app's pod through the webhook: %s = %q", annInjected, viaWebhook.Annotations[annInjected])
	}

	// Cleanups run last first: the policies go (and the API server stops applying them) while the webhook is
	// still down, then the webhook comes back for the tests after this one.
	webhookDown(ctx, t, env)
	t.Cleanup(func() {
		ctx := context.Background()
		if err := env.UninstallLastcallPolicy(ctx); err != nil {
			t.Errorf("uninstall the policy-mode release: %v", err)
			return
		}
		waitPolicy(ctx, t, env, ns, appPod, false)
	})
	t0 := time.Now()
	if err := env.InstallLastcallPolicy(ctx); err != nil {
		t.Fatal(err)
	}
	viaPolicy := waitPolicy(ctx, t, env, ns, appPod, true)
	t.Logf("chart installed with mode=policy, the API server applying it after %.1fs, the webhook scaled to 0", time.Since(t0).Seconds())
	if diff := cmp.Diff(lastcallView(viaWebhook), lastcallView(viaPolicy)); diff != "" {
		t.Errorf("the app's pod as the webhook (-) and the policy (+) store it differ:\n%s", diff)
	}

	before := admissionCounts(ctx, t, env)
	r := runIngress(t, env, tr, "policy mode", ns, rolloutIngress)
	r.Mode = "policy mode"
	after := admissionCounts(ctx, t, env)
	t.Logf("API server counters over the run: %s", after.sub(before))
	if n := after.webhookCalls - before.webhookCalls; n != 0 {
		t.Errorf("the API server called lastcall's webhook %.0f times during the run (it is scaled to 0): pods the policy did not handle", n)
	}
	if n := after.failOpen - before.failOpen; n != 0 {
		t.Errorf("%.0f webhook calls failed open during the run: pods the policy did not handle", n)
	}
	// The app's pods: the Deployment's and the rollout's new ones.
	created := 2 * rolloutIngress.Replicas
	if n := after.policyOK - before.policyOK; n < float64(created) {
		t.Errorf("the MutatingAdmissionPolicy ran %.0f times without error for the %d pods created", n, created)
	} else {
		// Without the not-already-handled condition the API server would run it twice per pod: its own change
		// re-runs the chain (reinvocationPolicy IfNeeded).
		t.Logf("MutatingAdmissionPolicy evaluations per pod CREATE: %.2f", n/float64(created))
	}
	if n := after.policyErr - before.policyErr; n != 0 {
		t.Errorf("the MutatingAdmissionPolicy failed %.0f times (compile, invalid or out of budget)", n)
	}
	checkIngressWith(t, "policy mode", r)
	for i := range r.Pods {
		if diff := cmp.Diff(lastcallView(viaWebhook), lastcallView(&r.Pods[i])); diff != "" {
			t.Errorf("pod %s as stored in policy mode differs from the app's pod through the webhook (-webhook +stored):\n%s", r.Pods[i].Name, diff)
		}
	}
	runs := append(append([]*scenario.IngressResult(nil), baseline...), r)
	writeIngressTable(t, env, tr, "rollout-policy", runs)
	writeIngressPicture(t, env, tr, "rollout-policy", baseline[0], r)
	t.Logf("policy mode: %d requests, %d failed, p50 %s, p99 %s, rollout %.1fs; baseline without lastcall: %s",
		len(r.Records), len(r.Failures()), r.Latency(50).Round(time.Millisecond), r.Latency(99).Round(time.Millisecond), r.Rollout.Seconds(), failedOf(baseline))
}

// webhookDown scales lastcall's webhook to 0 for the rest of the test and back afterwards (a cleanup
// registered first, so it runs after the test's own).
func webhookDown(ctx context.Context, t *testing.T, env *framework.Env) {
	t.Helper()
	replicas, err := env.LastcallReplicas(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := env.ScaleLastcall(context.Background(), replicas); err != nil {
			t.Errorf("scale the webhook back to %d: %v", replicas, err)
		}
	})
	if err := env.ScaleLastcall(ctx, 0); err != nil {
		t.Fatal(err)
	}
}

func failedOf(runs []*scenario.IngressResult) string {
	var s []string
	for _, r := range runs {
		s = append(s, fmt.Sprintf("%d of %d failed", len(r.Failures()), len(r.Records)))
	}
	return strings.Join(s, ", ")
}

// dryRunPod creates p in ns with dryRun=All and returns the pod as the API server would store it: every
// admission plugin, policy and webhook (sideEffects None) has run.
func dryRunPod(ctx context.Context, t *testing.T, env *framework.Env, ns string, p *corev1.Pod) *corev1.Pod {
	t.Helper()
	out, err := env.Client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil {
		t.Fatalf("dry-run create of pod %s in %s: %v", p.Name, ns, err)
	}
	return out
}

// waitPolicy waits until the API server applies the MutatingAdmissionPolicy (applied) or no longer does, by
// dry-run creates of the app's pod while the webhook is down: injected means the policy ran. It returns the
// last pod.
func waitPolicy(ctx context.Context, t *testing.T, env *framework.Env, ns string, pod func(string) *corev1.Pod, applied bool) *corev1.Pod {
	t.Helper()
	var p *corev1.Pod
	err := framework.WaitFor(ctx, time.Minute, fmt.Sprintf("the API server applying the policy: %v", applied), func(ctx context.Context) (bool, error) {
		p = dryRunPod(ctx, t, env, ns, pod(fmt.Sprintf("canary-%d", time.Now().UnixNano())))
		_, injected := p.Annotations[annInjected]
		return injected == applied, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// podView is a pod as far as lastcall decides it.
type podView struct {
	Meta map[string]string
	Spec corev1.PodSpec
}

// lastcallView is the pod's lastcall.dev annotations and labels and its whole spec, without what only names
// this one pod (the ServiceAccount token volume's generated name, the node).
func lastcallView(p *corev1.Pod) podView {
	v := podView{Meta: map[string]string{}, Spec: *p.Spec.DeepCopy()}
	for k, val := range p.Annotations {
		if strings.HasPrefix(k, "lastcall.dev/") {
			v.Meta["annotation "+k] = val
		}
	}
	for k, val := range p.Labels {
		if strings.HasPrefix(k, "lastcall.dev/") {
			v.Meta["label "+k] = val
		}
	}
	token := func(name string) bool { return strings.HasPrefix(name, "kube-api-access-") }
	var vols []corev1.Volume
	for _, vol := range v.Spec.Volumes {
		if !token(vol.Name) {
			vols = append(vols, vol)
		}
	}
	v.Spec.Volumes = vols
	for _, cs := range [][]corev1.Container{v.Spec.InitContainers, v.Spec.Containers} {
		for i := range cs {
			var ms []corev1.VolumeMount
			for _, m := range cs[i].VolumeMounts {
				if !token(m.Name) {
					ms = append(ms, m)
				}
			}
			cs[i].VolumeMounts = ms
		}
	}
	v.Spec.NodeName = ""
	return v
}

// admissionCounters are the API server's counts for lastcall's webhook and MutatingAdmissionPolicy.
type admissionCounters struct {
	webhookCalls, failOpen, policyOK, policyErr float64
}

func (c admissionCounters) sub(o admissionCounters) string {
	return fmt.Sprintf("webhook calls %.0f, webhook fail-open %.0f, MutatingAdmissionPolicies %v checks %.0f without error and %.0f with one",
		c.webhookCalls-o.webhookCalls, c.failOpen-o.failOpen, policy.MutatingNames(framework.LastcallPolicy), c.policyOK-o.policyOK, c.policyErr-o.policyErr)
}

func admissionCounts(ctx context.Context, t *testing.T, env *framework.Env) admissionCounters {
	t.Helper()
	c := admissionCounters{webhookCalls: webhookCalls(ctx, t, env)}
	var err error
	if c.failOpen, err = apiserverMetric(ctx, env, "apiserver_admission_webhook_fail_open_count", `name="pods.lastcall.dev"`); err != nil {
		t.Fatal(err)
	}
	// The render's mutating policies (one, with both ways): a pod is checked by it.
	var all float64
	for _, name := range policy.MutatingNames(framework.LastcallPolicy) {
		p, b := fmt.Sprintf(`policy="%s"`, name), fmt.Sprintf(`policy_binding="%s"`, name)
		n, err := apiserverMetric(ctx, env, "apiserver_mutating_admission_policy_check_total", p, b)
		if err != nil {
			t.Fatal(err)
		}
		ok, err := apiserverMetric(ctx, env, "apiserver_mutating_admission_policy_check_total", p, b, `error_type="no_error"`)
		if err != nil {
			t.Fatal(err)
		}
		all += n
		c.policyOK += ok
	}
	c.policyErr = all - c.policyOK
	return c
}
