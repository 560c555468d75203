package loadgen

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestCheckTarget(t *testing.T) {
	t.Parallel()
	podCIDR := []netip.Prefix{netip.MustParsePrefix("10.244.0.0/24")}
	cases := []struct {
		name, target string
		allowed      []netip.Prefix
		want         string // dial address, "" when refused
	}{
		{"IPv4 loopback is allowed", "127.0.0.1:80", nil, "127.0.0.1:80"},
		{"all of 127/8 is loopback", "127.3.4.5:8080", nil, "127.3.4.5:8080"},
		{"IPv6 loopback is allowed", "[::1]:80", nil, "[::1]:80"},
		{"IPv4-mapped loopback is unmapped", "[::ffff:127.0.0.1]:80", nil, "127.0.0.1:80"},
		{"localhost means 127.0.0.1 without resolving", "localhost:81", nil, "127.0.0.1:81"},
		{"an address in the allowed pod CIDR is allowed", "10.244.0.17:80", podCIDR, "10.244.0.17:80"},
		{"an address outside the allowed CIDR is refused", "10.244.1.17:80", podCIDR, ""},
		{"a private address is refused without an allowed CIDR", "10.244.0.17:80", nil, ""},
		{"a public address is refused", "8.8.8.8:53", podCIDR, ""},
		{"a hostname is refused, never resolved", "example.com:80", podCIDR, ""},
		{"a name that would resolve to loopback is still refused", "localhost.localdomain:80", nil, ""},
		{"the unspecified address is refused", "0.0.0.0:80", nil, ""},
		{"a missing port is refused", "127.0.0.1", nil, ""},
		{"port 0 is refused", "127.0.0.1:0", nil, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ap, err := CheckTarget(tc.target, tc.allowed)
			if tc.want == "" {
				if err == nil {
					t.Fatalf("CheckTarget(%q) = %v, want an error", tc.target, ap)
				}
				return
			}
			if err != nil {
				t.Fatalf("CheckTarget(%q): %v", tc.target, err)
			}
			if ap.String() != tc.want {
				t.Fatalf("CheckTarget(%q) = %s, want %s", tc.target, ap, tc.want)
			}
		})
	}
}

func TestRunRefusesForeignTarget(t *testing.T) {
	t.Parallel()
	_, err := Run(context.Background(), Config{Target: "192.0.2.1:80", Requests: 1})
	if !errors.Is(err, ErrTargetNotAllowed) {
		t.Fatalf("Run to 192.0.2.1 = %v, want ErrTargetNotAllowed", err)
	}
}

func TestRunCountsEveryOutcome(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/500":
			w.WriteHeader(http.StatusBadGateway)
		case "/hang":
			time.Sleep(2 * time.Second)
		case "/cut":
			// Hijack and close without a response: what nginx's fast shutdown looks like to a client.
			c, _, _ := w.(http.Hijacker).Hijack()
			c.Close()
		default:
			w.Write([]byte("ok"))
		}
	}))
	t.Cleanup(srv.Close)
	addr := strings.TrimPrefix(srv.URL, "http://")
	// A port nobody listens on: bind, learn the port, close.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := l.Addr().String()
	l.Close()

	cases := []struct {
		name string
		cfg  Config
		want Kind
		n    int
	}{
		{"keep-alive requests succeed on reused connections", Config{Target: addr, Path: "/", Clients: 2, Requests: 10, KeepAlive: true}, OK, 10},
		{"fresh connections succeed", Config{Target: addr, Path: "/", Clients: 3, Requests: 6}, OK, 6},
		{"a 502 is a status-5xx failure", Config{Target: addr, Path: "/500", Requests: 2}, Status5xx, 2},
		{"a closed port is connect-refused", Config{Target: refused, Requests: 3}, ConnectRefused, 3},
		{"a connection closed without response is eof", Config{Target: addr, Path: "/cut", Requests: 2, KeepAlive: true}, EOF, 2},
		{"a slow response is a timeout", Config{Target: addr, Path: "/hang", Requests: 1, Timeout: 200 * time.Millisecond}, Timeout, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rep, err := Run(context.Background(), tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Results) != tc.n || rep.Count(tc.want) != tc.n {
				t.Fatalf("got %s, want %d %s", rep.Summary(), tc.n, tc.want)
			}
			for _, r := range rep.Results {
				if r.End.Before(r.Start) {
					t.Fatalf("result ends before it starts: %+v", r)
				}
			}
		})
	}
	t.Run("keep-alive reuses connections", func(t *testing.T) {
		t.Parallel()
		rep, err := Run(context.Background(), Config{Target: addr, Requests: 5, KeepAlive: true})
		if err != nil {
			t.Fatal(err)
		}
		reused := 0
		for _, r := range rep.Results {
			if r.Reused {
				reused++
			}
		}
		if reused != 4 {
			t.Fatalf("%d of 5 sequential keep-alive requests reused a connection, want 4", reused)
		}
	})
	t.Run("duration bounds a run without a request count", func(t *testing.T) {
		t.Parallel()
		start := time.Now()
		rep, err := Run(context.Background(), Config{Target: addr, Clients: 2, Duration: 300 * time.Millisecond, KeepAlive: true})
		if err != nil {
			t.Fatal(err)
		}
		if el := time.Since(start); el > 2*time.Second || len(rep.Results) == 0 || rep.Count(OK) != len(rep.Results) {
			t.Fatalf("after %s: %s", el, rep.Summary())
		}
	})
}

func TestReportSplitsAroundASignal(t *testing.T) {
	t.Parallel()
	t0 := time.Now()
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	rep := &Report{Results: []Result{
		{Client: 0, Start: at(0), End: at(50), Kind: OK},       // done before the signal
		{Client: 1, Start: at(10), End: at(300), Kind: EOF},    // in flight
		{Client: 2, Start: at(90), End: at(150), Kind: OK},     // in flight
		{Client: 3, Start: at(100), End: at(120), Kind: Reset}, // new
		{Client: 4, Start: at(200), End: at(201), Kind: ConnectRefused},
	}}
	in, after := rep.InFlight(at(100)), rep.StartedAfter(at(100))
	if len(in.Results) != 2 || in.Count(EOF) != 1 || in.Count(OK) != 1 {
		t.Errorf("in flight at 100ms: %s, want 1 eof and 1 ok", in.Summary())
	}
	if len(after.Results) != 2 || after.Count(Reset) != 1 || after.Count(ConnectRefused) != 1 {
		t.Errorf("started after 100ms: %s, want 1 reset and 1 connect-refused", after.Summary())
	}
	if got, want := rep.Summary(), "5 requests: 1 connect-refused, 1 eof, 2 ok, 1 reset"; got != want {
		t.Errorf("Summary() = %q, want %q", got, want)
	}
	if n := len(rep.Failures()); n != 3 {
		t.Errorf("%d failures, want 3", n)
	}
}
