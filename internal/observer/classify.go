// Package observer records how the shutdowns of lastcall-managed pods really went: for every container that
// terminates while its pod is being deleted, whether it exited by itself, was SIGKILLed at the grace deadline,
// was OOM-killed, or cannot be told; and how long it took. It reads only the pod objects the API server
// already has (no agent on the nodes) and runs as a leader-elected part of lastcall-webhook, off the
// admission path.
package observer

import (
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Outcome is how one container's shutdown ended: the "outcome" label of lastcall_shutdowns_total.
type Outcome string

const (
	// OutcomeExited: the container ended by itself with exit code 0 before the deadline.
	OutcomeExited Outcome = "exited"
	// OutcomeExitedNonzero: the container ended by itself before the deadline, with a non-zero exit code
	// (e.g. 143: it died on SIGTERM without handling it, which is fast but usually not graceful).
	OutcomeExitedNonzero Outcome = "exited-nonzero"
	// OutcomeKilled: SIGKILL at the grace deadline (exit 137 at or after it): work was cut short.
	OutcomeKilled Outcome = "killed"
	// OutcomeOOM: the kernel's OOM killer ended the container while it shut down.
	OutcomeOOM Outcome = "oom"
	// OutcomeUnknown: the status cannot tell (no finishedAt, no grace period, pod removed while the container
	// still ran: a force deletion or a lost node).
	OutcomeUnknown Outcome = "unknown"
)

// Outcomes lists every outcome, in the order docs and summaries show them.
var Outcomes = []Outcome{OutcomeExited, OutcomeExitedNonzero, OutcomeKilled, OutcomeOOM, OutcomeUnknown}

// KubeletMargin is how far before the deletionTimestamp an exit 137 still counts as the deadline's SIGKILL.
// The kubelet starts its grace timer when it sees the deletion, which is after the API server set
// deletionTimestamp = now + grace, so its SIGKILL comes at or after that instant; but both timestamps are
// serialized with one-second precision (each may lose up to 1 s), and the node's clock may trail the API
// server's a little. 2 s covers both; a SIGKILL that early from anything else is improbable.
const KubeletMargin = 2 * time.Second

// exitSIGKILL is the exit code the runtime reports for a process killed by signal 9 (128 + 9).
const exitSIGKILL = 137

// reasonOOMKilled is the terminated reason the kubelet reports for an OOM kill.
const reasonOOMKilled = "OOMKilled"

// Shutdown is one container's shutdown as classified from its pod.
type Shutdown struct {
	Container string
	Outcome   Outcome
	// ExitCode and Reason are the kubelet's (Reason is e.g. "Completed", "Error", "OOMKilled").
	ExitCode int32
	Reason   string
	// Grace is the grace period the deletion gave the pod (0 when unknown).
	Grace time.Duration
	// Duration is finishedAt minus the start of the shutdown (deletionTimestamp - grace); 0 when unknown.
	Duration time.Duration
	// HasDuration is false when Duration could not be computed (outcome unknown).
	HasDuration bool
	// Why says, for OutcomeUnknown, which field was missing or wrong (for a debug log line).
	Why string
}

// Classify decides the shutdown of the container with status st in pod. It returns false when there is no
// shutdown to record (yet): the pod is not being deleted, the container has not terminated, or it terminated
// before the deletion began (a completed Job pod deleted later). final is true for the pod's last state (its
// DELETED event): a container that still ran then never reported how it ended, which is recorded as unknown.
// Classify never panics, whatever the status holds.
func Classify(pod *corev1.Pod, st *corev1.ContainerStatus, final bool) (Shutdown, bool) {
	s := Shutdown{Container: st.Name}
	term := st.State.Terminated
	if pod.DeletionTimestamp == nil {
		// Deleted without a graceful deletion (force delete with grace 0 of a running pod): the kubelet kills
		// it afterwards, unseen.
		if final && term == nil && st.State.Running != nil {
			s.Outcome, s.Why = OutcomeUnknown, "pod removed without a graceful deletion (no deletionTimestamp) while the container ran"
			return s, true
		}
		return s, false
	}
	deadline := pod.DeletionTimestamp.Time
	switch {
	case pod.DeletionGracePeriodSeconds != nil && *pod.DeletionGracePeriodSeconds >= 0:
		s.Grace = time.Duration(*pod.DeletionGracePeriodSeconds) * time.Second
	case pod.Spec.TerminationGracePeriodSeconds != nil && *pod.Spec.TerminationGracePeriodSeconds >= 0:
		// Not expected (the API server sets both deletion fields together); the spec's value is what the
		// deletion would have used.
		s.Grace = time.Duration(*pod.Spec.TerminationGracePeriodSeconds) * time.Second
	default:
		if term == nil && !(final && st.State.Running != nil) {
			return s, false
		}
		s.Outcome, s.Why = OutcomeUnknown, "pod has a deletionTimestamp but neither deletionGracePeriodSeconds nor spec.terminationGracePeriodSeconds"
		return s, true
	}
	start := deadline.Add(-s.Grace)
	if term == nil {
		if final && st.State.Running != nil {
			s.Outcome, s.Why = OutcomeUnknown, "pod removed while the container still ran (force deletion or lost node): no final status"
			return s, true
		}
		return s, false
	}
	s.ExitCode, s.Reason = term.ExitCode, term.Reason
	if term.FinishedAt.IsZero() {
		s.Outcome, s.Why = OutcomeUnknown, "state.terminated has no finishedAt"
		return s, true
	}
	finished := term.FinishedAt.Time
	if finished.Before(start.Add(-KubeletMargin)) {
		// It ended before anyone asked it to: not a shutdown.
		return s, false
	}
	s.Duration, s.HasDuration = max(finished.Sub(start), 0), true
	switch {
	case strings.EqualFold(term.Reason, reasonOOMKilled):
		s.Outcome = OutcomeOOM
	case term.ExitCode == exitSIGKILL && !finished.Before(deadline.Add(-KubeletMargin)):
		s.Outcome = OutcomeKilled
	case term.ExitCode == 0:
		s.Outcome = OutcomeExited
	default:
		s.Outcome = OutcomeExitedNonzero
	}
	return s, true
}
