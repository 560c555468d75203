package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/lastcall-dev/lastcall/internal/observer"
	"github.com/lastcall-dev/lastcall/pkg/mutate"
)

// runningObserver is one replica's observer, as lastcall-webhook runs it, with its own metrics registry.
type runningObserver struct {
	e      *observer.Elected
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan struct{}
}

func startObserver(t *testing.T, identity string) *runningObserver {
	t.Helper()
	reg := prometheus.NewRegistry()
	e, err := observer.NewForConfig(cfg, observer.Election{
		Namespace: "default", Name: "lastcall-observer-test", Identity: identity,
		LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 200 * time.Millisecond,
	}, observer.Options{Registerer: reg, WorkloadLabels: true, EventWindow: 300 * time.Millisecond, Log: logr.Discard()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningObserver{e: e, reg: reg, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		_ = e.Start(ctx)
	}()
	t.Cleanup(r.stop)
	return r
}

func (r *runningObserver) stop() {
	r.cancel()
	<-r.done
}

// count sums lastcall_shutdowns_total over the series with the given container and outcome.
func (r *runningObserver) count(t *testing.T, pod, container string, outcome observer.Outcome) float64 {
	t.Helper()
	mfs, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() != observer.MetricShutdowns {
			continue
		}
		for _, m := range mf.Metric {
			l := map[string]string{}
			for _, lp := range m.Label {
				l[lp.GetName()] = lp.GetValue()
			}
			if l["container"] == container && l["outcome"] == string(outcome) && l["workload"] == pod {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return n
}

// leaderOf waits until exactly one of the observers leads and returns it.
func leaderOf(t *testing.T, rs ...*runningObserver) *runningObserver {
	t.Helper()
	var leader *runningObserver
	eventually(t, func() bool {
		leader = nil
		n := 0
		for _, r := range rs {
			if r.e.Observer.Leading() {
				leader, n = r, n+1
			}
		}
		return n == 1
	}, "one observer leading")
	return leader
}

// managedTestPod is a pod of Deployment <deployment> (through a ReplicaSet that does not exist: envtest runs
// no garbage collector) on a node that does not exist (no kubelet: the pod stays terminating until the test
// writes its final status and removes it, as the kubelet would).
func managedTestPod(ns, name, deployment string, managed bool) *corev1.Pod {
	yes := true
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{
		Name: name, Namespace: ns,
		Labels:          map[string]string{"pod-template-hash": "7c9d8f6b5"},
		Annotations:     map[string]string{mutate.AnnotationInjected: "web=nginx,worker=celery"},
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: deployment + "-7c9d8f6b5", UID: "00000000-0000-0000-0000-000000000001", Controller: &yes}},
	}, Spec: corev1.PodSpec{
		NodeName:   "node-without-kubelet",
		Containers: []corev1.Container{{Name: "web", Image: "nginx"}, {Name: "worker", Image: "celery"}},
	}}
	if managed {
		p.Labels[mutate.LabelManaged] = mutate.ManagedInject
	}
	return p
}

// kubelet plays the kubelet's part for one pod: running statuses, then after the graceful delete (grace
// seconds) the final statuses (web exits after webAfter, worker is SIGKILLed at the deadline), then the
// final removal. final=false stops before the removal.
type kubelet struct {
	t  *testing.T
	cs kubernetes.Interface
}

func (k kubelet) create(p *corev1.Pod) *corev1.Pod {
	k.t.Helper()
	ctx := context.Background()
	got, err := k.cs.CoreV1().Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{})
	if err != nil {
		k.t.Fatal(err)
	}
	now := metav1.Now()
	got.Status.Phase = corev1.PodRunning
	for _, c := range got.Spec.Containers {
		got.Status.ContainerStatuses = append(got.Status.ContainerStatuses, corev1.ContainerStatus{Name: c.Name, Image: c.Image, Ready: true,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}}})
	}
	got, err = k.cs.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, got, metav1.UpdateOptions{})
	if err != nil {
		k.t.Fatal(err)
	}
	return got
}

// shutDown deletes p with grace and writes the final statuses.
func (k kubelet) shutDown(p *corev1.Pod, grace int64, webAfter time.Duration) *corev1.Pod {
	k.t.Helper()
	ctx := context.Background()
	pods := k.cs.CoreV1().Pods(p.Namespace)
	if err := pods.Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &grace}); err != nil {
		k.t.Fatal(err)
	}
	got, err := pods.Get(ctx, p.Name, metav1.GetOptions{})
	if err != nil {
		k.t.Fatal(err)
	}
	if got.DeletionTimestamp == nil || got.DeletionGracePeriodSeconds == nil || *got.DeletionGracePeriodSeconds != grace {
		k.t.Fatalf("pod %s after a graceful delete: deletionTimestamp %v, grace %v", p.Name, got.DeletionTimestamp, got.DeletionGracePeriodSeconds)
	}
	start := got.DeletionTimestamp.Add(-time.Duration(grace) * time.Second)
	for i, c := range got.Status.ContainerStatuses {
		started := c.State.Running.StartedAt
		term := &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed", StartedAt: started, FinishedAt: metav1.NewTime(start.Add(webAfter))}
		if c.Name == "worker" {
			term = &corev1.ContainerStateTerminated{ExitCode: 137, Reason: "Error", StartedAt: started, FinishedAt: *got.DeletionTimestamp}
		}
		got.Status.ContainerStatuses[i].State = corev1.ContainerState{Terminated: term}
		got.Status.ContainerStatuses[i].Ready = false
	}
	got, err = pods.UpdateStatus(ctx, got, metav1.UpdateOptions{})
	if err != nil {
		k.t.Fatal(err)
	}
	return got
}

// remove is the kubelet's final delete: grace 0, only this pod (uid precondition).
func (k kubelet) remove(p *corev1.Pod) {
	k.t.Helper()
	zero := int64(0)
	err := k.cs.CoreV1().Pods(p.Namespace).Delete(context.Background(), p.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &p.UID}})
	if err != nil && !apierrors.IsNotFound(err) {
		k.t.Fatal(err)
	}
}

func killedEvents(t *testing.T, cs kubernetes.Interface, ns, deployment string) []corev1.Event {
	t.Helper()
	list, err := cs.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{
		FieldSelector: "involvedObject.kind=Deployment,involvedObject.name=" + deployment + ",reason=" + observer.ReasonShutdownKilled})
	if err != nil {
		t.Fatal(err)
	}
	return list.Items
}

// Two observers (two replicas) against one API server: the pod shutdowns driven through the real API are
// counted once, by the leader, with the right outcomes, one ShutdownKilled event on the Deployment; and a
// pod whose final status was written under one leader and that is removed under the next is counted once.
func TestObserverCountsShutdownsOnceAcrossReplicasAndLeaderChange(t *testing.T) {
	cs := kubernetes.NewForConfigOrDie(cfg)
	ns := fmt.Sprintf("observer-%d", time.Now().UnixNano()%100000)
	namespace(t, ns, nil)
	k := kubelet{t, cs}

	a := startObserver(t, "replica-a_1")
	if leaderOf(t, a) != a {
		t.Fatal("the only observer does not lead")
	}
	b := startObserver(t, "replica-b_1")
	time.Sleep(500 * time.Millisecond)
	if leaderOf(t, a, b) != a {
		t.Fatal("the second replica took the lease from a healthy leader")
	}

	// A managed pod under leader a: web exits 4 s into its 30 s grace, worker is SIGKILLed at the deadline.
	p1 := k.create(managedTestPod(ns, "web-7c9d8f6b5-aaaaa", "web", true))
	plain := k.create(managedTestPod(ns, "web-7c9d8f6b5-plain", "web", false))
	p1 = k.shutDown(p1, 30, 4*time.Second)
	plain = k.shutDown(plain, 30, 4*time.Second)
	// Terminating with final statuses is not yet counted: the pod is not gone.
	time.Sleep(300 * time.Millisecond)
	if n := a.count(t, "web", "worker", observer.OutcomeKilled); n != 0 {
		t.Fatalf("counted %v before the pod was removed", n)
	}
	k.remove(p1)
	k.remove(plain)
	eventually(t, func() bool {
		return a.count(t, "web", "web", observer.OutcomeExited) == 1 && a.count(t, "web", "worker", observer.OutcomeKilled) == 1
	}, "a to count p1")
	eventually(t, func() bool { return len(killedEvents(t, cs, ns, "web")) == 1 }, "one ShutdownKilled event on Deployment web")
	ev := killedEvents(t, cs, ns, "web")[0]
	if ev.Type != corev1.EventTypeWarning || ev.Count != 1 || !strings.Contains(ev.Message, "container worker") ||
		!strings.Contains(ev.Message, "30s grace period") || !strings.Contains(ev.Message, mutate.AnnotationDrainTimeout+".worker") {
		t.Fatalf("event: type %s count %d message %q", ev.Type, ev.Count, ev.Message)
	}
	// The unmanaged pod is not watched at all (the selector is applied by the API server), so it adds
	// nothing: the counts above are 1, not 2.

	// p2's shutdown is written under leader a, and p2 is removed under leader b.
	p2 := k.create(managedTestPod(ns, "web-7c9d8f6b5-bbbbb", "web", true))
	p2 = k.shutDown(p2, 20, 2*time.Second)
	time.Sleep(300 * time.Millisecond)
	a.stop()
	if leaderOf(t, b) != b {
		t.Fatal("b did not take over")
	}
	k.remove(p2)
	eventually(t, func() bool {
		return b.count(t, "web", "web", observer.OutcomeExited) == 1 && b.count(t, "web", "worker", observer.OutcomeKilled) == 1
	}, "b to count p2")
	time.Sleep(500 * time.Millisecond)
	total := func(o observer.Outcome, c string) float64 { return a.count(t, "web", c, o) + b.count(t, "web", c, o) }
	if total(observer.OutcomeExited, "web") != 2 || total(observer.OutcomeKilled, "worker") != 2 {
		t.Fatalf("across both replicas: web exited %v, worker killed %v; want 2 and 2 (each pod once)",
			total(observer.OutcomeExited, "web"), total(observer.OutcomeKilled, "worker"))
	}
	if a.count(t, "web", "worker", observer.OutcomeKilled) != 1 {
		t.Fatal("a counted after it stopped")
	}
	eventually(t, func() bool { return len(killedEvents(t, cs, ns, "web")) == 2 }, "b's ShutdownKilled event")
}

// Through the real API server and webhook: a pod in an observe-mode namespace gets only the managed label
// (its spec equals the same pod's in a namespace without lastcall), and an injected pod is labelled inject.
func TestWebhookLabelsManagedPods(t *testing.T) {
	ctx := context.Background()
	namespace(t, "observe-mode", map[string]string{mutate.LabelInject: mutate.ManagedObserve})
	namespace(t, "without-lastcall", nil)
	namespace(t, "inject-mode", map[string]string{mutate.LabelInject: "enabled"})
	cs := kubernetes.NewForConfigOrDie(cfg)
	create := func(ns string) *corev1.Pod {
		t.Helper()
		p := nginxPod("web", ns)
		p.Labels = map[string]string{"app": "web"}
		got, err := cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	observed, plain, injected := create("observe-mode"), create("without-lastcall"), create("inject-mode")
	if v := observed.Labels[mutate.LabelManaged]; v != mutate.ManagedObserve {
		t.Fatalf("observe-mode pod label %s = %q, want observe", mutate.LabelManaged, v)
	}
	if _, ok := plain.Labels[mutate.LabelManaged]; ok {
		t.Fatal("a pod outside lastcall's namespaces is labelled")
	}
	if v := injected.Labels[mutate.LabelManaged]; v != mutate.ManagedInject {
		t.Fatalf("injected pod label %s = %q, want inject", mutate.LabelManaged, v)
	}
	// Nothing but the label differs from the pod without lastcall: spec and annotations.
	ospec, pspec := observed.Spec.DeepCopy(), plain.Spec.DeepCopy()
	if fmt.Sprint(ospec) != fmt.Sprint(pspec) || len(observed.Annotations) != len(plain.Annotations) {
		t.Fatalf("observe mode changed the pod:\nobserved %+v %v\nplain    %+v %v", ospec, observed.Annotations, pspec, plain.Annotations)
	}
	if fmt.Sprint(injected.Spec) == fmt.Sprint(plain.Spec) {
		t.Fatal("the injected pod equals the plain one: the comparison above cannot fail")
	}
}
