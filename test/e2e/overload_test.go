//go:build e2e

package e2e

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/lastcall-dev/lastcall/test/e2e/framework"
)

// Overload: a bounded burst of CREATEs far above what two CPU-limited replicas serve, all at once. With failurePolicy Ignore every
// CREATE must succeed: the webhook answers, or the API server gives up on it after timeoutSeconds and admits
// the pod uninjected (counted as fail-open). The webhook has no queue of its own to grow: its memory stays
// within the pod's limit (an OOM kill would show as a restart), and afterwards the same replicas are ready
// and inject again, without a restart. Not parallel: the burst would distort every other test's timing.
func TestOverload(t *testing.T) {
	const (
		burst       = 600
		concurrency = 100
	)
	env := framework.Current(t)
	ctx := context.Background()
	// Two replicas with 50m of CPU each: on two shared cores the API server, not lastcall, would otherwise be
	// the bottleneck, and the burst would never reach the webhook's limit.
	t.Cleanup(func() {
		if err := env.InstallLastcall(context.Background()); err != nil {
			t.Errorf("restore the default lastcall install: %v", err)
		}
	})
	if err := env.InstallLastcall(ctx, "resources.limits.cpu=50m"); err != nil {
		t.Fatal(err)
	}
	before, err := lastcallPods(ctx, env)
	if err != nil {
		t.Fatal(err)
	}
	restarts := func(p corev1.Pod) int32 {
		n := int32(0)
		for _, c := range p.Status.ContainerStatuses {
			n += c.RestartCount
		}
		return n
	}
	match := `name="pods.lastcall.dev"`
	openBefore, err := apiserverMetric(ctx, env, failOpenMetric, match)
	if err != nil {
		t.Fatal(err)
	}
	ns := env.Namespace(t, optedIn)
	cfg := *env.Config
	cfg.QPS, cfg.Burst = 2000, 2000
	cs, err := kubernetes.NewForConfig(&cfg)
	if err != nil {
		t.Fatal(err)
	}

	var (
		mu         sync.Mutex
		lat        []time.Duration
		failed     int
		firstErr   error
		uninjected int
	)
	work := make(chan int)
	var wg sync.WaitGroup
	t0 := time.Now()
	for w := 0; w < concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range work {
				p := &corev1.Pod{
					ObjectMeta: metav1.ObjectMeta{GenerateName: "burst-"},
					Spec: corev1.PodSpec{NodeName: noSuchNode, DNSPolicy: corev1.DNSDefault,
						TerminationGracePeriodSeconds: ptr.To(int64(1)), Containers: []corev1.Container{testappContainer("app")}},
				}
				cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
				s := time.Now()
				out, err := cs.CoreV1().Pods(ns).Create(cctx, p, metav1.CreateOptions{})
				d := time.Since(s)
				cancel()
				mu.Lock()
				lat = append(lat, d)
				switch {
				case err != nil:
					failed++
					if firstErr == nil {
						firstErr = err
					}
				case !isInjected(out):
					uninjected++
				}
				mu.Unlock()
			}
		}()
	}
	for i := 0; i < burst; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	elapsed := time.Since(t0)
	t.Cleanup(func() {
		_ = cs.CoreV1().Pods(ns).DeleteCollection(context.Background(), metav1.DeleteOptions{GracePeriodSeconds: ptr.To(int64(0))},
			metav1.ListOptions{FieldSelector: "spec.nodeName=" + noSuchNode})
	})
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	openAfter, _ := apiserverMetric(ctx, env, failOpenMetric, match)
	pct := func(q float64) time.Duration { return lat[int(q*float64(len(lat)-1))] }
	t.Logf("burst of %d CREATEs, %d at once, in %.1fs (%.0f/s): failed %d, admitted uninjected %d (fail-open calls +%v), latency p50 %.2fs p99 %.2fs max %.2fs",
		burst, concurrency, elapsed.Seconds(), float64(burst)/elapsed.Seconds(), failed, uninjected, openAfter-openBefore,
		pct(0.5).Seconds(), pct(0.99).Seconds(), lat[len(lat)-1].Seconds())
	if failed > 0 {
		t.Errorf("%d CREATEs failed with failurePolicy Ignore: %v", failed, firstErr)
	}
	// Each CREATE calls the webhook at most twice (reinvocation); each call ends within timeoutSeconds.
	if worst, limit := lat[len(lat)-1], 2*webhookTimeout+5*time.Second; worst > limit {
		t.Errorf("worst CREATE took %v: more than two webhook timeouts and a margin (%v)", worst, limit)
	}
	if openAfter-openBefore < float64(uninjected) {
		t.Errorf("%d pods admitted uninjected but %s rose by only %v", uninjected, failOpenMetric, openAfter-openBefore)
	}

	// Afterwards: the same replicas, no restart, ready, injecting; memory within the limit.
	if err := env.WaitLastcallReady(ctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	after, err := lastcallPods(ctx, env)
	if err != nil {
		t.Fatal(err)
	}
	byUID := map[string]corev1.Pod{}
	for _, p := range after {
		byUID[string(p.UID)] = p
	}
	for _, p := range before {
		a, ok := byUID[string(p.UID)]
		if !ok {
			t.Errorf("webhook pod %s is gone after the burst", p.Name)
			continue
		}
		if restarts(a) != restarts(p) {
			t.Errorf("webhook pod %s restarted during the burst (%d -> %d)", p.Name, restarts(p), restarts(a))
		}
		if peak, ok := podMemoryPeak(string(p.UID)); ok {
			t.Logf("webhook pod %s: peak memory %.1f MiB (limit 128 MiB)", p.Name, float64(peak)/(1<<20))
		}
	}
	probe := newPod("after-burst", nil, testappContainer("app"))
	probe.Spec.NodeName = noSuchNode // admission only
	if p := createPod(t, env, ns, probe); p.Annotations[annInjected] != "app=http" {
		t.Errorf("pod created after the burst not injected: %v", p.Annotations)
	}
}

// podMemoryPeak reads the pod cgroup's peak memory on this host (the local cluster's kubelet uses cgroupfs
// with cgroup v1); false elsewhere.
func podMemoryPeak(uid string) (int64, bool) {
	matches, _ := filepath.Glob("/sys/fs/cgroup/memory/kubepods*/*/pod" + uid + "/memory.max_usage_in_bytes")
	more, _ := filepath.Glob("/sys/fs/cgroup/memory/kubepods*/pod" + uid + "/memory.max_usage_in_bytes")
	for _, m := range append(matches, more...) {
		b, err := os.ReadFile(m)
		if err != nil {
			continue
		}
		if n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil {
			return n, true
		}
	}
	return 0, false
}
