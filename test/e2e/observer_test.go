//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/lastcall-dev/lastcall/internal/observer"
	"github.com/lastcall-dev/lastcall/pkg/mutate"
	"github.com/lastcall-dev/lastcall/test/e2e/framework"
)

const (
	labelManaged = mutate.LabelManaged
	observeLease = observer.DefaultLease
)

// statusRow is one row of `lastcall status -o json` (the contract the CLI prints).
type statusRow struct {
	Namespace     string  `json:"namespace"`
	Kind          string  `json:"kind"`
	Name          string  `json:"name"`
	Container     string  `json:"container"`
	Profile       string  `json:"profile"`
	Shutdowns     int     `json:"shutdowns"`
	Exited        int     `json:"exited"`
	ExitedNonzero int     `json:"exitedNonzero"`
	Killed        int     `json:"killed"`
	Unknown       int     `json:"unknown"`
	MaxSeconds    float64 `json:"maxSeconds"`
	GraceSeconds  float64 `json:"graceSeconds"`
	Verdict       string  `json:"verdict"`
}

var (
	cliOnce sync.Once
	cliBin  string
	cliErr  error
)

// lastcallStatus runs the real `lastcall status -n ns -o json` (plus extra flags) against the cluster, as a
// user would.
func lastcallStatus(t *testing.T, env *framework.Env, ns string, extra ...string) []statusRow {
	t.Helper()
	cliOnce.Do(func() {
		dir, err := os.MkdirTemp("", "lastcall-cli-")
		if err != nil {
			cliErr = err
			return
		}
		cliBin = filepath.Join(dir, "lastcall")
		out, err := exec.Command("go", "build", "-o", cliBin, "../../cmd/lastcall").CombinedOutput()
		if err != nil {
			cliErr = fmt.Errorf("build lastcall: %v: %s", err, out)
		}
	})
	if cliErr != nil {
		t.Fatal(cliErr)
	}
	args := append([]string{"status", "-n", ns, "-o", "json", "--kubeconfig", env.Provider.Kubeconfig(), "--kubectl", framework.KubectlPath()}, extra...)
	cmd := exec.Command(cliBin, args...)
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Logf("lastcall status: %v: %s", err, stderr)
		return nil
	}
	var rep struct {
		Workloads []statusRow `json:"workloads"`
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("lastcall status -o json: %v\n%s", err, out)
	}
	return rep.Workloads
}

// leaderMetrics returns the lastcall_shutdowns_total lines of the observing replica's /metrics for ns.
func leaderMetrics(ctx context.Context, t *testing.T, env *framework.Env, ns string) []string {
	t.Helper()
	l, err := env.Client.CoordinationV1().Leases(framework.LastcallNamespace).Get(ctx, observeLease, metav1.GetOptions{})
	if err != nil || l.Spec.HolderIdentity == nil {
		t.Logf("observer lease: %v", err)
		return nil
	}
	pod, _, _ := strings.Cut(*l.Spec.HolderIdentity, "_")
	body, err := env.Client.CoreV1().RESTClient().Get().
		AbsPath("/api/v1/namespaces/" + framework.LastcallNamespace + "/pods/" + pod + ":8080/proxy/metrics").DoRaw(ctx)
	if err != nil {
		t.Logf("metrics of %s: %v", pod, err)
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, "lastcall_shutdowns_total{") && strings.Contains(line, `namespace="`+ns+`"`) {
			out = append(out, line)
		}
	}
	return out
}

func deployment(name string, replicas int32, grace int64, annotations map[string]string, c corev1.Container) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: annotations},
				Spec: corev1.PodSpec{
					DNSPolicy:                     corev1.DNSDefault,
					TerminationGracePeriodSeconds: ptr.To(grace),
					Containers:                    []corev1.Container{c},
				},
			},
		},
	}
}

// runDeployment creates d in ns, waits for its pods to run, returns them.
func runDeployment(ctx context.Context, t *testing.T, env *framework.Env, ns string, d *appsv1.Deployment) []corev1.Pod {
	t.Helper()
	if _, err := env.Client.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var pods []corev1.Pod
	err := framework.WaitFor(ctx, 2*time.Minute, "deployment "+d.Name+" running", func(ctx context.Context) (bool, error) {
		l, err := env.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + d.Name})
		if err != nil {
			return false, nil
		}
		ready := 0
		for _, p := range l.Items {
			if s := containerStatus(&p, d.Spec.Template.Spec.Containers[0].Name); s != nil && s.State.Running != nil && p.DeletionTimestamp == nil {
				ready++
			}
		}
		pods = l.Items
		return ready == int(*d.Spec.Replicas), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return pods
}

func deleteDeploymentPods(ctx context.Context, t *testing.T, env *framework.Env, ns, app string) {
	t.Helper()
	if err := env.Client.AppsV1().Deployments(ns).Delete(ctx, app, metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationForeground)}); err != nil {
		t.Fatal(err)
	}
	err := framework.WaitFor(ctx, 3*time.Minute, "pods of "+app+" gone", func(ctx context.Context) (bool, error) {
		l, err := env.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
		return err == nil && len(l.Items) == 0, nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func findRow(rows []statusRow, name, container string) *statusRow {
	for i := range rows {
		if rows[i].Name == name && rows[i].Container == container {
			return &rows[i]
		}
	}
	return nil
}

func waitRow(ctx context.Context, t *testing.T, env *framework.Env, ns, name, container string, done func(*statusRow) bool) *statusRow {
	t.Helper()
	var row *statusRow
	err := framework.WaitFor(ctx, 90*time.Second, "lastcall status for "+name, func(ctx context.Context) (bool, error) {
		row = findRow(lastcallStatus(t, env, ns), name, container)
		return row != nil && done(row), nil
	})
	if err != nil {
		t.Fatalf("%v; last row %+v; metrics %q", err, row, leaderMetrics(ctx, t, env, ns))
	}
	return row
}

// A rollout of an injected HTTP server: every old container exits by itself (exit 0) within its grace period,
// and lastcall status / the metrics say so; no ShutdownKilled event.
func TestObserverRolloutExits(t *testing.T) {
	t.Parallel()
	env := framework.Current(t)
	ctx := context.Background()
	ns := env.Namespace(t, optedIn)
	web := testappContainer("web", "serve")
	web.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(8080)}}, PeriodSeconds: 1}
	d := deployment("web", 3, 1, map[string]string{annDrainDelay: "2s", annDrainTimeout: "10s"}, web)
	pods := runDeployment(ctx, t, env, ns, d)
	for _, p := range pods {
		if p.Labels[labelManaged] != "inject" {
			t.Fatalf("pod %s label %s = %q, want inject", p.Name, labelManaged, p.Labels[labelManaged])
		}
	}
	// The rollout: a new template replaces every pod.
	if _, err := env.Kubectl(ctx, "-n", ns, "rollout", "restart", "deployment/web"); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Kubectl(ctx, "-n", ns, "rollout", "status", "deployment/web", "--timeout=3m"); err != nil {
		t.Fatal(err)
	}
	row := waitRow(ctx, t, env, ns, "web", "web", func(r *statusRow) bool { return r.Shutdowns >= 3 })
	t.Logf("lastcall status: %+v", *row)
	t.Logf("metrics: %q", leaderMetrics(ctx, t, env, ns))
	if row.Kind != "Deployment" || row.Shutdowns != 3 || row.Exited != 3 || row.Killed != 0 || row.Profile != "http" {
		t.Errorf("rollout of 3 pods: %+v; want 3 exited, profile http, on Deployment web", *row)
	}
	if row.GraceSeconds != 14 || row.MaxSeconds >= row.GraceSeconds || row.MaxSeconds < 1 {
		t.Errorf("durations: max %vs with grace %vs; want about the 2s drain delay (timestamps have 1 s precision) and below the grace", row.MaxSeconds, row.GraceSeconds)
	}
	if row.Verdict != "fine" {
		t.Errorf("verdict %q, want fine", row.Verdict)
	}
	evs, _ := env.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "reason=ShutdownKilled"})
	if len(evs.Items) != 0 {
		t.Errorf("ShutdownKilled events after a graceful rollout: %v", evs.Items)
	}

	// lastcall explain on the live Deployment: the timeline from the cluster's policy and profiles, and the
	// observer's record of the rollout.
	out, err := exec.Command(cliBin, "explain", "deploy/web", "-n", ns, "--kubeconfig", env.Provider.Kubeconfig(), "--kubectl", framework.KubectlPath()).CombinedOutput()
	t.Logf("lastcall explain deploy/web -n %s:\n%s", ns, out)
	if err != nil {
		t.Fatalf("lastcall explain deploy/web: %v", err)
	}
	for _, want := range []string{"Deployment/web (namespace " + ns, "drain delay 2s", "recent shutdowns (last", "web: 3 shutdowns, 0 killed"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("lastcall explain output lacks %q", want)
		}
	}
}

// A worker whose task (60 s) outlives a deliberately short drain timeout (3 s): the kubelet SIGKILLs it at
// the grace deadline; the observer records killed, lastcall status says what to raise, and one ShutdownKilled
// event lands on its Deployment. In observe mode, an uninjected worker with a short grace period is recorded
// killed too, and nothing in its pod spec was changed (the same Deployment in a namespace without lastcall
// gives the same spec).
func TestObserverKilledAndObserveMode(t *testing.T) {
	t.Parallel()
	env := framework.Current(t)
	ctx := context.Background()
	worker := testappContainer("worker", "worker", "-task", "60s")

	injectedNS := env.Namespace(t, optedIn)
	runDeployment(ctx, t, env, injectedNS, deployment("worker", 1, 1, map[string]string{annProfile: "celery", annDrainTimeout: "3s"}, worker))
	observeNS := env.Namespace(t, map[string]string{framework.LabelInject: "observe"})
	observed := runDeployment(ctx, t, env, observeNS, deployment("worker", 1, 3, nil, worker))
	plainNS := env.Namespace(t, nil)
	plain := runDeployment(ctx, t, env, plainNS, deployment("worker", 1, 3, nil, worker))

	// Observe mode changed nothing but the label.
	o, p := observed[0], plain[0]
	if o.Labels[labelManaged] != "observe" || p.Labels[labelManaged] != "" {
		t.Fatalf("labels: observe-mode pod %v, plain pod %v", o.Labels, p.Labels)
	}
	if len(o.Spec.InitContainers) != 0 || o.Annotations[annInjected] != "" || ptr.Deref(o.Spec.TerminationGracePeriodSeconds, 0) != 3 ||
		o.Spec.Containers[0].Lifecycle != nil || len(o.Spec.Containers[0].VolumeMounts) != len(p.Spec.Containers[0].VolumeMounts) ||
		strings.Join(o.Spec.Containers[0].Args, " ") != strings.Join(p.Spec.Containers[0].Args, " ") {
		t.Fatalf("observe mode changed the pod spec:\nobserve %+v\nplain   %+v", o.Spec, p.Spec)
	}

	for _, ns := range []string{injectedNS, observeNS} {
		deleteDeploymentPods(ctx, t, env, ns, "worker")
	}
	killed := waitRow(ctx, t, env, injectedNS, "worker", "worker", func(r *statusRow) bool { return r.Shutdowns >= 1 })
	t.Logf("injected worker: %+v", *killed)
	if killed.Killed != 1 || killed.Shutdowns != 1 || killed.Profile != "celery" || killed.GraceSeconds != 5 ||
		!strings.Contains(killed.Verdict, "killed 1 of 1: raise lastcall.dev/drain-timeout.worker") {
		t.Errorf("injected worker: %+v; want 1 killed at its 5s grace period (0s delay + 3s + 2s), profile celery", *killed)
	}
	obs := waitRow(ctx, t, env, observeNS, "worker", "worker", func(r *statusRow) bool { return r.Shutdowns >= 1 })
	t.Logf("observe-mode worker: %+v", *obs)
	if obs.Killed != 1 || obs.Profile != "none" || obs.GraceSeconds != 3 || !strings.Contains(obs.Verdict, "lastcall does not manage this container") {
		t.Errorf("observe-mode worker: %+v; want 1 killed at its own 3s grace period, profile none", *obs)
	}
	if m := leaderMetrics(ctx, t, env, injectedNS); len(m) != 1 || !strings.Contains(m[0], `outcome="killed"`) || !strings.HasSuffix(m[0], " 1") {
		t.Errorf("metrics for the injected worker: %q; want one killed series at 1", m)
	}
	var evs *corev1.EventList
	err := framework.WaitFor(ctx, 2*time.Minute, "a ShutdownKilled event on Deployment worker", func(ctx context.Context) (bool, error) {
		var err error
		evs, err = env.Client.CoreV1().Events(injectedNS).List(ctx, metav1.ListOptions{FieldSelector: "reason=ShutdownKilled,involvedObject.kind=Deployment,involvedObject.name=worker"})
		return err == nil && len(evs.Items) > 0, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	evs, _ = env.Client.CoreV1().Events(injectedNS).List(ctx, metav1.ListOptions{FieldSelector: "reason=ShutdownKilled"})
	if len(evs.Items) != 1 || evs.Items[0].Count != 1 || evs.Items[0].Type != corev1.EventTypeWarning ||
		!strings.Contains(evs.Items[0].Message, "lastcall.dev/drain-timeout.worker") || !strings.Contains(evs.Items[0].Message, "5s grace period") {
		t.Errorf("ShutdownKilled events: %+v; want one Warning naming the 5s grace period and the annotation", evs.Items)
	} else {
		t.Logf("event: %s", evs.Items[0].Message)
	}
}
