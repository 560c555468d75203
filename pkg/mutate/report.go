package mutate

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"time"

	"fmt"

	"github.com/lastcall-dev/lastcall/pkg/profiles"
)

// SkipCode names why lastcall left a pod or container alone. The same code feeds warnings, logs and the
// reason label of the admission metric, so it must stay low-cardinality.
type SkipCode string

const (
	SkipMirrorPod       SkipCode = "mirror-pod"
	SkipWindows         SkipCode = "windows"
	SkipPodOptOutLabel  SkipCode = "pod-opt-out-label"
	SkipPodOptOutAnno   SkipCode = "pod-opt-out-annotation"
	SkipNamespaceOptOut SkipCode = "namespace-opt-out"
	SkipNoContainers    SkipCode = "no-eligible-containers"
	SkipProfileNone     SkipCode = "profile-none"
	SkipMeshProxy       SkipCode = "mesh-proxy"
	SkipNativeSidecar   SkipCode = "native-sidecar"
	SkipShimPathInUse   SkipCode = "shim-path-in-use"
	// SkipInvalidName: a container name with ',' or '=' cannot be written into the lastcall.dev/injected
	// record, so a second pass could not tell lastcall's hook from the user's. The API server refuses such a
	// name anyway (container names are DNS-1123 labels); leaving the container alone keeps the engine idempotent.
	SkipInvalidName SkipCode = "invalid-container-name"
)

// Skip is a skip decision with the sentence that explains it, naming the exact key and value.
type Skip struct {
	Code    SkipCode `json:"code"`
	Message string   `json:"message"`
}

// Rendering is how a container's shutdown was rendered.
type Rendering string

const (
	// RenderNativeSleep: lifecycle.preStop.sleep, then the kubelet's SIGTERM (the app's graceful signal).
	RenderNativeSleep Rendering = "native-sleep"
	// RenderStopSignal: lifecycle.stopSignal set to the graceful signal, plus the delay.
	RenderStopSignal Rendering = "stop-signal"
	// RenderSupervise: lastcall-shim run is PID 1 and turns the kubelet's SIGTERM into the graceful signal.
	RenderSupervise Rendering = "supervise"
	// RenderShimExec: the shim's preStop sleeps, signals and waits until the app exited.
	RenderShimExec Rendering = "shim-exec"
	// RenderShimSleep: the shim's preStop only sleeps (servers that drain on SIGTERM, on clusters without the
	// native sleep action).
	RenderShimSleep Rendering = "shim-sleep"
	// RenderGraceOnly: no hook needed (no delay, SIGTERM is graceful); only the grace period changes.
	RenderGraceOnly Rendering = "grace-only"
	// RenderKeptExisting: the user's own preStop hook was kept.
	RenderKeptExisting Rendering = "kept-existing-prestop"
)

// Decision records what lastcall did with one container and why.
type Decision struct {
	Container string `json:"container"`
	// Sidecar is true for a native sidecar (an init container with restartPolicy Always).
	Sidecar       bool             `json:"sidecar,omitempty"`
	Skip          *Skip            `json:"skip,omitempty"`
	Profile       string           `json:"profile,omitempty"`
	ProfileSource string           `json:"profileSource,omitempty"`
	DrainDelay    *metav1.Duration `json:"drainDelay,omitempty"`
	StopSignal    profiles.Signal  `json:"stopSignal,omitempty"`
	DrainTimeout  *metav1.Duration `json:"drainTimeout,omitempty"`
	// The sources say where each number came from when it is not the profile's: "annotation <key>", "the
	// command's --graceful-timeout 60", "the container's lifecycle.stopSignal".
	DrainDelaySource   string `json:"drainDelaySource,omitempty"`
	StopSignalSource   string `json:"stopSignalSource,omitempty"`
	DrainTimeoutSource string `json:"drainTimeoutSource,omitempty"`
	// OrderedAfter names the latest proxy this upstream is signalled after: its delay is at least that proxy's
	// delay + 1s.
	OrderedAfter string `json:"orderedAfter,omitempty"`
	// OwnDelay is the upstream's delay before ordering raised it (set only when ordering raised it).
	OwnDelay *metav1.Duration `json:"-"`
	// Target is the process the shim signals by name, when PID 1 is a launcher that does not exec.
	Target    string    `json:"target,omitempty"`
	TargetWhy string    `json:"targetWhy,omitempty"`
	Rendering Rendering `json:"rendering,omitempty"`
	// Why explains the rendering choice in one sentence.
	Why    string   `json:"why,omitempty"`
	Checks []string `json:"checks,omitempty"`
}

// Problem is a bad user setting: lastcall ignored it and used Fallback. Strict mode turns problems into denials.
type Problem struct {
	Key      string `json:"key"`
	Value    string `json:"value"`
	Reason   string `json:"reason"`
	Fallback string `json:"fallback"`
	// Namespace problems come from the namespace's annotations; they never deny a pod.
	Namespace bool `json:"namespace,omitempty"`
}

func (p Problem) String() string {
	where := "annotation"
	if p.Namespace {
		where = "namespace annotation"
	}
	return fmt.Sprintf("%s %s=%q: %s; %s", where, p.Key, p.Value, p.Reason, p.Fallback)
}

// Grace records the grace-period arithmetic.
type Grace struct {
	// Before is the pod's value before lastcall (nil: unset, which means 30s).
	Before *int64 `json:"before,omitempty"`
	// Needed is max over containers of (delay + timeout) + 2s, in whole seconds.
	Needed int64 `json:"needed"`
	// After is what the pod has now.
	After  int64 `json:"after"`
	Capped bool  `json:"capped,omitempty"`
}

// Result is the engine's answer.
type Result struct {
	// Pod is the mutated copy; the input is never modified.
	Pod *corev1.Pod `json:"-"`
	// Skip is set when the whole pod was skipped.
	Skip       *Skip      `json:"skip,omitempty"`
	Containers []Decision `json:"containers,omitempty"`
	Grace      *Grace     `json:"grace,omitempty"`
	// Observe is true in an observe-mode namespace: the pod was only labelled for the shutdown observer.
	Observe bool `json:"observe,omitempty"`
	// ShimInjected is true when the pod carries the shim init container.
	ShimInjected bool      `json:"shimInjected,omitempty"`
	Problems     []Problem `json:"problems,omitempty"`
	// Warnings are notes that are not bad input (a kept preStop, a capped grace period).
	Warnings []string `json:"warnings,omitempty"`
}

// AllWarnings returns problems and warnings as the sentences an admission response carries.
func (r *Result) AllWarnings() []string {
	if len(r.Problems) == 0 {
		return r.Warnings
	}
	out := make([]string, 0, len(r.Problems)+len(r.Warnings))
	for _, p := range r.Problems {
		out = append(out, "lastcall: "+p.String())
	}
	return append(out, r.Warnings...)
}

// Denied reports whether strict mode denies this pod, with the message.
func (r *Result) DenyMessage(strict bool) (string, bool) {
	if !strict {
		return "", false
	}
	msg := ""
	for _, p := range r.Problems {
		if p.Namespace {
			continue
		}
		if msg != "" {
			msg += "; "
		}
		msg += p.String()
	}
	return "lastcall (strict mode): " + msg, msg != ""
}

// Injected lists "container=profile" for the containers lastcall handled, in pod order.
func (r *Result) Injected() []string {
	var out []string
	for _, d := range r.Containers {
		if d.Skip == nil {
			out = append(out, d.Container+"="+d.Profile)
		}
	}
	return out
}

func dur(d time.Duration) *metav1.Duration { return &metav1.Duration{Duration: d} }
