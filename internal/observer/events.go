package observer

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/lastcall-dev/lastcall/pkg/mutate"
)

// ReasonShutdownKilled is the reason of the Warning event lastcall puts on a workload whose container was
// SIGKILLed at its grace deadline.
const ReasonShutdownKilled = "ShutdownKilled"

// EventComponent is the event's source and reporting controller.
const EventComponent = "lastcall-observer"

// DefaultLease is the Lease (in lastcall's namespace) that elects the observing replica, unless
// --observer-lease names another; `lastcall status` and the e2e tests look for its holder.
const DefaultLease = "lastcall-observer"

// EventSink creates events (a controller-runtime client satisfies it through EventCreator).
type EventSink interface {
	CreateEvent(ctx context.Context, ev *corev1.Event) error
}

// killKey is one workload container: kills of it within one window become one event.
type killKey struct {
	namespace, kind, apiVersion, name, container string
	// unmanaged: lastcall does not manage the container's shutdown (profile none, observe mode), so the
	// advice differs.
	unmanaged bool
}

type killAgg struct {
	count       int32
	grace       time.Duration
	maxNeeded   time.Duration
	first, last time.Time
	lastPod     string
}

// killEvents aggregates kills by workload container and flushes them as one event each per window, with a
// count. Our own aggregation rather than client-go's recorders: the legacy recorder only merges events whose
// message is identical (ours names the pod and the time it needed) and its spam filter drops events beyond a
// burst, and the events.k8s.io recorder turns repeats into a series only after a first event per pod; a
// rollout of 50 pods must give one event that says 50.
type killEvents struct {
	sink     EventSink
	log      logr.Logger
	instance string

	mu      sync.Mutex
	pending map[killKey]*killAgg
}

func newKillEvents(sink EventSink, log logr.Logger) *killEvents {
	host, _ := os.Hostname()
	return &killEvents{sink: sink, log: log, instance: host, pending: map[killKey]*killAgg{}}
}

func (k *killEvents) add(namespace, pod string, w Workload, profile string, s Shutdown, at time.Time) {
	if k == nil || k.sink == nil || w.Kind == KindUnknown {
		return
	}
	key := killKey{namespace: namespace, kind: w.Kind, apiVersion: w.APIVersion, name: w.Name, container: s.Container, unmanaged: profile == ProfileNone}
	k.mu.Lock()
	defer k.mu.Unlock()
	a := k.pending[key]
	if a == nil {
		a = &killAgg{first: at}
		k.pending[key] = a
	}
	a.count++
	a.grace, a.last, a.lastPod = s.Grace, at, pod
	a.maxNeeded = max(a.maxNeeded, s.Duration)
}

// flush creates one event per workload container with kills since the last flush. An event that cannot be
// created is logged and dropped (the metric has the kill already); it is not retried forever.
func (k *killEvents) flush(ctx context.Context) {
	if k == nil || k.sink == nil {
		return
	}
	k.mu.Lock()
	batch := k.pending
	k.pending = map[killKey]*killAgg{}
	k.mu.Unlock()
	keys := make([]killKey, 0, len(batch))
	for key := range batch {
		keys = append(keys, key)
	}
	sort.Slice(keys, func(i, j int) bool { return fmt.Sprint(keys[i]) < fmt.Sprint(keys[j]) })
	for _, key := range keys {
		ev := k.event(key, batch[key])
		if err := k.sink.CreateEvent(ctx, ev); err != nil {
			k.log.Error(err, "cannot create event", "namespace", key.namespace, "kind", key.kind, "name", key.name, "reason", ReasonShutdownKilled)
		}
	}
}

func (k *killEvents) event(key killKey, a *killAgg) *corev1.Event {
	pods := "1 pod"
	if a.count > 1 {
		pods = strconv.Itoa(int(a.count)) + " pods"
	}
	annotation := mutate.AnnotationDrainTimeout + "." + key.container
	msg := fmt.Sprintf("container %s was SIGKILLed at the end of its %s grace period in %s (latest %s): it needed at least %s. Raise %s on the pod template (the grace period follows it) so its work can finish",
		key.container, a.grace, pods, a.lastPod, a.maxNeeded.Round(time.Second), annotation)
	if key.unmanaged {
		msg = fmt.Sprintf("container %s was SIGKILLed at the end of its %s grace period in %s (latest %s): it needed at least %s. lastcall does not manage its shutdown (observe mode or profile none): raise terminationGracePeriodSeconds, or label the namespace %s=enabled and raise %s",
			key.container, a.grace, pods, a.lastPod, a.maxNeeded.Round(time.Second), mutate.LabelInject, annotation)
	}
	name := key.name
	// Event names follow the recorder's "<object>.<unique hex>" form, within the 253-character name limit.
	suffix := "." + strconv.FormatInt(a.last.UnixNano(), 16) + "." + key.container
	if len(name)+len(suffix) > 253 {
		name = name[:253-len(suffix)]
	}
	return &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{Name: name + suffix, Namespace: key.namespace},
		InvolvedObject: corev1.ObjectReference{
			Kind: key.kind, APIVersion: key.apiVersion, Namespace: key.namespace, Name: key.name,
			// The container, like the kubelet's events use fieldPath for one.
			FieldPath: "spec.template.spec.containers{" + key.container + "}",
		},
		Reason:              ReasonShutdownKilled,
		Message:             msg,
		Type:                corev1.EventTypeWarning,
		Count:               a.count,
		FirstTimestamp:      metav1.NewTime(a.first),
		LastTimestamp:       metav1.NewTime(a.last),
		Source:              corev1.EventSource{Component: EventComponent},
		ReportingController: "lastcall.dev/" + EventComponent,
		ReportingInstance:   k.instance,
		Action:              "Shutdown",
	}
}
