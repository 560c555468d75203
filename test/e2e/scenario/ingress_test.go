//go:build e2e

package scenario

import (
	"strings"
	"testing"
	"time"

	"github.com/lastcall-dev/lastcall/internal/loadgen"
	"github.com/lastcall-dev/lastcall/internal/timeline"
)

func TestComputeDropsFindsWhenTraefikStoppedPickingEachOldPod(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 21, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	r := &IngressResult{Zero: t0, Drops: map[string]time.Duration{}, Events: []PodEvent{
		{At: at(1000), Pod: "a", IP: "10.244.0.5", Kind: timeline.Terminating},
		{At: at(1000), Pod: "b", IP: "10.244.0.50", Kind: timeline.Terminating},
		{At: at(2000), Pod: "c", IP: "10.244.0.7", Kind: timeline.Terminating}, // never listed: no drop
		{At: at(1500), Pod: "n", IP: "10.244.0.9", Kind: timeline.Ready},
	}, Servers: []Servers{
		{At: at(0), Active: []string{"10.244.0.5:80", "10.244.0.50:80"}},
		{At: at(2100), Active: []string{"10.244.0.50:80"}, Fenced: []string{"10.244.0.5:80"}}, // a fenced: dropped
		{At: at(3400), Active: []string{"10.244.0.9:80"}},                                     // b gone
	}}
	r.computeDrops()
	// 10.244.0.5 must not match 10.244.0.50 (prefix of the address, not of the IP).
	if got := r.Drops["a"]; got != 1100*time.Millisecond {
		t.Errorf("drop of a = %v, want 1.1s (fenced at 2.1 s, deleted at 1 s)", got)
	}
	if got := r.Drops["b"]; got != 2400*time.Millisecond {
		t.Errorf("drop of b = %v, want 2.4s", got)
	}
	if _, ok := r.Drops["c"]; ok || len(r.Drops) != 2 {
		t.Errorf("drops %v, want only a and b", r.Drops)
	}
	n := 0
	for _, e := range r.Events {
		if e.Kind == timeline.Dropped {
			n++
		}
	}
	if n != 2 || r.MaxDrop() != 2400*time.Millisecond {
		t.Errorf("%d Dropped events, max drop %v; want 2 and 2.4s", n, r.MaxDrop())
	}
}

func TestIngressTableCountsEveryFailureOnce(t *testing.T) {
	t0 := time.Now()
	rec := func(k loadgen.Kind, status int, reused bool, ms int) loadgen.Result {
		return loadgen.Result{Start: t0, End: t0.Add(time.Duration(ms) * time.Millisecond), Kind: k, Status: status, Reused: reused}
	}
	r := &IngressResult{Action: "rollout restart", Rollout: 7 * time.Second, Records: []loadgen.Result{
		rec(loadgen.OK, 200, false, 50), rec(loadgen.OK, 200, true, 100), rec(loadgen.OK, 200, false, 3000),
		rec(loadgen.Status5xx, 502, true, 10), rec(loadgen.Status5xx, 502, false, 10), rec(loadgen.Status5xx, 503, false, 10),
		rec(loadgen.Timeout, 0, false, 15000), rec(loadgen.Status4xx, 404, false, 1), rec(loadgen.Overload, 0, false, 0),
	}, Drops: map[string]time.Duration{"x": 2 * time.Second}}
	table := IngressTable(r)
	row := strings.Split(strings.TrimSpace(table), "\n")[2]
	want := "| without lastcall | rollout restart | 9 | 6 | 2 | 1 | 0 | 0 | 0 | 1 | 2 | 1 | 100ms | 3000ms | 7.0s | 2.0s |"
	if row != want {
		t.Errorf("row\n%s\nwant\n%s", row, want)
	}
	r.Records[6].Err = "read tcp 10.244.0.1:34842->10.244.0.4:8000: i/o timeout"
	r.Records = append(r.Records, loadgen.Result{Kind: loadgen.Timeout, Err: "read tcp 10.244.0.1:35000->10.244.0.4:8000: i/o timeout"})
	sum := strings.Join(r.FailureSummary(), "\n")
	if !strings.Contains(sum, "2 x timeout: read tcp 10.244.0.1->10.244.0.4:8000: i/o timeout") {
		t.Errorf("timeouts from two client ports not grouped:\n%s", sum)
	}
	if !strings.HasPrefix(sum, "2 x 502: ") || !strings.Contains(sum, "1 x 404: ") || !strings.Contains(sum, "1 x client-overload") {
		t.Errorf("summary:\n%s", sum)
	}
}
