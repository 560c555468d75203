package loadgen

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// slowServer answers /slow?ms=N after N ms and counts the requests and connections it saw.
type slowServer struct {
	addr             string
	requests, conns  atomic.Int64
	mu               sync.Mutex
	closeHeaderCount int
}

func newSlowServer(t *testing.T, status int) *slowServer {
	s := &slowServer{}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		if r.Close {
			s.mu.Lock()
			s.closeHeaderCount++
			s.mu.Unlock()
		}
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		time.Sleep(time.Duration(ms) * time.Millisecond)
		w.WriteHeader(status)
	})
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	s.addr = strings.TrimPrefix(srv.URL, "http://")
	return s
}

func TestOpenLoopKeepsTheArrivalRateWhateverTheServerTakes(t *testing.T) {
	t.Parallel()
	srv := newSlowServer(t, http.StatusOK)
	// Every request takes 400 ms: a closed-loop client with a few connections would need seconds for 60 of them;
	// arrivals at 200/s start within ~0.3 s regardless.
	const n, rate = 60, 200.0
	o, err := StartOpenLoop(context.Background(), OpenLoopConfig{Target: srv.addr, Rate: rate, Mix: Mix{{Name: "slow", Weight: 1, MinMs: 400, MaxMs: 400}},
		PathTemplate: "/slow?ms=%d", KeepAlive: 0.5, MaxRequests: n, MaxDuration: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	<-o.Done()
	res := o.Stop()
	if len(res) != n {
		t.Fatalf("%d results, want %d", len(res), n)
	}
	spread := res[n-1].Start.Sub(res[0].Start)
	if want := time.Duration(float64(n-1) / rate * float64(time.Second)); spread < want*8/10 || spread > want+300*time.Millisecond {
		t.Errorf("arrivals spread over %v, want about %v (open loop: independent of the 400 ms answers)", spread, want)
	}
	for _, r := range res {
		if r.Kind != OK || r.Status != http.StatusOK || r.Class != "slow" {
			t.Fatalf("result %+v, want ok 200 of class slow", r)
		}
	}
	if got := srv.requests.Load(); got != n {
		t.Errorf("the server saw %d requests, want exactly %d (never retried)", got, n)
	}
}

func TestOpenLoopMixesKeptAliveAndFreshConnections(t *testing.T) {
	t.Parallel()
	for _, share := range []float64{0, 0.5, 1} {
		t.Run("keep-alive share "+strconv.FormatFloat(share, 'f', -1, 64), func(t *testing.T) {
			t.Parallel()
			srv := newSlowServer(t, http.StatusOK)
			const n = 80
			o, err := StartOpenLoop(context.Background(), OpenLoopConfig{Target: srv.addr, Rate: 400, Mix: Mix{{Name: "short", Weight: 1, MinMs: 1, MaxMs: 5}},
				PathTemplate: "/slow?ms=%d", KeepAlive: share, MaxRequests: n, MaxDuration: 10 * time.Second, Seed: 7})
			if err != nil {
				t.Fatal(err)
			}
			<-o.Done()
			res := o.Stop()
			reused := 0
			for _, r := range res {
				if r.Kind != OK {
					t.Fatalf("result %+v, want ok", r)
				}
				if r.Reused {
					reused++
				}
			}
			srv.mu.Lock()
			closing := srv.closeHeaderCount
			srv.mu.Unlock()
			conns := int(srv.conns.Load())
			switch share {
			case 0:
				if reused != 0 || closing != n || conns != n {
					t.Errorf("share 0: %d reused, %d Connection: close, %d connections; want 0, %d, %d", reused, closing, conns, n, n)
				}
			case 1:
				if closing != 0 || reused < n/2 || conns != n-reused {
					t.Errorf("share 1: %d reused, %d Connection: close, %d connections; want most reused, none closing, connections = fresh requests", reused, closing, conns)
				}
			default:
				if reused == 0 || closing == 0 || closing == n || conns != n-reused {
					t.Errorf("share 0.5: %d reused, %d Connection: close, %d connections of %d requests; want both kinds", reused, closing, conns, n)
				}
			}
		})
	}
}

func TestOpenLoopRecordsTheStatusAndNeverRetries(t *testing.T) {
	t.Parallel()
	srv := newSlowServer(t, http.StatusBadGateway)
	o, err := StartOpenLoop(context.Background(), OpenLoopConfig{Target: srv.addr, Rate: 500, Mix: ShortAndSlow, PathTemplate: "/slow?ms=%d",
		KeepAlive: 0.5, MaxRequests: 20, MaxDuration: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	res := waitAll(o)
	if len(res) != 20 {
		t.Fatalf("%d results, want 20", len(res))
	}
	for _, r := range res {
		if r.Kind != Status5xx || r.Outcome() != "502" {
			t.Fatalf("result %+v (outcome %q), want status-5xx with outcome 502", r, r.Outcome())
		}
	}
	if got := srv.requests.Load(); got != 20 {
		t.Errorf("the server saw %d requests for 20 failures, want 20: a failure must never be retried", got)
	}
}

// waitAll waits for the bound and returns the results.
func waitAll(o *OpenLoop) []Result {
	<-o.Done()
	return o.Stop()
}

func TestOpenLoopBoundsAndOverload(t *testing.T) {
	t.Parallel()
	srv := newSlowServer(t, http.StatusOK)
	t.Run("MaxDuration stops the arrivals", func(t *testing.T) {
		t.Parallel()
		start := time.Now()
		o, err := StartOpenLoop(context.Background(), OpenLoopConfig{Target: srv.addr, Rate: 100, Mix: ShortAndSlow, PathTemplate: "/slow?ms=%d",
			MaxRequests: 100000, MaxDuration: 300 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		res := waitAll(o)
		if el := time.Since(start); el > 5*time.Second || len(res) > 40 || len(res) < 10 {
			t.Errorf("%d arrivals in %v with a 300 ms bound at 100/s", len(res), el)
		}
	})
	t.Run("arrivals beyond MaxInFlight are recorded, not queued", func(t *testing.T) {
		t.Parallel()
		o, err := StartOpenLoop(context.Background(), OpenLoopConfig{Target: srv.addr, Rate: 200, Mix: Mix{{Name: "slow", Weight: 1, MinMs: 500, MaxMs: 500}},
			PathTemplate: "/slow?ms=%d", MaxRequests: 10, MaxDuration: 10 * time.Second, MaxInFlight: 2})
		if err != nil {
			t.Fatal(err)
		}
		res := waitAll(o)
		over := 0
		for _, r := range res {
			if r.Kind == Overload {
				over++
			}
		}
		if len(res) != 10 || over != 8 {
			t.Errorf("%d results, %d overload; want 10 and 8 (2 in flight for the whole 50 ms of arrivals)", len(res), over)
		}
	})
	t.Run("Stop ends a run early and waits for the requests in flight", func(t *testing.T) {
		t.Parallel()
		o, err := StartOpenLoop(context.Background(), OpenLoopConfig{Target: srv.addr, Rate: 50, Mix: Mix{{Name: "slow", Weight: 1, MinMs: 300, MaxMs: 300}},
			PathTemplate: "/slow?ms=%d", MaxRequests: 1000, MaxDuration: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
		res := o.Stop()
		if len(res) == 0 || len(res) != o.Issued() || len(res) > 20 {
			t.Fatalf("%d results for %d issued after 200 ms at 50/s", len(res), o.Issued())
		}
		for _, r := range res {
			if r.Kind != OK {
				t.Fatalf("in-flight request not finished by Stop: %+v", r)
			}
		}
	})
}

func TestOpenLoopRefusesBadConfig(t *testing.T) {
	t.Parallel()
	ok := OpenLoopConfig{Target: "127.0.0.1:1", Rate: 1, Mix: ShortAndSlow, PathTemplate: "/slow?ms=%d", MaxRequests: 1, MaxDuration: time.Second}
	cases := []struct {
		name string
		edit func(*OpenLoopConfig)
	}{
		{"a target outside loopback and the allowed networks", func(c *OpenLoopConfig) { c.Target = "192.0.2.1:80" }},
		{"a host name", func(c *OpenLoopConfig) { c.Target = "example.com:80" }},
		{"no rate", func(c *OpenLoopConfig) { c.Rate = 0 }},
		{"no request bound", func(c *OpenLoopConfig) { c.MaxRequests = 0 }},
		{"no duration bound", func(c *OpenLoopConfig) { c.MaxDuration = 0 }},
		{"a keep-alive share above 1", func(c *OpenLoopConfig) { c.KeepAlive = 1.5 }},
		{"an empty mix", func(c *OpenLoopConfig) { c.Mix = nil }},
		{"a class with max below min", func(c *OpenLoopConfig) { c.Mix = Mix{{Name: "x", Weight: 1, MinMs: 5, MaxMs: 1}} }},
		{"a path without the duration", func(c *OpenLoopConfig) { c.PathTemplate = "/slow" }},
		{"a path with two verbs", func(c *OpenLoopConfig) { c.PathTemplate = "/slow?ms=%d&x=%s" }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := ok
			tc.edit(&c)
			if o, err := StartOpenLoop(context.Background(), c); err == nil {
				o.Stop()
				t.Fatalf("StartOpenLoop(%+v) started, want an error", c)
			}
		})
	}
	_, err := StartOpenLoop(context.Background(), OpenLoopConfig{Target: "10.9.9.9:80", Rate: 1, Mix: ShortAndSlow, PathTemplate: "/%d", MaxRequests: 1, MaxDuration: time.Second})
	if !errors.Is(err, ErrTargetNotAllowed) {
		t.Errorf("a pod IP without its allowed network: %v, want ErrTargetNotAllowed", err)
	}
}

func TestShortAndSlowMix(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	counts := map[string]int{}
	const n = 10000
	for range n {
		class, ms := ShortAndSlow.pick(r)
		counts[class]++
		switch class {
		case "short":
			if ms < 20 || ms > 100 {
				t.Fatalf("short request of %d ms", ms)
			}
		case "slow":
			if ms < 1000 || ms > 3000 {
				t.Fatalf("slow request of %d ms", ms)
			}
		default:
			t.Fatalf("class %q", class)
		}
	}
	if s := counts["slow"]; s < n*18/100 || s > n*22/100 {
		t.Errorf("%d of %d slow, want about 20%%", s, n)
	}
}

func TestOutcome(t *testing.T) {
	t.Parallel()
	cases := []struct {
		r    Result
		want string
	}{
		{Result{Kind: OK, Status: 200}, "ok"},
		{Result{Kind: Status5xx, Status: 503}, "503"},
		{Result{Kind: Status5xx, Status: 504}, "504"},
		{Result{Kind: Status4xx, Status: 404}, "404"},
		{Result{Kind: Reset}, "reset"},
		{Result{Kind: EOF, Status: 200}, "eof"}, // a body cut short after the status line
		{Result{Kind: Timeout}, "timeout"},
	}
	for _, tc := range cases {
		if got := tc.r.Outcome(); got != tc.want {
			t.Errorf("Outcome(%+v) = %q, want %q", tc.r, got, tc.want)
		}
	}
}
