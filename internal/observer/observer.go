package observer

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/lastcall-dev/lastcall/internal/observer/summary"
	"github.com/lastcall-dev/lastcall/pkg/mutate"
)

// Options configure an Observer.
type Options struct {
	// Registerer takes the metrics (controller-runtime's registry in the binary); nil registers nothing.
	Registerer prometheus.Registerer
	// WorkloadLabels false leaves the namespace, workload_kind and workload labels empty, for clusters where
	// one series per workload container is too many.
	WorkloadLabels bool
	// Events receives the ShutdownKilled events; nil creates none.
	Events EventSink
	// EventWindow is how long kills of one workload container are collected into one event (default 1m).
	EventWindow time.Duration
	// SummaryWindow and SummarySamples bound what /shutdowns reports per workload container (default 6h and
	// 256); SummaryKeys bounds the workload containers (default 5000).
	SummaryWindow               time.Duration
	SummarySamples, SummaryKeys int
	Log                         logr.Logger
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// Observer watches managed pods and records their containers' shutdowns. It is a manager Runnable that needs
// leader election: only one replica counts, and every shutdown is counted when its pod's DELETED event (or a
// relist that no longer has it) arrives, which reaches exactly one leader.
type Observer struct {
	lw      cache.ListerWatcher
	o       Options
	metrics *metrics
	events  *killEvents
	recent  *summary.Store
	log     logr.Logger
	running atomic.Bool

	mu     sync.Mutex
	pods   map[string]*podEntry
	listed bool // this term's first list was stored
}

// podEntry is what the observer keeps per pod: its uid, and, only once the pod is being deleted, what it
// needs to finish the pod's record if the DELETED event is missed (a relist that no longer lists the pod).
// A running pod costs its key and a uid.
type podEntry struct {
	uid      types.UID
	shutdown *pendingPod
}

type pendingPod struct {
	pod *corev1.Pod // trimmed
}

// New returns an observer fed by lw (managed pods; see PodListWatch).
func New(lw cache.ListerWatcher, o Options) *Observer {
	if o.EventWindow <= 0 {
		o.EventWindow = time.Minute
	}
	if o.SummaryWindow <= 0 {
		o.SummaryWindow = 6 * time.Hour
	}
	if o.SummarySamples <= 0 {
		o.SummarySamples = 256
	}
	if o.SummaryKeys <= 0 {
		o.SummaryKeys = 5000
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Observer{
		lw: lw, o: o, log: o.Log,
		metrics: newMetrics(o.Registerer, o.WorkloadLabels),
		events:  newKillEvents(o.Events, o.Log),
		recent:  summary.NewStore(o.SummaryWindow, o.SummarySamples, o.SummaryKeys),
		pods:    map[string]*podEntry{},
	}
}

// ManagedSelector is the label selector of the pod watch: only pods lastcall handled.
var ManagedSelector = mutate.LabelManaged

// PodListWatch lists and watches the managed pods of every namespace. The API server filters by label, so
// the observer never receives the cluster's other pods.
func PodListWatch(c kubernetes.Interface) cache.ListerWatcher {
	pods := c.CoreV1().Pods(metav1.NamespaceAll)
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.LabelSelector = ManagedSelector
			l, err := pods.List(ctx, o)
			if err != nil {
				return nil, err
			}
			// Trim each page as it arrives: the reflector holds every page until the list is complete.
			for i := range l.Items {
				l.Items[i] = *trim(&l.Items[i])
			}
			return l, nil
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.LabelSelector = ManagedSelector
			return pods.Watch(ctx, o)
		},
	}
}

// Start runs the watch until ctx ends, flushing aggregated events every EventWindow.
func (x *Observer) Start(ctx context.Context) error {
	// A new term starts from nothing: what happened to pods while another replica led is that replica's
	// to count, and finishing them from a stale state here would count them twice.
	x.mu.Lock()
	x.pods = map[string]*podEntry{}
	x.listed = false
	x.mu.Unlock()
	x.running.Store(true)
	defer x.running.Store(false)
	x.log.Info("observing shutdowns of managed pods", "selector", ManagedSelector)
	r := cache.NewReflectorWithOptions(x.lw, &corev1.Pod{}, x, cache.ReflectorOptions{Name: "lastcall-observer"})
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.RunWithContext(ctx)
	}()
	t := time.NewTicker(x.o.EventWindow)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			<-done
			// The kills of the last window still get their event, on a context that outlives ours briefly.
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			x.events.flush(fctx)
			cancel()
			return nil
		case <-t.C:
			x.events.flush(ctx)
		}
	}
}

// Leading reports whether the observer runs (on the replica holding the Lease).
func (x *Observer) Leading() bool { return x.running.Load() }

// NeedLeaderElection: two replicas counting would count every shutdown twice.
func (x *Observer) NeedLeaderElection() bool { return true }

// ServeHTTP serves the per-workload summaries as JSON (summary.Report).
func (x *Observer) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	var r summary.Report
	if x.running.Load() {
		r = x.recent.Report(x.o.Now())
	} else {
		r = summary.Report{Leader: false, Workloads: []summary.Workload{}, Window: x.o.SummaryWindow.String(), MaxSamples: x.o.SummarySamples}
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(r)
}

// trim keeps what classification, workload resolution and the record need: name, namespace, uid, owner
// references, the pod-template-hash label, lastcall's annotations, the deletion fields, the grace period and
// each container's name and state. Everything else (spec, managed fields, conditions, images) is dropped
// before the pod is stored, so a managed pod costs the observer a few hundred bytes while it is deleted and
// a key and a uid otherwise.
func trim(p *corev1.Pod) *corev1.Pod {
	t := &corev1.Pod{}
	t.Name, t.Namespace, t.UID, t.ResourceVersion = p.Name, p.Namespace, p.UID, p.ResourceVersion
	t.DeletionTimestamp, t.DeletionGracePeriodSeconds = p.DeletionTimestamp, p.DeletionGracePeriodSeconds
	for _, o := range p.OwnerReferences {
		if o.Controller != nil && *o.Controller {
			t.OwnerReferences = []metav1.OwnerReference{{APIVersion: o.APIVersion, Kind: o.Kind, Name: o.Name, Controller: o.Controller}}
			break
		}
	}
	if t.OwnerReferences == nil && len(p.OwnerReferences) > 0 {
		o := p.OwnerReferences[0]
		t.OwnerReferences = []metav1.OwnerReference{{APIVersion: o.APIVersion, Kind: o.Kind, Name: o.Name}}
	}
	if h, ok := p.Labels[labelPodTemplateHash]; ok {
		t.Labels = map[string]string{labelPodTemplateHash: h}
	}
	for k, v := range p.Annotations {
		if strings.HasPrefix(k, mutate.Prefix) {
			if t.Annotations == nil {
				t.Annotations = make(map[string]string, 2)
			}
			t.Annotations[k] = v
		}
	}
	t.Spec.TerminationGracePeriodSeconds = p.Spec.TerminationGracePeriodSeconds
	t.Status.ContainerStatuses = trimStatuses(p.Status.ContainerStatuses)
	t.Status.InitContainerStatuses = trimStatuses(p.Status.InitContainerStatuses)
	return t
}

func trimStatuses(in []corev1.ContainerStatus) []corev1.ContainerStatus {
	if len(in) == 0 {
		return nil
	}
	out := make([]corev1.ContainerStatus, len(in))
	for i, s := range in {
		out[i].Name = s.Name
		if s.State.Running != nil {
			out[i].State.Running = &corev1.ContainerStateRunning{}
		}
		if t := s.State.Terminated; t != nil {
			out[i].State.Terminated = &corev1.ContainerStateTerminated{ExitCode: t.ExitCode, Signal: t.Signal, Reason: t.Reason, FinishedAt: t.FinishedAt}
		}
	}
	return out
}

// Transformer implements cache.TransformingStore: the reflector trims every pod before it reaches the store,
// and while it streams the initial list (watch-list) it holds only trimmed pods.
func (x *Observer) Transformer() cache.TransformFunc {
	return func(obj any) (any, error) {
		p, ok := obj.(*corev1.Pod)
		if !ok {
			return obj, nil
		}
		return trim(p), nil
	}
}

func podKey(p *corev1.Pod) string { return p.Namespace + "/" + p.Name }

// Add implements cache.ReflectorStore.
func (x *Observer) Add(obj any) error { return x.Update(obj) }

// Update implements cache.ReflectorStore.
func (x *Observer) Update(obj any) (err error) {
	defer x.recoverTo(&err)
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return fmt.Errorf("observer: got %T, want *v1.Pod", obj)
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	x.updateLocked(p)
	return nil
}

func (x *Observer) updateLocked(p *corev1.Pod) {
	key := podKey(p)
	e := x.pods[key]
	if e != nil && e.uid != p.UID {
		// A new pod with the same name (a StatefulSet's): the old one's DELETED was missed.
		x.finishLocked(key, e)
		e = nil
	}
	if e == nil {
		// A copy of the uid: the entry must not pin the decoded pod.
		e = &podEntry{uid: types.UID(strings.Clone(string(p.UID)))}
		x.pods[key] = e
	}
	if p.DeletionTimestamp != nil {
		// Watch events arrive untrimmed (the reflector applies the transform only to a streamed list).
		e.shutdown = &pendingPod{pod: keepGrace(trim(p), e.shutdown)}
	}
}

// keepGrace keeps the deletion fields of the graceful deletion when the pod's last delete rewrote them. The
// kubelet removes a pod whose containers have stopped with a delete of grace 0, and the API server then
// stores deletionGracePeriodSeconds 0 and deletionTimestamp = start of the shutdown (it keeps the start when
// a grace period is shortened); the pod's DELETED event carries those. The grace period the containers had is
// the last non-zero one. A shorter non-zero grace period (a second delete) is real and replaces it.
func keepGrace(p *corev1.Pod, before *pendingPod) *corev1.Pod {
	g := p.DeletionGracePeriodSeconds
	if before == nil || g == nil || *g != 0 {
		return p
	}
	b := before.pod
	if b.DeletionGracePeriodSeconds != nil && *b.DeletionGracePeriodSeconds > 0 && b.DeletionTimestamp != nil {
		p.DeletionTimestamp, p.DeletionGracePeriodSeconds = b.DeletionTimestamp, b.DeletionGracePeriodSeconds
	}
	return p
}

// Delete implements cache.ReflectorStore: the pod's last state decides its containers' outcomes.
func (x *Observer) Delete(obj any) (err error) {
	defer x.recoverTo(&err)
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return fmt.Errorf("observer: got %T, want *v1.Pod", obj)
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	key := podKey(p)
	e := x.pods[key]
	if e != nil && e.uid != p.UID {
		x.finishLocked(key, e)
		e = nil
	}
	delete(x.pods, key)
	if e != nil && p.DeletionTimestamp != nil {
		p = keepGrace(trim(p), e.shutdown)
	}
	x.recordPod(p)
	return nil
}

// Replace implements cache.ReflectorStore. A relist (after the watch could not resume) no longer lists the
// pods deleted meanwhile: those seen being deleted are finished from their last state; those never seen
// being deleted are counted as missed.
func (x *Observer) Replace(list []any, _ string) (err error) {
	defer x.recoverTo(&err)
	seen := make(map[string]bool, len(list))
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, obj := range list {
		p, ok := obj.(*corev1.Pod)
		if !ok {
			return fmt.Errorf("observer: got %T, want *v1.Pod", obj)
		}
		key := podKey(p)
		seen[key] = true
		x.updateLocked(p)
	}
	for key, e := range x.pods {
		if !seen[key] {
			x.finishLocked(key, e)
		}
	}
	if !x.listed {
		x.listed = true
		// The first list of a term decodes every managed pod at once (tens of MiB with 10,000 pods), and
		// all of it is garbage now: hand it back rather than when the scavenger gets to it.
		go debug.FreeOSMemory()
	}
	return nil
}

// finishLocked records a pod whose DELETED event was missed, from what was last seen of it.
func (x *Observer) finishLocked(key string, e *podEntry) {
	delete(x.pods, key)
	if e.shutdown == nil {
		x.metrics.missed.Inc()
		x.log.V(1).Info("managed pod disappeared while the watch was down; its shutdown is not known", "pod", key)
		return
	}
	x.recordPod(e.shutdown.pod)
}

// recoverTo turns a panic while handling a pod into an error for the reflector (which logs it and goes on):
// the observer shares its process with admission, and a bug here must not take the webhook down.
func (x *Observer) recoverTo(err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("observer: panic handling a pod: %v", r)
		x.log.Error(*err, "observer: recovered")
	}
}

// Resync implements cache.ReflectorStore; there is nothing to resync.
func (x *Observer) Resync() error { return nil }

// recordPod records the shutdown of every container of a pod in its last state.
func (x *Observer) recordPod(p *corev1.Pod) {
	w, problem := ResolveWorkload(p.Name, p.OwnerReferences, p.Labels)
	if problem != "" {
		x.log.V(1).Info("cannot resolve the workload from the owner references", "pod", podKey(p), "problem", problem, "workload", w)
	}
	record, err := parseRecord(p.Annotations[mutate.AnnotationInjected])
	if err != nil {
		x.log.V(1).Info("record annotation is malformed; containers it does not name get profile unknown", "pod", podKey(p), "annotation", mutate.AnnotationInjected, "value", p.Annotations[mutate.AnnotationInjected], "error", err.Error())
	}
	now := x.o.Now()
	one := func(st *corev1.ContainerStatus) {
		s, ok := Classify(p, st, true)
		if !ok {
			return
		}
		profile := profileOf(record, err != nil, st.Name)
		if s.Outcome == OutcomeUnknown {
			x.log.V(1).Info("shutdown outcome unknown", "pod", podKey(p), "container", st.Name, "why", s.Why)
		}
		x.metrics.record(p.Namespace, w, profile, s)
		x.recent.Add(summary.Key{Namespace: p.Namespace, Kind: w.Kind, Name: w.Name, Container: s.Container}, profile,
			summary.Sample{At: now, Outcome: string(s.Outcome), Duration: s.Duration, HasDuration: s.HasDuration, Grace: s.Grace})
		if s.Outcome == OutcomeKilled {
			x.log.Info("container SIGKILLed at its grace deadline", "pod", podKey(p), "container", s.Container, "workload", w.Kind+"/"+w.Name, "grace", s.Grace.String(), "ran", s.Duration.String())
			x.events.add(p.Namespace, p.Name, w, profile, s, now)
		} else {
			x.log.V(1).Info("shutdown", "pod", podKey(p), "container", s.Container, "outcome", s.Outcome, "duration", s.Duration.String(), "grace", s.Grace.String(), "exitCode", s.ExitCode)
		}
	}
	for i := range p.Status.ContainerStatuses {
		one(&p.Status.ContainerStatuses[i])
	}
	// Native sidecars are init containers; only those lastcall handled (named in the record) are counted,
	// since completed ordinary init containers have nothing to do with the shutdown.
	for i := range p.Status.InitContainerStatuses {
		if _, ok := record[p.Status.InitContainerStatuses[i].Name]; ok {
			one(&p.Status.InitContainerStatuses[i])
		}
	}
}

var _ cache.TransformingStore = (*Observer)(nil)
