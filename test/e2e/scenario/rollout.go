//go:build e2e

package scenario

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/lastcall-dev/lastcall/internal/loadgen"
	"github.com/lastcall-dev/lastcall/test/e2e/framework"
)

// RolloutOptions configure scenario 1 (`kubectl rollout restart` of the nginx + php-fpm Deployment under load)
// and scenario 2 (the same with `kubectl scale` down).
type RolloutOptions struct {
	Replicas int32 // 2
	ScaleTo  int32 // > 0: scale down to this many replicas instead of a rollout restart
	// Deploy creates the app "web" (Deployment, Service, ConfigMap) in ns; nil: nginx + php-fpm (WebAppObjects).
	Deploy                func(ctx context.Context, env *framework.Env, ns string, replicas int32) error
	ProcessControlTimeout string        // php-fpm's process_control_timeout ("20s")
	Propagation           time.Duration // endpoint propagation delay of the client (1 s)
	WarmUp, Tail          time.Duration // load before the restart (3 s) and after the rollout completed (2 s)
	Load                  LoadConfig
	Logf                  func(format string, a ...any)
}

// RolloutResult is what one run measured.
type RolloutResult struct {
	Namespace string
	Lastcall  bool // the namespace was opted in
	Records   []Record
	Rollout   time.Duration // from `kubectl rollout restart` (or scale) until only the wanted pods are left
	Restart   time.Time
	Pods      []corev1.Pod // the pods after the rollout (as stored: injected or not)
	Changes   []Change     // the client's endpoint updates
	Load      LoadConfig   // the load as run (defaults filled in, InCluster set when chosen)
}

// RunRollout deploys the app in ns (which must exist), waits for it, starts the endpoint-following load,
// restarts the Deployment, waits until the old pods are gone, and returns the records.
func RunRollout(ctx context.Context, env *framework.Env, ns string, o RolloutOptions) (*RolloutResult, error) {
	if o.Replicas == 0 {
		o.Replicas = 2
	}
	if o.ProcessControlTimeout == "" {
		o.ProcessControlTimeout = "20s"
	}
	if o.Propagation == 0 {
		o.Propagation = time.Second
	}
	if o.WarmUp == 0 {
		o.WarmUp = 3 * time.Second
	}
	if o.Tail == 0 {
		o.Tail = 2 * time.Second
	}
	if o.Logf == nil {
		o.Logf = framework.Logf
	}
	if !env.Provider.PodNetworkReachable() {
		o.Load.InCluster = true
	}
	if len(o.Load.Allowed) == 0 {
		if !env.PodCIDR().IsValid() {
			return nil, fmt.Errorf("the load sends traffic only to pod IPs, but the pod CIDR of provider %s is unknown: set E2E_POD_CIDR", env.Provider.Name())
		}
		o.Load.Allowed = []netip.Prefix{env.PodCIDR()}
	}
	o.Load.defaults()
	res0 := o.Load
	ns0, err := env.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	res := &RolloutResult{Namespace: ns, Lastcall: ns0.Labels[framework.LabelInject] == "enabled", Load: res0}
	if o.Deploy == nil {
		o.Deploy = func(ctx context.Context, env *framework.Env, ns string, replicas int32) error {
			cm, d, svc := WebAppObjects(replicas, o.ProcessControlTimeout)
			if _, err := env.Client.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
				return err
			}
			if _, err := env.Client.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
				return err
			}
			_, err := env.Client.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{})
			return err
		}
	}
	if err := o.Deploy(ctx, env, ns, o.Replicas); err != nil {
		return nil, err
	}
	if err := waitRolledOut(ctx, env, ns, o.Replicas, 3*time.Minute); err != nil {
		return nil, err
	}
	load, err := startLoad(ctx, env, ns, WebApp, o.Propagation, o.Load)
	if err != nil {
		return nil, fmt.Errorf("starting the load: %w", err)
	}
	if err := framework.WaitFor(ctx, 2*time.Minute, fmt.Sprintf("%d endpoints in the client", o.Replicas), func(context.Context) (bool, error) {
		return len(load.Targets()) == int(o.Replicas), nil
	}); err != nil {
		load.Stop()
		return nil, err
	}
	o.Logf("%s: %d pods ready; load from %s: %d clients (%d keep-alive), /slow %d-%d ms, endpoint propagation %v",
		ns, o.Replicas, o.Load.Where(), o.Load.Clients, o.Load.KeepAliveClients, o.Load.MinMs, o.Load.MaxMs, o.Propagation)
	time.Sleep(o.WarmUp)
	res.Restart = time.Now()
	action, want := []string{"rollout", "restart", "-n", ns, "deployment/" + WebApp}, o.Replicas
	if o.ScaleTo > 0 {
		action, want = []string{"scale", "-n", ns, "deployment/" + WebApp, fmt.Sprintf("--replicas=%d", o.ScaleTo)}, o.ScaleTo
	}
	if _, err := env.Kubectl(ctx, action...); err != nil {
		load.Stop()
		return nil, err
	}
	o.Logf("%s: kubectl %s", ns, strings.Join(action, " "))
	err = waitRolledOut(ctx, env, ns, want, 5*time.Minute)
	res.Rollout = time.Since(res.Restart)
	if err == nil {
		o.Logf("%s: done in %.1fs (%d pods left, no old or terminating one)", ns, res.Rollout.Seconds(), want)
		time.Sleep(o.Tail)
	}
	recs, changes, lerr := load.Stop()
	res.Records, res.Changes = recs, changes
	if pods, perr := env.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + WebApp}); perr == nil {
		res.Pods = pods.Items
	}
	if err != nil {
		return res, err
	}
	return res, lerr
}

// waitRolledOut waits until the Deployment has exactly replicas updated, available pods and no other pod
// (old ones terminating included) is left.
func waitRolledOut(ctx context.Context, env *framework.Env, ns string, replicas int32, timeout time.Duration) error {
	return framework.WaitFor(ctx, timeout, "deployment "+WebApp+" rolled out with no old pod left", func(ctx context.Context) (bool, error) {
		d, err := env.Client.AppsV1().Deployments(ns).Get(ctx, WebApp, metav1.GetOptions{})
		if err != nil || !rolledOut(d, replicas) {
			return false, nil
		}
		pods, err := env.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + WebApp})
		if err != nil {
			return false, nil
		}
		for _, p := range pods.Items {
			for _, cs := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
				if w := cs.State.Waiting; w != nil && (w.Reason == "CrashLoopBackOff" || w.Reason == "ErrImagePull" || w.Reason == "ImagePullBackOff") {
					return false, fmt.Errorf("pod %s container %s: %s %s", p.Name, cs.Name, w.Reason, w.Message)
				}
			}
		}
		return len(pods.Items) == int(replicas), nil
	})
}

func rolledOut(d *appsv1.Deployment, replicas int32) bool {
	s := d.Status
	return s.ObservedGeneration >= d.Generation && s.Replicas == replicas && s.UpdatedReplicas == replicas &&
		s.AvailableReplicas == replicas && s.ReadyReplicas == replicas
}

// Failures returns the records that did not end OK.
func (r *RolloutResult) Failures() []Record {
	var out []Record
	for _, rec := range r.Records {
		if rec.Kind != loadgen.OK {
			out = append(out, rec)
		}
	}
	return out
}

// ByKind counts the failures by kind.
func (r *RolloutResult) ByKind() map[loadgen.Kind]int {
	m := map[loadgen.Kind]int{}
	for _, rec := range r.Failures() {
		m[rec.Kind]++
	}
	return m
}

// Latency returns the p-th percentile (0..100, nearest rank) of the successful requests' durations.
func (r *RolloutResult) Latency(p float64) time.Duration { return okLatency(r.Records, p) }

// FailureKinds are the columns of the table, in order.
var FailureKinds = []loadgen.Kind{loadgen.ConnectRefused, loadgen.Reset, loadgen.EOF, loadgen.Status5xx, loadgen.Timeout, loadgen.Status4xx, loadgen.Other}

// Table renders runs side by side as a Markdown table.
func Table(runs ...*RolloutResult) string {
	var b strings.Builder
	b.WriteString("| run | requests | failed | on kept-alive conn |")
	for _, k := range FailureKinds {
		b.WriteString(" " + string(k) + " |")
	}
	b.WriteString(" p50 | p99 | rollout |\n|---|---:|---:|---:|")
	for range FailureKinds {
		b.WriteString("---:|")
	}
	b.WriteString("---:|---:|---:|\n")
	for _, r := range runs {
		name := "without lastcall"
		if r.Lastcall {
			name = "with lastcall"
		}
		by := r.ByKind()
		reused := 0
		for _, f := range r.Failures() {
			if f.Reused {
				reused++
			}
		}
		fmt.Fprintf(&b, "| %s | %d | %d | %d |", name, len(r.Records), len(r.Failures()), reused)
		for _, k := range FailureKinds {
			fmt.Fprintf(&b, " %d |", by[k])
		}
		fmt.Fprintf(&b, " %.2fs | %.2fs | %.1fs |\n", r.Latency(50).Seconds(), r.Latency(99).Seconds(), r.Rollout.Seconds())
	}
	return b.String()
}

// FailureLines describes each failure: when (relative to the restart), which pod, what kind, the error.
func (r *RolloutResult) FailureLines(limit int) []string {
	var out []string
	for i, rec := range r.Failures() {
		if i == limit {
			out = append(out, fmt.Sprintf("... and %d more", len(r.Failures())-limit))
			break
		}
		conn := "fresh conn"
		if rec.Reused {
			conn = "kept-alive conn"
		}
		out = append(out, fmt.Sprintf("t=%+.2fs..%+.2fs pod %s (%s, %s): %s %s", rec.Start.Sub(r.Restart).Seconds(), rec.End.Sub(r.Restart).Seconds(), rec.Pod, rec.IP, conn, rec.Kind, rec.Err))
	}
	return out
}
