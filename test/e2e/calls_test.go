//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/lastcall-dev/lastcall/test/e2e/framework"
)

// webhookCalls is the API server's own count of calls to lastcall's webhook for pod CREATEs.
func webhookCalls(ctx context.Context, t *testing.T, env *framework.Env) float64 {
	t.Helper()
	n, err := apiserverMetric(ctx, env, "apiserver_admission_webhook_admission_duration_seconds_count",
		`name="pods.lastcall.dev"`, `operation="CREATE"`, `type="admit"`)
	if err != nil {
		t.Fatalf("read the API server's metrics: %v", err)
	}
	return n
}

// TestOneWebhookCallPerPod: on the real API server the ServiceAccount admission plugin re-runs after lastcall
// and adds its token mount to lastcall-shim, which makes the API server reinvoke lastcall (reinvocationPolicy
// IfNeeded). lastcall used to undo the mount and so was called twice for every pod. Now the
// not-already-handled matchCondition spares the second call: exactly one call per pod CREATE, and the token
// mount stays. It also measures pod CREATE latency with and without lastcall, interleaved in one run.
// Not parallel: the call count is cluster-wide.
func TestOneWebhookCallPerPod(t *testing.T) {
	env := framework.Current(t)
	ctx := context.Background()
	with := env.Namespace(t, optedIn)
	without := env.Namespace(t, nil)
	const pods = 40
	pod := func(i int) *corev1.Pod {
		// nginx + php-fpm shape (the shim and a check init container), never scheduled: only CREATE is measured.
		p := newPod(fmt.Sprintf("p-%d", i), nil, nginxContainer("web"), corev1.Container{Name: "php", Image: "php:8.3-fpm"})
		p.Spec.NodeSelector = map[string]string{"e2e.lastcall.dev/never": "scheduled"}
		return p
	}
	// Warm both paths (connections, the webhook's caches) before counting.
	for i := 0; i < 3; i++ {
		for _, ns := range []string{with, without} {
			if _, err := env.Client.CoreV1().Pods(ns).Create(ctx, pod(1000+i), metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	before := webhookCalls(ctx, t, env)
	var lat = map[string][]time.Duration{with: nil, without: nil}
	for i := 0; i < pods; i++ {
		for _, ns := range []string{with, without} {
			start := time.Now()
			if _, err := env.Client.CoreV1().Pods(ns).Create(ctx, pod(i), metav1.CreateOptions{}); err != nil {
				t.Fatalf("create pod %d in %s: %v", i, ns, err)
			}
			lat[ns] = append(lat[ns], time.Since(start))
		}
	}
	calls := webhookCalls(ctx, t, env) - before
	t.Logf("webhook calls for %d pod CREATEs with lastcall: %.0f (%.2f per pod)", pods, calls, calls/pods)
	if calls != pods {
		t.Errorf("the API server called lastcall %.0f times for %d pods, want exactly one call per pod", calls, pods)
	}
	q := func(d []time.Duration, p float64) time.Duration {
		s := slices.Clone(d)
		slices.Sort(s)
		return s[min(len(s)-1, int(float64(len(s))*p))]
	}
	w50, w99, o50, o99 := q(lat[with], .5), q(lat[with], .99), q(lat[without], .5), q(lat[without], .99)
	t.Logf("pod CREATE latency over %d pods each, interleaved: with lastcall p50 %s p99 %s; without p50 %s p99 %s; p50 ratio %.2f",
		pods, w50.Round(10*time.Microsecond), w99.Round(10*time.Microsecond), o50.Round(10*time.Microsecond), o99.Round(10*time.Microsecond), float64(w50)/float64(o50))

	// The baseline, so the count above can fail: without the not-already-handled condition the API server
	// reinvokes lastcall for every pod (the ServiceAccount plugin changed it after lastcall's call).
	if per := callsPerPodWithout(ctx, t, env, with, pod); per != 2 {
		t.Errorf("without the not-already-handled matchCondition: %.2f calls per pod, want 2 (the reinvocation it spares)", per)
	}

	// The pods are injected and keep what the ServiceAccount plugin added to lastcall's init container.
	p, err := env.Client.CoreV1().Pods(with).Get(ctx, "p-0", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Annotations[annInjected] != "web=nginx,php=php-fpm" {
		t.Fatalf("pod not injected: %s = %q", annInjected, p.Annotations[annInjected])
	}
	shim := findContainer(p.Spec.InitContainers, "lastcall-shim")
	if shim == nil {
		t.Fatal("no lastcall-shim init container")
	}
	token := false
	for _, m := range shim.VolumeMounts {
		token = token || m.MountPath == "/var/run/secrets/kubernetes.io/serviceaccount"
	}
	if !token {
		t.Logf("note: lastcall-shim has no ServiceAccount token mount (mounts %+v): the plugin did not add one on this cluster", shim.VolumeMounts)
	}
}

// callsPerPodWithout removes the not-already-handled matchCondition from lastcall's webhook configuration,
// measures the calls per pod CREATE over 10 pods, and restores the configuration.
func callsPerPodWithout(ctx context.Context, t *testing.T, env *framework.Env, ns string, pod func(int) *corev1.Pod) float64 {
	t.Helper()
	api := env.Client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	list, err := api.List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var orig *admissionregistrationv1.MutatingWebhookConfiguration
	for i := range list.Items {
		for _, w := range list.Items[i].Webhooks {
			if w.Name == "pods.lastcall.dev" {
				orig = &list.Items[i]
			}
		}
	}
	if orig == nil {
		t.Fatal("no webhook configuration with pods.lastcall.dev")
	}
	set := func(keep bool) {
		t.Helper()
		err := framework.WaitFor(ctx, 20*time.Second, "update the webhook configuration", func(ctx context.Context) (bool, error) {
			cur, err := api.Get(ctx, orig.Name, metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			for i := range cur.Webhooks {
				if cur.Webhooks[i].Name != "pods.lastcall.dev" {
					continue
				}
				var mc []admissionregistrationv1.MatchCondition
				for _, c := range orig.Webhooks[i].MatchConditions {
					if keep || c.Name != "not-already-handled" {
						mc = append(mc, c)
					}
				}
				cur.Webhooks[i].MatchConditions = mc
			}
			_, err = api.Update(ctx, cur, metav1.UpdateOptions{})
			return err == nil, nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	// The API server loads webhook configurations asynchronously: wait until a canary pod sees the change.
	settle := func(want float64, base int) {
		t.Helper()
		for i := 0; ; i++ {
			before := webhookCalls(ctx, t, env)
			if _, err := env.Client.CoreV1().Pods(ns).Create(ctx, pod(base+i), metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			if webhookCalls(ctx, t, env)-before == want {
				return
			}
			if i > 40 {
				t.Fatalf("the API server never applied the changed webhook configuration (want %.0f calls per pod)", want)
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	set(false)
	defer func() { set(true); settle(1, 3000) }()
	settle(2, 2000)
	before := webhookCalls(ctx, t, env)
	for i := 0; i < 10; i++ {
		if _, err := env.Client.CoreV1().Pods(ns).Create(ctx, pod(2100+i), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	per := (webhookCalls(ctx, t, env) - before) / 10
	t.Logf("without the not-already-handled matchCondition: %.2f webhook calls per pod CREATE", per)
	return per
}
