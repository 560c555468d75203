//go:build e2e

package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/lastcall-dev/lastcall/test/e2e/framework"
	"github.com/lastcall-dev/lastcall/test/e2e/scenario"
)

// Issue 7, scenario 4: a celery-like worker whose task (35 s) is longer than the default grace period (30 s).
// Deleted during its task, it is killed mid-task without lastcall; with the celery profile (same manifest, the
// namespace opted in) the grace period fits and the task finishes. Both runs at once: one task length of time.
func TestWorkerLongTask(t *testing.T) {
	t.Parallel()
	env := framework.Current(t)
	ctx := context.Background()
	const task = 35 * time.Second
	type run struct {
		name   string
		ns     string
		logs   *logFollower
		w      *podWatcher
		grace  int64
		delete time.Time
	}
	var runs []*run
	for _, c := range []struct {
		name   string
		labels map[string]string
	}{{"without", nil}, {"with", optedIn}} {
		r := &run{name: c.name, ns: env.Namespace(t, c.labels)}
		// The manifest a user would write: no grace period of its own (the API's default, 30 s).
		pod := newPod("worker", map[string]string{annProfile: "celery"}, testappContainer("worker", "worker", "-task", task.String()))
		pod.Spec.TerminationGracePeriodSeconds = nil
		p := createPod(t, env, r.ns, pod)
		r.grace = ptr.Deref(p.Spec.TerminationGracePeriodSeconds, -1)
		runs = append(runs, r)
	}
	if runs[0].grace != 30 || runs[1].grace <= int64(task/time.Second) {
		t.Fatalf("grace periods: %ds without lastcall (want 30), %ds with (want more than the %v task)", runs[0].grace, runs[1].grace, task)
	}
	for _, r := range runs {
		if _, err := env.WaitForPodRunning(ctx, r.ns, "worker", 90*time.Second); err != nil {
			t.Fatal(err)
		}
		r.logs = followLogs(t, env, r.ns, "worker", "worker")
		r.w = watchPod(t, env, r.ns, "worker")
	}
	for _, r := range runs {
		if err := framework.WaitFor(ctx, 30*time.Second, "task 1 started", func(context.Context) (bool, error) {
			lines, _ := r.logs.wait(0)
			_, ok := firstLine(lines, "task 1 started")
			return ok, nil
		}); err != nil {
			t.Fatal(err)
		}
		r.delete = time.Now()
		if err := env.Client.CoreV1().Pods(r.ns).Delete(ctx, "worker", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range runs {
		lines, _ := r.logs.wait(task + 30*time.Second)
		term, gone := r.w.terminated(task+30*time.Second, "worker")
		t.Logf("%s lastcall (grace %ds), pod gone %.1fs after the delete:\n%s", r.name, r.grace, gone.Sub(r.delete).Seconds(), joinLines(lines))
		_, done := firstLine(lines, "task 1 done")
		switch r.name {
		case "without":
			if done {
				t.Errorf("without lastcall the task finished: the scenario must show the loss")
			}
			if term != nil && term.ExitCode == 0 {
				t.Errorf("without lastcall the worker exited 0")
			}
		case "with":
			if !done {
				t.Errorf("with lastcall (celery profile) task 1 did not finish")
			}
			if term == nil || term.ExitCode != 0 {
				t.Errorf("with lastcall: worker terminated %+v, want exit 0", term)
			}
		}
	}
}

// Issue 7, scenario 5: php-fpm with process_control_timeout = 0 (its default, which makes even SIGQUIT kill
// requests in flight). In warn mode the check init container prints the fix and the pod runs; in enforce mode
// (chart value policy.checkMode) the pod does not start and the message says what to set. Not parallel: the
// Helm upgrade rolls the webhook.
func TestPHPFPMCheck(t *testing.T) {
	env := framework.Current(t)
	ctx := context.Background()
	ns := env.Namespace(t, optedIn)
	cm, d, _ := scenario.WebAppObjects(1, "0")
	if _, err := env.Client.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	phpPod := func(name string) *corev1.Pod {
		spec := *d.Spec.Template.Spec.DeepCopy()
		spec.Containers = []corev1.Container{*findContainer(spec.Containers, "php")}
		spec.TerminationGracePeriodSeconds = ptr.To(int64(1))
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: spec}
	}
	const check = "lastcall-check-php"

	p := createPod(t, env, ns, phpPod("warn"))
	if findContainer(p.Spec.InitContainers, check) == nil {
		t.Fatalf("no %s init container: %v", check, p.Spec.InitContainers)
	}
	if _, err := env.WaitForPodRunning(ctx, ns, "warn", 90*time.Second); err != nil {
		t.Fatal(err)
	}
	out, err := env.Kubectl(ctx, "logs", "-n", ns, "warn", "-c", check)
	if err != nil || !strings.Contains(out, "process_control_timeout") {
		t.Fatalf("warn mode: the check's log does not name process_control_timeout: %v %q", err, out)
	}
	t.Logf("warn mode, %s log: %s", check, strings.TrimSpace(out))

	t.Cleanup(func() {
		if err := env.InstallLastcall(context.Background(), "policy.checkMode=warn"); err != nil {
			t.Errorf("restore policy.checkMode=warn: %v", err)
		}
	})
	if err := env.InstallLastcall(ctx, "policy.checkMode=enforce"); err != nil {
		t.Fatal(err)
	}
	// Old webhook pods may answer for a moment after the rollout: wait until a dry run gets the new policy.
	if err := framework.WaitFor(ctx, 60*time.Second, "the enforce policy in the webhook", func(ctx context.Context) (bool, error) {
		p, err := env.Client.CoreV1().Pods(ns).Create(ctx, phpPod("enforce"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			return false, nil
		}
		c := findContainer(p.Spec.InitContainers, check)
		return c != nil && strings.Contains(strings.Join(c.Command, " "), "enforce"), nil
	}); err != nil {
		t.Fatal(err)
	}
	createPod(t, env, ns, phpPod("enforce"))
	p, err = env.WaitForPod(ctx, ns, "enforce", 90*time.Second, "stopped by its check", func(p *corev1.Pod) bool {
		cs := containerStatus(p, check)
		if cs == nil {
			return false
		}
		return (cs.State.Terminated != nil && cs.State.Terminated.ExitCode != 0) || (cs.LastTerminationState.Terminated != nil && cs.LastTerminationState.Terminated.ExitCode != 0)
	})
	if err != nil {
		t.Fatal(err)
	}
	if cs := containerStatus(p, "php"); cs == nil || cs.State.Running != nil {
		t.Errorf("enforce mode: php is running: %+v", cs)
	}
	// The kubelet restarts the failed init container: its last run's log is the previous one.
	out, _ = env.Kubectl(ctx, "logs", "-n", ns, "enforce", "-c", check)
	if !strings.Contains(out, "process_control_timeout") {
		out, _ = env.Kubectl(ctx, "logs", "-p", "-n", ns, "enforce", "-c", check)
	}
	if !strings.Contains(out, "process_control_timeout") {
		t.Errorf("enforce mode: the check's message does not say what to set: %q", out)
	}
	t.Logf("enforce mode, %s log: %s", check, strings.TrimSpace(out))
}
