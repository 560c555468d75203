package mutate

import corev1 "k8s.io/api/core/v1"

// Observe mode: a namespace labelled lastcall.dev/inject=observe gets lastcall's shutdown telemetry without
// lastcall changing how its pods stop. The engine only labels each pod lastcall.dev/managed=observe, so the
// observer's watch (which selects that label) sees it; no hook, no grace period, no shim, no record.
//
//	namespace label              pod                        what the engine does
//	lastcall.dev/inject=enabled  any (not opted out)        renders shutdowns; labels managed=inject if it did
//	lastcall.dev/inject=observe  any (not opted out)        labels managed=observe, nothing else
//	either                       opted out, mirror, windows skipped as always (no label)

// observes reports whether ns is in observe mode.
func observes(ns Namespace) bool { return ns.Labels[LabelInject] == ManagedObserve }

// observe labels the pod for the observer and records the decision; the caller returns without rendering.
func (e *Engine) observe(pod *corev1.Pod, res *Result) {
	markManaged(pod, ManagedObserve)
	res.Observe = true
}

// markManaged sets lastcall.dev/managed. A pod that already carries another value keeps the new one: the
// label states what lastcall did on this admission.
func markManaged(pod *corev1.Pod, mode string) {
	if pod.Labels == nil {
		pod.Labels = make(map[string]string, 1)
	}
	pod.Labels[LabelManaged] = mode
}
