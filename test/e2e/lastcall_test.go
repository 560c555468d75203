//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	lastcallv1 "github.com/lastcall-dev/lastcall/api/v1alpha1"
	"github.com/lastcall-dev/lastcall/test/e2e/framework"
)

// In an opted-in namespace the stored pod has the shim init container, the preStop and the grace period; the
// shim really was installed and runs inside a distroless container.
func TestInjectionDistroless(t *testing.T) {
	t.Parallel()
	env := framework.Current(t)
	ctx := context.Background()
	ns := env.Namespace(t, optedIn)
	// SIGINT is not SIGTERM: without ContainerStopSignals lastcall renders the shim's exec preStop.
	p := createPod(t, env, ns, newPod("app", map[string]string{annDrainDelay: "1s", annStopSignal: "SIGINT", annDrainTimeout: "10s"},
		testappContainer("app")))

	if got := p.Annotations[annInjected]; got != "app=http" {
		t.Errorf("annotation %s = %q, want app=http", annInjected, got)
	}
	if len(p.Spec.InitContainers) == 0 || p.Spec.InitContainers[0].Name != shimContainer {
		t.Fatalf("init containers %v: want %s first", p.Spec.InitContainers, shimContainer)
	}
	c := p.Spec.Containers[0]
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Exec == nil {
		t.Fatalf("container app: want an exec preStop, got %+v", c.Lifecycle)
	}
	cmd := strings.Join(c.Lifecycle.PreStop.Exec.Command, " ")
	for _, want := range []string{shimPath + " prestop", "--delay 1s", "--signal SIGINT", "--timeout 10s"} {
		if !strings.Contains(cmd, want) {
			t.Errorf("preStop %q does not contain %q", cmd, want)
		}
	}
	if g := p.Spec.TerminationGracePeriodSeconds; g == nil || *g != 13 {
		t.Errorf("terminationGracePeriodSeconds = %v, want 13 (1s + 10s + 2s)", ptr.Deref(g, -1))
	}
	mounted := false
	for _, m := range c.VolumeMounts {
		mounted = mounted || (m.MountPath == "/lastcall/bin" && m.ReadOnly)
	}
	if !mounted {
		t.Errorf("container app: no read-only mount at /lastcall/bin: %+v", c.VolumeMounts)
	}

	p, err := env.WaitForPodRunning(ctx, ns, "app", 90*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if cs := containerStatus(p, shimContainer); cs == nil || cs.State.Terminated == nil || cs.State.Terminated.ExitCode != 0 {
		t.Fatalf("init container %s did not complete: %+v", shimContainer, cs)
	}
	out, err := env.Kubectl(ctx, "exec", "-n", ns, "app", "-c", "app", "--", shimPath, "version")
	if err != nil || !strings.Contains(out, framework.LastcallVersion()) {
		t.Fatalf("%s version in the distroless container: %v %q", shimPath, err, out)
	}
	t.Logf("shim in the distroless container: %s", strings.TrimSpace(out))
}

// Not in a namespace without the label; not for a pod that opts out; every pod of a Deployment.
func TestInjectionSelection(t *testing.T) {
	t.Parallel()
	env := framework.Current(t)
	ctx := context.Background()

	t.Run("namespace-without-label", func(t *testing.T) {
		ns := env.Namespace(t, nil)
		p := createPod(t, env, ns, newPod("plain", nil, nginxContainer("web")))
		if isInjected(p) {
			t.Fatalf("pod in a namespace without %s=enabled was injected: annotations %v, init %d", framework.LabelInject, p.Annotations, len(p.Spec.InitContainers))
		}
	})
	t.Run("pod-opt-out", func(t *testing.T) {
		ns := env.Namespace(t, optedIn)
		byLabel := newPod("by-label", nil, nginxContainer("web"))
		byLabel.Labels = map[string]string{framework.LabelInject: "disabled"}
		if p := createPod(t, env, ns, byLabel); isInjected(p) {
			t.Errorf("pod labelled %s=disabled was injected: %v", framework.LabelInject, p.Annotations)
		}
		if p := createPod(t, env, ns, newPod("by-annotation", map[string]string{"lastcall.dev/inject": "false"}, nginxContainer("web"))); isInjected(p) {
			t.Errorf("pod annotated lastcall.dev/inject=false was injected: %v", p.Annotations)
		}
		// The control: the same pod without the opt-out is injected in this namespace.
		if p := createPod(t, env, ns, newPod("control", nil, nginxContainer("web"))); p.Annotations[annInjected] != "web=nginx" {
			t.Errorf("control pod: %s = %q, want web=nginx", annInjected, p.Annotations[annInjected])
		}
	})
	t.Run("deployment", func(t *testing.T) {
		ns := env.Namespace(t, optedIn)
		labels := map[string]string{"app": "web"}
		d := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "web"},
			Spec: appsv1.DeploymentSpec{
				Replicas: ptr.To(int32(2)),
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: map[string]string{annDrainDelay: "1s"}},
					Spec:       newPod("", nil, nginxContainer("web")).Spec,
				},
			},
		}
		if _, err := env.Client.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		var pods []corev1.Pod
		err := framework.WaitFor(ctx, 90*time.Second, "2 ready pods of deployment web", func(ctx context.Context) (bool, error) {
			l, err := env.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
			if err != nil {
				return false, nil
			}
			ready := 0
			for _, p := range l.Items {
				for _, c := range p.Status.Conditions {
					if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
						ready++
					}
				}
			}
			pods = l.Items
			return ready == 2, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pods {
			c := p.Spec.Containers[0]
			if p.Annotations[annInjected] != "web=nginx" || c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Exec == nil {
				t.Errorf("pod %s of the Deployment not injected: annotations %v, lifecycle %+v", p.Name, p.Annotations, c.Lifecycle)
				continue
			}
			if cmd := strings.Join(c.Lifecycle.PreStop.Exec.Command, " "); !strings.Contains(cmd, "--signal SIGQUIT") || !strings.Contains(cmd, "--delay 1s") {
				t.Errorf("pod %s: preStop %q, want the nginx profile with the 1s delay", p.Name, cmd)
			}
		}
	})
}

// warnings collects the Warning headers of API responses.
// warningClient is a clientset whose API server warnings w records.
func warningClient(t *testing.T, env *framework.Env) (*kubernetes.Clientset, *warnings) {
	t.Helper()
	w := &warnings{}
	cfg := rest.CopyConfig(env.Config)
	cfg.WarningHandler = w
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs, w
}

type warnings struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warnings) HandleWarningHeader(code int, agent, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, text)
}

// A bad annotation is reported as an admission warning in the API response; the pod is admitted with the
// fallback and runs.
func TestBadAnnotationWarns(t *testing.T) {
	t.Parallel()
	env := framework.Current(t)
	ctx := context.Background()
	ns := env.Namespace(t, optedIn)
	cs, w := warningClient(t, env)
	p, err := cs.CoreV1().Pods(ns).Create(ctx, newPod("web", map[string]string{annDrainDelay: "soon"}, nginxContainer("web")), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	w.mu.Lock()
	msgs := append([]string(nil), w.msgs...)
	w.mu.Unlock()
	found := false
	for _, m := range msgs {
		found = found || (strings.Contains(m, annDrainDelay) && strings.Contains(m, "soon"))
	}
	if !found {
		t.Fatalf("no warning naming %s and its value in the API response; warnings: %q", annDrainDelay, msgs)
	}
	t.Logf("warning: %q", msgs)
	if p.Annotations[annInjected] != "web=nginx" {
		t.Errorf("pod not injected with the fallback: %v", p.Annotations)
	}
	if _, err := env.WaitForPodReady(ctx, ns, "web", 90*time.Second); err != nil {
		t.Fatal(err)
	}
}

// apiserverMetric sums the samples of a metric whose labels contain every one of match.
func apiserverMetric(ctx context.Context, env *framework.Env, name string, match ...string) (float64, error) {
	raw, err := env.Client.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return 0, err
	}
	sum := 0.0
	sc := bufio.NewScanner(strings.NewReader(string(raw)))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") {
			continue
		}
		ok := true
		for _, m := range match {
			ok = ok && strings.Contains(line, m)
		}
		if !ok {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			sum += v
		}
	}
	return sum, sc.Err()
}

// With the webhook scaled to zero, pods are still created (failurePolicy Ignore), uninjected, and the
// apiserver counts the fail-open call. Not parallel: it takes lastcall away from every other test.
func TestWebhookDownFailsOpen(t *testing.T) {
	env := framework.Current(t)
	ctx := context.Background()
	ns := env.Namespace(t, optedIn)
	const metric = "apiserver_admission_webhook_fail_open_count"
	match := `name="pods.lastcall.dev"`
	before, err := apiserverMetric(ctx, env, metric, match)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := env.ScaleLastcall(context.Background(), 2); err != nil {
			t.Errorf("scale lastcall back up: %v", err)
		}
	})
	if err := env.ScaleLastcall(ctx, 0); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	p := createPod(t, env, ns, newPod("while-down", nil, nginxContainer("web")))
	t.Logf("pod created in %.1fs with the webhook down", time.Since(t0).Seconds())
	if isInjected(p) {
		t.Fatalf("pod injected while the webhook had no replica: %v", p.Annotations)
	}
	after, err := apiserverMetric(ctx, env, metric, match)
	if err != nil {
		t.Fatal(err)
	}
	if after <= before {
		t.Errorf("%s{%s}: %v before, %v after; want an increase", metric, match, before, after)
	}
	t.Logf("%s{%s}: %v -> %v", metric, match, before, after)
	if _, err := env.WaitForPodReady(ctx, ns, "while-down", 90*time.Second); err != nil {
		t.Fatal(err)
	}
	// Back up: the next pod is injected again.
	if err := env.ScaleLastcall(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if p := createPod(t, env, ns, newPod("after", nil, nginxContainer("web"))); p.Annotations[annInjected] != "web=nginx" {
		t.Errorf("pod created after scaling back up not injected: %v", p.Annotations)
	}
}

// A ShutdownProfile change takes effect on the next pod without restarting the webhook, and the webhook
// reports it Accepted.
func TestShutdownProfileChange(t *testing.T) {
	t.Parallel()
	env := framework.Current(t)
	ctx := context.Background()
	ns := env.Namespace(t, optedIn)
	c := ctrlClient(t, env)
	name := "e2e-" + ns
	sp := &lastcallv1.ShutdownProfile{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: lastcallv1.ShutdownProfileSpec{
			Description:  "e2e profile",
			DrainDelay:   &metav1.Duration{Duration: 3 * time.Second},
			StopSignal:   "SIGTERM",
			DrainTimeout: &metav1.Duration{Duration: 10 * time.Second},
		},
	}
	if err := c.Create(ctx, sp); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Delete(context.Background(), sp) })

	accepted := func(gen int64) {
		t.Helper()
		err := framework.WaitFor(ctx, 30*time.Second, fmt.Sprintf("ShutdownProfile %s Accepted at generation %d", name, gen), func(ctx context.Context) (bool, error) {
			got := &lastcallv1.ShutdownProfile{}
			if err := c.Get(ctx, ctrlKey(name), got); err != nil {
				return false, nil
			}
			cond := apimeta.FindStatusCondition(got.Status.Conditions, lastcallv1.ConditionAccepted)
			return cond != nil && cond.Status == metav1.ConditionTrue && cond.ObservedGeneration >= gen, nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	sleepOf := func(podName string) (int64, int64) {
		t.Helper()
		p := createPod(t, env, ns, newPod(podName, map[string]string{annProfile: name}, testappContainer("app")))
		c := p.Spec.Containers[0]
		if p.Annotations[annInjected] != "app="+name || c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil {
			t.Fatalf("pod %s: want a native sleep preStop from profile %s; annotations %v, lifecycle %+v", podName, name, p.Annotations, c.Lifecycle)
		}
		return c.Lifecycle.PreStop.Sleep.Seconds, ptr.Deref(p.Spec.TerminationGracePeriodSeconds, -1)
	}
	accepted(sp.Generation)
	if s, g := sleepOf("first"); s != 3 || g != 15 {
		t.Errorf("first pod: preStop sleep %ds, grace %ds; want 3s and 15s", s, g)
	}
	if err := c.Get(ctx, ctrlKey(name), sp); err != nil { // the webhook wrote its status meanwhile
		t.Fatal(err)
	}
	sp.Spec.DrainDelay = &metav1.Duration{Duration: 4 * time.Second}
	if err := c.Update(ctx, sp); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	accepted(sp.Generation)
	t.Logf("generation %d Accepted %.1fs after the update", sp.Generation, time.Since(t0).Seconds())
	if s, g := sleepOf("second"); s != 4 || g != 16 {
		t.Errorf("second pod: preStop sleep %ds, grace %ds; want 4s and 16s", s, g)
	}
}
