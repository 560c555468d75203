//go:build e2e

package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/lastcall-dev/lastcall/test/e2e/framework"
)

// preStopEvents returns the messages of the pod's FailedPreStopHook events (the kubelet puts the hook's output
// there; the shim says the failure is expected).
func preStopEvents(ctx context.Context, env *framework.Env, ns, pod string) []string {
	evs, err := env.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + pod})
	if err != nil {
		return nil
	}
	var out []string
	for _, ev := range evs.Items {
		if strings.Contains(ev.Reason, "PreStop") {
			out = append(out, ev.Reason+": "+ev.Message)
		}
	}
	return out
}

// Deleting an injected nginx pod: the drain delay, then SIGQUIT (nginx's graceful stop), then nginx exits 0
// well before the grace period ends; never SIGTERM (nginx's fast shutdown) first.
func TestNginxGracefulDelete(t *testing.T) {
	t.Parallel()
	env := framework.Current(t)
	ctx := context.Background()
	ns := env.Namespace(t, optedIn)
	const delay = 2 * time.Second
	p := createPod(t, env, ns, newPod("web", map[string]string{annDrainDelay: "2s", annDrainTimeout: "10s"}, nginxContainer("web")))
	grace := time.Duration(ptr.Deref(p.Spec.TerminationGracePeriodSeconds, 30)) * time.Second
	if grace != 14*time.Second {
		t.Errorf("grace period %v, want 14s (2s + 10s + 2s)", grace)
	}
	if _, err := env.WaitForPodReady(ctx, ns, "web", 90*time.Second); err != nil {
		t.Fatal(err)
	}
	logs := followLogs(t, env, ns, "web", "web")
	w := watchPod(t, env, ns, "web")
	time.Sleep(500 * time.Millisecond) // let both streams start
	t0 := time.Now()
	if err := env.Client.CoreV1().Pods(ns).Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	lines, ended := logs.wait(grace + 30*time.Second)
	term, gone := w.terminated(grace+30*time.Second, "web")
	t.Logf("nginx log after delete:\n%s", joinLines(lines))
	t.Logf("preStop events: %q", preStopEvents(ctx, env, ns, "web"))
	if !ended {
		t.Errorf("nginx's log stream did not end within %v of the delete", grace+30*time.Second)
	}
	quit, ok := firstLine(lines, "signal 3 (SIGQUIT) received")
	if !ok {
		t.Fatalf("nginx never logged SIGQUIT")
	}
	if term, ok := firstLine(lines, "signal 15 (SIGTERM)"); ok && term.At.Before(quit.At) {
		t.Errorf("nginx got SIGTERM (fast shutdown) before SIGQUIT: %s", term.Text)
	}
	if _, ok := firstLine(lines, "gracefully shutting down"); !ok {
		t.Errorf("no \"gracefully shutting down\" in nginx's log")
	}
	if d := quit.At.Sub(t0); d < delay-300*time.Millisecond || d > delay+3*time.Second {
		t.Errorf("SIGQUIT %v after the delete; want the drain delay %v (+ the kubelet's reaction)", d.Round(time.Millisecond), delay)
	}
	exit, ok := firstLine(lines, "exit")
	if !ok {
		exit = lines[len(lines)-1]
	}
	if d := exit.At.Sub(t0); d >= grace {
		t.Errorf("nginx exited %v after the delete, not before the grace period %v", d, grace)
	}
	if term == nil {
		t.Errorf("never saw the container's terminated state before the pod was deleted (gone %v after)", gone.Sub(t0))
	} else {
		if term.ExitCode != 0 {
			t.Errorf("nginx exit code %d (%s), want 0", term.ExitCode, term.Reason)
		}
		t.Logf("timeline: delete 0s, SIGQUIT %.2fs, nginx exit %.2fs (exit code %d), pod gone %.2fs; grace %v",
			quit.At.Sub(t0).Seconds(), exit.At.Sub(t0).Seconds(), term.ExitCode, gone.Sub(t0).Seconds(), grace)
	}
}

// In a pod that shares its process namespace, PID 1 is the pause process: the shim must find and signal the
// nginx container's own nginx master, and leave the other container to its own (later) stop.
func TestSharedProcessNamespace(t *testing.T) {
	t.Parallel()
	env := framework.Current(t)
	ctx := context.Background()
	ns := env.Namespace(t, optedIn)
	pod := newPod("shared", map[string]string{
		annDrainDelay + ".web": "2s", annDrainTimeout + ".web": "10s",
		// the other container: http profile (SIGTERM after a native 6 s sleep)
		annDrainDelay + ".other": "6s", annDrainTimeout + ".other": "5s",
	}, nginxContainer("web"), testappContainer("other"))
	pod.Spec.ShareProcessNamespace = ptr.To(true)
	p := createPod(t, env, ns, pod)
	if got := p.Annotations[annInjected]; got != "web=nginx,other=http" && got != "other=http,web=nginx" {
		t.Errorf("%s = %q", annInjected, got)
	}
	if _, err := env.WaitForPodReady(ctx, ns, "shared", 90*time.Second); err != nil {
		t.Fatal(err)
	}
	web := followLogs(t, env, ns, "shared", "web")
	other := followLogs(t, env, ns, "shared", "other")
	w := watchPod(t, env, ns, "shared")
	time.Sleep(500 * time.Millisecond)
	t0 := time.Now()
	if err := env.Client.CoreV1().Pods(ns).Delete(ctx, "shared", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	wl, _ := web.wait(time.Minute)
	ol, _ := other.wait(time.Minute)
	w.terminated(time.Minute, "web")
	t.Logf("web log:\n%s", joinLines(wl))
	t.Logf("other log:\n%s", joinLines(ol))
	evs := preStopEvents(ctx, env, ns, "shared")
	t.Logf("preStop events: %q", evs)

	quit, ok := firstLine(wl, "signal 3 (SIGQUIT) received")
	if !ok {
		t.Fatalf("the nginx container's nginx never got SIGQUIT")
	}
	exit := wl[len(wl)-1]
	drain, ok := firstLine(ol, "got terminated")
	if !ok {
		t.Fatalf("the other container never logged its own SIGTERM")
	}
	if _, ok := firstLine(ol, "SIGQUIT"); ok {
		t.Errorf("the other container saw SIGQUIT")
	}
	if !drain.At.After(exit.At) {
		t.Errorf("the other container was stopped (%v) before nginx exited (%v): it must run until its own stop", drain.At.Sub(t0), exit.At.Sub(t0))
	}
	for _, e := range evs {
		if strings.Contains(e, "(pid 1)") {
			t.Errorf("the shim signalled PID 1 (the pause process in a shared PID namespace): %s", e)
		}
	}
	w.mu.Lock()
	last := w.last
	w.mu.Unlock()
	for _, name := range []string{"web", "other"} {
		if cs := containerStatus(last, name); cs == nil || cs.State.Terminated == nil || cs.State.Terminated.ExitCode != 0 {
			t.Errorf("container %s: want exit 0, got %+v", name, cs)
		}
	}
	t.Logf("timeline: delete 0s, nginx SIGQUIT %.2fs, nginx exit %.2fs, other SIGTERM %.2fs",
		quit.At.Sub(t0).Seconds(), exit.At.Sub(t0).Seconds(), drain.At.Sub(t0).Seconds())
}
