package summary

import (
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 12, 1, 20, 0, 0, 0, time.UTC)

func TestStoreBoundsAndQuantiles(t *testing.T) {
	t.Parallel()
	s := NewStore(time.Hour, 100, 2)
	k := Key{"shop", "Deployment", "web", "web"}
	// 150 samples of 1..150 s: only the last 100 (51..150) are kept.
	for i := 1; i <= 150; i++ {
		s.Add(k, "nginx", Sample{At: t0, Outcome: Exited, Duration: time.Duration(i) * time.Second, HasDuration: true, Grace: 30 * time.Second})
	}
	r := s.Report(t0)
	if len(r.Workloads) != 1 {
		t.Fatalf("%d workloads", len(r.Workloads))
	}
	w := r.Workloads[0]
	if w.Shutdowns != 100 || w.Exited != 100 || w.P50Seconds != 100 || w.P99Seconds != 149 || w.MaxSeconds != 150 || w.GraceSeconds != 30 {
		t.Fatalf("summary %+v", w)
	}
	// Older than the window: gone from the report.
	if r := s.Report(t0.Add(2 * time.Hour)); len(r.Workloads) != 0 {
		t.Fatalf("samples outside the window reported: %+v", r.Workloads)
	}
	// MaxKeys 2: a third workload evicts the least recently updated.
	s.Add(Key{"shop", "Deployment", "api", "api"}, "http", Sample{At: t0.Add(time.Second), Outcome: Killed})
	s.Add(Key{"shop", "Deployment", "db", "db"}, "postgres", Sample{At: t0.Add(2 * time.Second), Outcome: OOM})
	r = s.Report(t0.Add(3 * time.Second))
	if len(r.Workloads) != 2 || r.Workloads[0].Name != "api" || r.Workloads[1].Name != "db" {
		t.Fatalf("after eviction: %+v", r.Workloads)
	}
}

func TestVerdict(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		w    Workload
		want string
	}{
		{"all exited within the grace is fine", Workload{Shutdowns: 12, Exited: 12, P50Seconds: 6, P99Seconds: 8, GraceSeconds: 32}, "fine"},
		{"kills say how many and what to raise", Workload{Container: "worker", Shutdowns: 12, Killed: 3, Exited: 9, MaxSeconds: 47, GraceSeconds: 47}, "killed 3 of 12: raise lastcall.dev/drain-timeout.worker so the grace period exceeds 47s (try >= 1m34s)"},
		{"a kill of an unmanaged container (observe mode) says to let lastcall manage it", Workload{Container: "worker", Profile: "none", Shutdowns: 1, Killed: 1, MaxSeconds: 3, GraceSeconds: 3}, "killed 1 of 1: grace 3s is too short and lastcall does not manage this container: label the namespace lastcall.dev/inject=enabled (then raise lastcall.dev/drain-timeout.worker) or raise terminationGracePeriodSeconds (try >= 6s)"},
		{"an oversized grace period could shorten rollouts", Workload{Shutdowns: 20, Exited: 20, P50Seconds: 5, P99Seconds: 8, GraceSeconds: 600}, "grace 10m0s but p99 needs 8s: could shorten rollouts"},
		{"a grace period a little above the p99 is fine", Workload{Shutdowns: 20, Exited: 20, P99Seconds: 20, GraceSeconds: 60}, "fine"},
		{"oom", Workload{Shutdowns: 2, OOM: 1, Exited: 1}, "oom 1 of 2: the container ran out of memory while shutting down"},
		{"only unknowns", Workload{Shutdowns: 3, Unknown: 3}, "unknown: none of 3 shutdowns reported how it ended"},
		{"non-zero exits are pointed out", Workload{Shutdowns: 4, ExitedNonzero: 4, P99Seconds: 1, GraceSeconds: 30}, "fine (4 of 4 exited non-zero: check the app's exit code on its stop signal)"},
		{"nothing", Workload{}, "no shutdowns in the window"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			if got := Verdict(c.w); got != c.want {
				t.Fatalf("Verdict = %q, want %q", got, c.want)
			}
		})
	}
	if v := Verdict(Workload{Shutdowns: 1, Killed: 1, Container: "c"}); !strings.Contains(v, "drain-timeout.c") {
		t.Fatalf("a kill without durations: %q", v)
	}
}
