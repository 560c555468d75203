package observer

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var t0 = time.Date(2026, 12, 1, 20, 0, 0, 0, time.UTC)

func ptr[T any](v T) *T { return &v }

// deleting returns a pod whose deletion was requested at start with the given grace.
func deleting(start time.Time, grace int64) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-5d8f9-abcde", Namespace: "shop"}}
	dt := metav1.NewTime(start.Add(time.Duration(grace) * time.Second))
	p.DeletionTimestamp, p.DeletionGracePeriodSeconds = &dt, ptr(grace)
	return p
}

func terminated(name string, code int32, reason string, finished time.Time) *corev1.ContainerStatus {
	return &corev1.ContainerStatus{Name: name, State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
		ExitCode: code, Reason: reason, FinishedAt: metav1.NewTime(finished)}}}
}

func running(name string) *corev1.ContainerStatus {
	return &corev1.ContainerStatus{Name: name, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}
}

func TestClassify(t *testing.T) {
	t.Parallel()
	notDeleting := &corev1.Pod{}
	noGrace := deleting(t0, 30)
	noGrace.DeletionGracePeriodSeconds = nil
	specGrace := deleting(t0, 30)
	specGrace.DeletionGracePeriodSeconds = nil
	specGrace.Spec.TerminationGracePeriodSeconds = ptr(int64(30))
	negGrace := deleting(t0, 30)
	negGrace.DeletionGracePeriodSeconds = ptr(int64(-5))
	cases := []struct {
		name     string
		pod      *corev1.Pod
		st       *corev1.ContainerStatus
		final    bool
		want     Outcome // "" means: nothing to record
		duration time.Duration
		grace    time.Duration
	}{
		{"a clean exit 0 before the deadline is exited", deleting(t0, 30), terminated("web", 0, "Completed", t0.Add(7*time.Second)), false, OutcomeExited, 7 * time.Second, 30 * time.Second},
		{"exit 143 (died on SIGTERM) is exited-nonzero", deleting(t0, 30), terminated("web", 143, "Error", t0.Add(1*time.Second)), false, OutcomeExitedNonzero, 1 * time.Second, 30 * time.Second},
		{"exit 137 at the deadline is killed", deleting(t0, 30), terminated("worker", 137, "Error", t0.Add(30*time.Second)), false, OutcomeKilled, 30 * time.Second, 30 * time.Second},
		{"exit 137 after the deadline (slow kubelet) is killed", deleting(t0, 30), terminated("worker", 137, "Error", t0.Add(33*time.Second)), false, OutcomeKilled, 33 * time.Second, 30 * time.Second},
		{"exit 137 one second before the deadline (timestamp truncation) is killed", deleting(t0, 30), terminated("worker", 137, "Error", t0.Add(29*time.Second)), false, OutcomeKilled, 29 * time.Second, 30 * time.Second},
		{"exit 137 long before the deadline is not the deadline's SIGKILL", deleting(t0, 30), terminated("worker", 137, "Error", t0.Add(10*time.Second)), false, OutcomeExitedNonzero, 10 * time.Second, 30 * time.Second},
		{"OOMKilled is oom whatever the exit code", deleting(t0, 30), terminated("worker", 137, "OOMKilled", t0.Add(30*time.Second)), false, OutcomeOOM, 30 * time.Second, 30 * time.Second},
		{"grace 0 (forced) exit 137 is killed", deleting(t0, 0), terminated("web", 137, "Error", t0.Add(time.Second)), false, OutcomeKilled, time.Second, 0},
		{"kubelet minimum grace of 2s still killed", deleting(t0, 1), terminated("web", 137, "Error", t0.Add(2*time.Second)), false, OutcomeKilled, 2 * time.Second, time.Second},
		{"finishedAt a second before the start (truncation) counts with duration 0", deleting(t0, 30), terminated("web", 0, "Completed", t0.Add(-time.Second)), false, OutcomeExited, 0, 30 * time.Second},
		{"a container that ended before the deletion is not a shutdown", deleting(t0, 30), terminated("job", 0, "Completed", t0.Add(-time.Hour)), true, "", 0, 0},
		{"a running container is not recorded yet", deleting(t0, 30), running("web"), false, "", 0, 0},
		{"a running container in the final state is unknown", deleting(t0, 30), running("web"), true, OutcomeUnknown, 0, 30 * time.Second},
		{"a waiting container in the final state is not recorded", deleting(t0, 30), &corev1.ContainerStatus{Name: "web", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}}, true, "", 0, 0},
		{"an empty state in the final state is not recorded", deleting(t0, 30), &corev1.ContainerStatus{Name: "web"}, true, "", 0, 0},
		{"status without finishedAt is unknown", deleting(t0, 30), &corev1.ContainerStatus{Name: "web", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0}}}, false, OutcomeUnknown, 0, 30 * time.Second},
		{"a pod not being deleted records nothing", notDeleting, terminated("web", 137, "Error", t0), true, "", 0, 0},
		{"a force-deleted running pod is unknown in its final state", notDeleting, running("web"), true, OutcomeUnknown, 0, 0},
		{"a force-deleted running pod is not recorded before its final state", notDeleting, running("web"), false, "", 0, 0},
		{"no grace at all is unknown", noGrace, terminated("web", 0, "Completed", t0.Add(time.Second)), false, OutcomeUnknown, 0, 0},
		{"no grace and running is not recorded yet", noGrace, running("web"), false, "", 0, 0},
		{"a negative grace is treated as missing", negGrace, terminated("web", 0, "Completed", t0.Add(time.Second)), false, OutcomeUnknown, 0, 0},
		{"the spec's grace stands in for a missing deletionGracePeriodSeconds", specGrace, terminated("web", 0, "Completed", t0.Add(3*time.Second)), false, OutcomeExited, 3 * time.Second, 30 * time.Second},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s, ok := Classify(c.pod, c.st, c.final)
			if c.want == "" {
				if ok {
					t.Fatalf("recorded %+v, want nothing", s)
				}
				return
			}
			if !ok {
				t.Fatalf("nothing recorded, want %s", c.want)
			}
			if s.Outcome != c.want || s.Duration != c.duration || s.Grace != c.grace || s.Container != c.st.Name {
				t.Fatalf("got %+v, want outcome %s duration %s grace %s", s, c.want, c.duration, c.grace)
			}
			if s.HasDuration != (c.want != OutcomeUnknown) {
				t.Fatalf("HasDuration %v for outcome %s", s.HasDuration, s.Outcome)
			}
			if (s.Why != "") != (c.want == OutcomeUnknown) {
				t.Fatalf("Why %q for outcome %s: unknown must say why, the others must not", s.Why, s.Outcome)
			}
		})
	}
}

// The deadline classification is monotonic: for exit 137, once finishedAt reaches deadline - margin it is
// killed from then on, and never before.
func TestClassifyKilledBoundary(t *testing.T) {
	t.Parallel()
	for grace := int64(0); grace <= 40; grace += 5 {
		p := deleting(t0, grace)
		for off := -10 * time.Second; off <= 10*time.Second; off += 500 * time.Millisecond {
			fin := t0.Add(time.Duration(grace)*time.Second + off)
			s, ok := Classify(p, terminated("c", 137, "Error", fin), false)
			wantKilled := off >= -KubeletMargin
			if !ok {
				if wantKilled || fin.After(t0.Add(-KubeletMargin)) {
					t.Fatalf("grace %d offset %s: nothing recorded", grace, off)
				}
				continue
			}
			if (s.Outcome == OutcomeKilled) != wantKilled {
				t.Fatalf("grace %d offset %s: outcome %s, want killed=%v", grace, off, s.Outcome, wantKilled)
			}
		}
	}
}

func FuzzClassify(f *testing.F) {
	f.Add(int64(30), int64(7), int32(0), "Completed", true, true, false)
	f.Add(int64(-1), int64(0), int32(137), "OOMKilled", false, false, true)
	f.Fuzz(func(t *testing.T, grace, finishedOff int64, code int32, reason string, hasDT, hasFinished, final bool) {
		p := &corev1.Pod{}
		if hasDT {
			dt := metav1.NewTime(t0)
			p.DeletionTimestamp, p.DeletionGracePeriodSeconds = &dt, &grace
		}
		st := &corev1.ContainerStatus{Name: "c", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code, Reason: reason}}}
		if hasFinished {
			st.State.Terminated.FinishedAt = metav1.NewTime(t0.Add(time.Duration(finishedOff) * time.Millisecond))
		}
		s, ok := Classify(p, st, final)
		if !ok {
			return
		}
		switch {
		case s.Duration < 0:
			t.Fatalf("negative duration %s", s.Duration)
		case s.Outcome == OutcomeKilled && (code != 137 || strings.EqualFold(reason, "OOMKilled")):
			t.Fatalf("killed with exit code %d reason %q", code, reason)
		case s.HasDuration != (s.Outcome != OutcomeUnknown):
			t.Fatalf("outcome %s with HasDuration %v", s.Outcome, s.HasDuration)
		case (s.Why != "") != (s.Outcome == OutcomeUnknown):
			t.Fatalf("outcome %s with Why %q", s.Outcome, s.Why)
		case s.Outcome == OutcomeExited && code != 0:
			t.Fatalf("exited with code %d", code)
		}
	})
}
