package observer

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/lastcall-dev/lastcall/internal/observer/summary"
	"github.com/lastcall-dev/lastcall/pkg/mutate"
)

type fakeSink struct {
	mu     sync.Mutex
	events []*corev1.Event
}

func (f *fakeSink) CreateEvent(_ context.Context, ev *corev1.Event) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, ev)
	return nil
}

type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) logger() logr.Logger {
	return funcr.New(func(prefix, args string) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.lines = append(l.lines, args)
	}, funcr.Options{Verbosity: 1})
}

func (l *logLines) has(sub string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.lines {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// managedPod is a running pod of Deployment web with containers web (nginx) and worker (celery).
func managedPod(name string, uid types.UID) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{
		Name: name, Namespace: "shop", UID: uid,
		Labels:          map[string]string{labelPodTemplateHash: "5d8f9c7b6", mutate.LabelManaged: mutate.ManagedInject, "app": "web"},
		Annotations:     map[string]string{mutate.AnnotationInjected: "web=nginx,worker=celery", "other": "x"},
		OwnerReferences: owner("apps/v1", "ReplicaSet", "web-5d8f9c7b6", true),
		ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "kube-controller-manager"}},
	}}
	p.Spec.TerminationGracePeriodSeconds = ptr(int64(30))
	p.Spec.Containers = []corev1.Container{{Name: "web", Image: "nginx"}, {Name: "worker", Image: "celery"}}
	p.Status.ContainerStatuses = []corev1.ContainerStatus{*running("web"), *running("worker")}
	return p
}

// shutDown returns p as being deleted at t0 with grace 30 s, web exited after 6 s, worker killed at 30 s.
func shutDown(p *corev1.Pod) *corev1.Pod {
	q := p.DeepCopy()
	dt := metav1.NewTime(t0.Add(30 * time.Second))
	q.DeletionTimestamp, q.DeletionGracePeriodSeconds = &dt, ptr(int64(30))
	q.Status.ContainerStatuses = []corev1.ContainerStatus{
		*terminated("web", 0, "Completed", t0.Add(6*time.Second)),
		*terminated("worker", 137, "Error", t0.Add(30*time.Second)),
	}
	return q
}

// removed is p as the kubelet's final delete (grace 0) leaves it: the API server rewrites the deletion
// fields to grace 0 and deletionTimestamp = the start of the shutdown.
func removed(p *corev1.Pod) *corev1.Pod {
	q := p.DeepCopy()
	start := metav1.NewTime(q.DeletionTimestamp.Add(-time.Duration(*q.DeletionGracePeriodSeconds) * time.Second))
	q.DeletionTimestamp, q.DeletionGracePeriodSeconds = &start, ptr(int64(0))
	return q
}

func newTestObserver(t *testing.T, workloadLabels bool) (*Observer, *prometheus.Registry, *fakeSink, *logLines) {
	t.Helper()
	reg := prometheus.NewRegistry()
	sink := &fakeSink{}
	logs := &logLines{}
	x := New(nil, Options{Registerer: reg, WorkloadLabels: workloadLabels, Events: sink, Log: logs.logger(), Now: func() time.Time { return t0.Add(time.Minute) }})
	x.running.Store(true)
	return x, reg, sink, logs
}

func count(t *testing.T, x *Observer, container, profile string, outcome Outcome) float64 {
	t.Helper()
	return testutil.ToFloat64(x.metrics.shutdowns.WithLabelValues("shop", KindDeployment, "web", container, profile, string(outcome)))
}

func TestObserverCountsEachContainerOnceAtDeletion(t *testing.T) {
	t.Parallel()
	x, reg, sink, _ := newTestObserver(t, true)
	p := managedPod("web-5d8f9c7b6-aaaaa", "u1")
	must(t, x.Replace([]any{trim(p)}, "1"))
	must(t, x.Update(shutDown(p)))
	// The status may be written again (conditions, another container) before the pod goes: still once.
	must(t, x.Update(shutDown(p)))
	if n := testutil.CollectAndCount(x.metrics.shutdowns); n != 0 {
		t.Fatalf("%d series before the pod was deleted, want 0: shutdowns are counted at DELETED", n)
	}
	// The kubelet's final delete (grace 0) shows as one more update, then DELETED, both with grace 0.
	must(t, x.Update(removed(shutDown(p))))
	must(t, x.Delete(removed(shutDown(p))))
	if got := count(t, x, "web", "nginx", OutcomeExited); got != 1 {
		t.Fatalf("web exited = %v, want 1", got)
	}
	if got := count(t, x, "worker", "celery", OutcomeKilled); got != 1 {
		t.Fatalf("worker killed = %v, want 1", got)
	}
	if n := testutil.CollectAndCount(x.metrics.shutdowns); n != 2 {
		t.Fatalf("%d series, want 2", n)
	}
	// A relist after the deletion does not count it again.
	must(t, x.Replace(nil, "2"))
	if n := testutil.CollectAndCount(x.metrics.shutdowns); n != 2 || count(t, x, "web", "nginx", OutcomeExited) != 1 {
		t.Fatal("a relist counted a deleted pod again")
	}
	// The histogram has both durations.
	h, err := reg.Gather()
	must(t, err)
	var sum float64
	var samples uint64
	for _, mf := range h {
		if mf.GetName() == MetricShutdownDuration {
			for _, m := range mf.Metric {
				sum += m.GetHistogram().GetSampleSum()
				samples += m.GetHistogram().GetSampleCount()
			}
		}
	}
	if samples != 2 || sum != 36 {
		// (A grace period taken from the final delete would have made the worker's 30 s a non-kill and the
		// event say 0s.)
		t.Fatalf("duration histogram: %d samples summing to %v, want 2 summing to 36 (6 + 30)", samples, sum)
	}
	// One event for the kill, on the Deployment.
	x.events.flush(context.Background())
	if len(sink.events) != 1 {
		t.Fatalf("%d events, want 1", len(sink.events))
	}
	ev := sink.events[0]
	if ev.InvolvedObject.Kind != KindDeployment || ev.InvolvedObject.Name != "web" || ev.Namespace != "shop" || ev.Reason != ReasonShutdownKilled || ev.Type != corev1.EventTypeWarning || ev.Count != 1 {
		t.Fatalf("event %+v", ev)
	}
	for _, want := range []string{"container worker", "30s grace period", "needed at least 30s", "lastcall.dev/drain-timeout.worker"} {
		if !strings.Contains(ev.Message, want) {
			t.Fatalf("event message %q lacks %q", ev.Message, want)
		}
	}
}

func TestObserverAggregatesKillsIntoOneEventPerWorkloadContainer(t *testing.T) {
	t.Parallel()
	x, _, sink, _ := newTestObserver(t, true)
	for i := range 50 {
		p := managedPod("web-5d8f9c7b6-"+string(rune('a'+i%26))+string(rune('a'+i/26)), types.UID("u"+string(rune(i))))
		must(t, x.Delete(shutDown(p)))
	}
	x.events.flush(context.Background())
	if len(sink.events) != 1 || sink.events[0].Count != 50 || !strings.Contains(sink.events[0].Message, "in 50 pods") {
		t.Fatalf("events after 50 kills: %d, first %+v; want one with count 50", len(sink.events), sink.events)
	}
	x.events.flush(context.Background())
	if len(sink.events) != 1 {
		t.Fatal("an empty window created an event")
	}
}

// A killed container lastcall does not manage (observe mode: no record) gets advice that works for it.
func TestObserverKillOfAnUnmanagedContainer(t *testing.T) {
	t.Parallel()
	x, _, sink, _ := newTestObserver(t, true)
	p := managedPod("web-5d8f9c7b6-aaaaa", "u1")
	delete(p.Annotations, mutate.AnnotationInjected)
	p.Labels[mutate.LabelManaged] = mutate.ManagedObserve
	must(t, x.Delete(shutDown(p)))
	if got := count(t, x, "worker", ProfileNone, OutcomeKilled); got != 1 {
		t.Fatalf("observe-mode worker killed = %v, want 1", got)
	}
	x.events.flush(context.Background())
	if len(sink.events) != 1 || !strings.Contains(sink.events[0].Message, "lastcall does not manage its shutdown") ||
		!strings.Contains(sink.events[0].Message, "terminationGracePeriodSeconds") {
		t.Fatalf("events %+v", sink.events)
	}
}

func TestObserverFinishesPodsDeletedWhileTheWatchWasDown(t *testing.T) {
	t.Parallel()
	x, _, _, logs := newTestObserver(t, true)
	seenDeleting := managedPod("web-5d8f9c7b6-aaaaa", "u1")
	neverSeenDeleting := managedPod("web-5d8f9c7b6-bbbbb", "u2")
	must(t, x.Replace([]any{trim(seenDeleting), trim(neverSeenDeleting)}, "1"))
	must(t, x.Update(shutDown(seenDeleting)))
	// The watch breaks; both pods are gone by the relist.
	must(t, x.Replace(nil, "5"))
	if count(t, x, "web", "nginx", OutcomeExited) != 1 || count(t, x, "worker", "celery", OutcomeKilled) != 1 {
		t.Fatal("the pod seen being deleted was not recorded from its last state")
	}
	if got := testutil.ToFloat64(x.metrics.missed); got != 1 {
		t.Fatalf("missed = %v, want 1", got)
	}
	if !logs.has("disappeared while the watch was down") {
		t.Fatal("no debug line for the missed pod")
	}
	if len(x.pods) != 0 {
		t.Fatalf("%d pods still remembered", len(x.pods))
	}
}

func TestObserverSameNameNewPod(t *testing.T) {
	t.Parallel()
	x, _, _, _ := newTestObserver(t, true)
	old := managedPod("db-0", "u1")
	old.OwnerReferences = owner("apps/v1", "StatefulSet", "db", true)
	must(t, x.Update(shutDown(old)))
	// The DELETED of the old db-0 was missed; the new db-0 arrives.
	fresh := managedPod("db-0", "u2")
	fresh.OwnerReferences = old.OwnerReferences
	must(t, x.Replace([]any{trim(fresh)}, "9"))
	got := testutil.ToFloat64(x.metrics.shutdowns.WithLabelValues("shop", KindStatefulSet, "db", "worker", "celery", string(OutcomeKilled)))
	if got != 1 {
		t.Fatalf("old db-0's worker killed = %v, want 1", got)
	}
	if e := x.pods["shop/db-0"]; e == nil || e.uid != "u2" || e.shutdown != nil {
		t.Fatalf("entry for the new db-0: %+v", e)
	}
}

func TestObserverBadInput(t *testing.T) {
	t.Parallel()
	x, _, _, logs := newTestObserver(t, true)
	p := managedPod("web-5d8f9c7b6-aaaaa", "u1")
	p.Annotations[mutate.AnnotationInjected] = "web=nginx,hand edited!"
	p.OwnerReferences = owner("apps/v1", "ReplicaSet", "", true)
	q := shutDown(p)
	q.Status.ContainerStatuses[1].State.Terminated.FinishedAt = metav1.Time{}
	q.Status.ContainerStatuses = append(q.Status.ContainerStatuses, corev1.ContainerStatus{Name: "sidecar"})
	must(t, x.Delete(q))
	web := testutil.ToFloat64(x.metrics.shutdowns.WithLabelValues("shop", KindUnknown, "", "web", "nginx", string(OutcomeExited)))
	worker := testutil.ToFloat64(x.metrics.shutdowns.WithLabelValues("shop", KindUnknown, "", "worker", ProfileUnknown, string(OutcomeUnknown)))
	if web != 1 || worker != 1 {
		t.Fatalf("web exited %v, worker unknown %v; want 1 and 1", web, worker)
	}
	for _, want := range []string{"record annotation is malformed", "cannot resolve the workload", "has no finishedAt"} {
		if !logs.has(want) {
			t.Fatalf("no debug line containing %q in %q", want, logs.lines)
		}
	}
	// Objects of another type are refused with an error, not a panic.
	if err := x.Update("nonsense"); err == nil {
		t.Fatal("Update accepted a string")
	}
	if err := x.Delete(42); err == nil {
		t.Fatal("Delete accepted an int")
	}
}

func TestObserverWithoutWorkloadLabels(t *testing.T) {
	t.Parallel()
	x, _, _, _ := newTestObserver(t, false)
	must(t, x.Delete(shutDown(managedPod("web-5d8f9c7b6-aaaaa", "u1"))))
	if got := testutil.ToFloat64(x.metrics.shutdowns.WithLabelValues("", "", "", "worker", "celery", string(OutcomeKilled))); got != 1 {
		t.Fatalf("worker killed without workload labels = %v, want 1", got)
	}
	if n := testutil.CollectAndCount(x.metrics.shutdowns); n != 2 {
		t.Fatalf("%d series, want 2", n)
	}
}

func TestObserverServesSummaries(t *testing.T) {
	t.Parallel()
	x, _, _, _ := newTestObserver(t, true)
	must(t, x.Delete(shutDown(managedPod("web-5d8f9c7b6-aaaaa", "u1"))))
	rec := httptest.NewRecorder()
	x.ServeHTTP(rec, httptest.NewRequest("GET", "/shutdowns", nil))
	var r summary.Report
	must(t, json.Unmarshal(rec.Body.Bytes(), &r))
	if !r.Leader || len(r.Workloads) != 2 {
		t.Fatalf("report %+v", r)
	}
	w := r.Workloads[1]
	if w.Container != "worker" || w.Kind != KindDeployment || w.Name != "web" || w.Killed != 1 || w.Shutdowns != 1 || w.GraceSeconds != 30 || w.P99Seconds != 30 || w.Profile != "celery" {
		t.Fatalf("worker summary %+v", w)
	}
	x.running.Store(false)
	rec = httptest.NewRecorder()
	x.ServeHTTP(rec, httptest.NewRequest("GET", "/shutdowns", nil))
	must(t, json.Unmarshal(rec.Body.Bytes(), &r))
	if r.Leader || len(r.Workloads) != 0 {
		t.Fatalf("a replica that does not observe reported %+v", r)
	}
}

func TestTrimKeepsOnlyWhatTheObserverReads(t *testing.T) {
	t.Parallel()
	p := shutDown(managedPod("web-5d8f9c7b6-aaaaa", "u1"))
	p.Status.ContainerStatuses[0].Image = "nginx:1.27"
	p.Status.ContainerStatuses[0].State.Terminated.Message = strings.Repeat("x", 4096)
	got := trim(p)
	want := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{
		Name: p.Name, Namespace: "shop", UID: "u1",
		Labels:                     map[string]string{labelPodTemplateHash: "5d8f9c7b6"},
		Annotations:                map[string]string{mutate.AnnotationInjected: "web=nginx,worker=celery"},
		OwnerReferences:            owner("apps/v1", "ReplicaSet", "web-5d8f9c7b6", true),
		DeletionTimestamp:          p.DeletionTimestamp,
		DeletionGracePeriodSeconds: p.DeletionGracePeriodSeconds,
	}}
	want.Spec.TerminationGracePeriodSeconds = p.Spec.TerminationGracePeriodSeconds
	want.Status.ContainerStatuses = []corev1.ContainerStatus{
		*terminated("web", 0, "Completed", t0.Add(6*time.Second)),
		*terminated("worker", 137, "Error", t0.Add(30*time.Second)),
	}
	gj, _ := json.Marshal(got)
	wj, _ := json.Marshal(want)
	if string(gj) != string(wj) {
		t.Fatalf("trim:\n got %s\nwant %s", gj, wj)
	}
	// Classification on the trimmed pod equals classification on the full one.
	for i := range p.Status.ContainerStatuses {
		a, _ := Classify(p, &p.Status.ContainerStatuses[i], true)
		b, _ := Classify(got, &got.Status.ContainerStatuses[i], true)
		if a != b {
			t.Fatalf("container %d: full %+v, trimmed %+v", i, a, b)
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
