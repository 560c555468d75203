package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// pairOnOnePort starts two HTTP servers on 127.0.0.1:P and 127.0.0.2:P (a balanced load has one port for all
// endpoints) and returns them with P. Each counts its open connections.
func pairOnOnePort(t *testing.T, h http.Handler) (a, b *countingServer, port int) {
	t.Helper()
	for range 20 {
		la, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port = la.Addr().(*net.TCPAddr).Port
		lb, err := net.Listen("tcp", net.JoinHostPort("127.0.0.2", strconv.Itoa(port)))
		if err != nil {
			la.Close()
			continue
		}
		return serve(t, la, h), serve(t, lb, h), port
	}
	t.Fatal("no port free on both 127.0.0.1 and 127.0.0.2")
	return nil, nil, 0
}

type countingServer struct {
	srv  *http.Server
	open atomic.Int64
}

func serve(t *testing.T, l net.Listener, h http.Handler) *countingServer {
	cs := &countingServer{}
	cs.srv = &http.Server{Handler: h, ConnState: func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			cs.open.Add(1)
		case http.StateClosed, http.StateHijacked:
			cs.open.Add(-1)
		}
	}}
	go cs.srv.Serve(l)
	t.Cleanup(func() { cs.srv.Close() })
	return cs
}

func byIP(recs []Record) map[string][]Record {
	m := map[string][]Record{}
	for _, r := range recs {
		m[r.IP] = append(m[r.IP], r)
	}
	return m
}

// What an ingress with upstream keep-alive does when an endpoint leaves the Service: new requests go to the
// others, and its idle connections to the old endpoint are closed rather than reused. Then even an abrupt stop
// of that endpoint fails nothing. The control below shows that the same abrupt stop does fail requests when
// the endpoint is still a target.
func TestBalancedStopsUsingARemovedEndpoint(t *testing.T) {
	t.Parallel()
	a, b, port := pairOnOnePort(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		time.Sleep(20 * time.Millisecond)
		w.Write([]byte("ok"))
	}))
	eps := &Static{}
	eps.Set(Target{IP: "127.0.0.1", Pod: "a"}, Target{IP: "127.0.0.2", Pod: "b"})
	load, err := StartBalanced(context.Background(), eps, BalancedConfig{
		Port: port, Clients: 4, KeepAliveClients: 2, Timeout: 2 * time.Second, MaxRequests: 5000, MaxDuration: 20 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	removed := time.Now()
	eps.Set(Target{IP: "127.0.0.1", Pod: "a"})
	deadline := time.Now().Add(2 * time.Second)
	for b.open.Load() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := b.open.Load(); n != 0 {
		t.Errorf("%d connections to the removed endpoint still open 2 s after its removal", n)
	}
	b.srv.Close() // the endpoint goes away abruptly
	time.Sleep(200 * time.Millisecond)
	recs, err := load.Stop()
	if err != nil {
		t.Fatal(err)
	}
	per := byIP(recs)
	if len(per["127.0.0.1"]) < 10 || len(per["127.0.0.2"]) < 5 {
		t.Fatalf("requests per endpoint: a %d, b %d; want both used before the removal", len(per["127.0.0.1"]), len(per["127.0.0.2"]))
	}
	reused, fresh := 0, 0
	for _, r := range recs {
		if r.Kind != OK {
			t.Errorf("request to %s (client %d, reused %v) failed: %s %s", r.IP, r.Client, r.Reused, r.Kind, r.Err)
		}
		if r.IP == "127.0.0.2" && r.Start.After(removed.Add(100*time.Millisecond)) {
			t.Errorf("request to the removed endpoint started %v after its removal", r.Start.Sub(removed))
		}
		switch {
		case r.Client < 2 && r.Reused:
			reused++
		case r.Client >= 2 && r.Reused:
			t.Errorf("client %d opens a fresh connection per request but one was reused", r.Client)
		case r.Client >= 2:
			fresh++
		}
	}
	if reused == 0 || fresh == 0 {
		t.Errorf("%d requests on kept-alive connections and %d on fresh ones; want both kinds", reused, fresh)
	}
	if a.open.Load() < 0 {
		t.Error("connection accounting broke")
	}

	// Control: the abrupt stop of an endpoint that is still a target fails requests, and the load records them.
	c, d, port2 := pairOnOnePort(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		time.Sleep(100 * time.Millisecond)
		w.Write([]byte("ok"))
	}))
	_ = c
	eps2 := &Static{}
	eps2.Set(Target{IP: "127.0.0.1"}, Target{IP: "127.0.0.2"})
	load2, err := StartBalanced(context.Background(), eps2, BalancedConfig{
		Port: port2, Clients: 4, KeepAliveClients: 2, Timeout: 2 * time.Second, MaxRequests: 5000, MaxDuration: 20 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	d.srv.Close()
	time.Sleep(300 * time.Millisecond)
	recs2, err := load2.Stop()
	if err != nil {
		t.Fatal(err)
	}
	failed := 0
	for _, r := range recs2 {
		if r.Kind != OK {
			failed++
			if r.IP != "127.0.0.2" {
				t.Errorf("a request to the endpoint that stayed up failed: %+v", r)
			}
		}
	}
	if failed == 0 {
		t.Errorf("control: stopping a live endpoint abruptly failed none of %d requests; the load would not see the problem", len(recs2))
	}
}

// A kept-alive connection the server closed after its response is a recorded failure of the next request on
// it (Reused), never a silent retry: that is the race nginx's graceful shutdown has with keep-alive clients.
func TestBalancedReusedConnectionClosedByServerIsAFailure(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	var requests atomic.Int64
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				if _, err := http.ReadRequest(br); err != nil {
					return
				}
				requests.Add(1)
				// A keep-alive response, then the server closes: an idle connection closed on shutdown.
				c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
			}()
		}
	}()
	eps := &Static{}
	eps.Set(Target{IP: "127.0.0.1"})
	port := l.Addr().(*net.TCPAddr).Port
	load, err := StartBalanced(context.Background(), eps, BalancedConfig{
		Port: port, Clients: 1, KeepAliveClients: 1, Path: func() string { time.Sleep(50 * time.Millisecond); return "/" },
		Timeout: 2 * time.Second, MaxRequests: 4, MaxDuration: 10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	<-load.Done()
	recs, err := load.Stop()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 4 {
		t.Fatalf("%d records, want 4", len(recs))
	}
	// ok (new), failure (reused, closed), ok (new again), failure (reused).
	for i, r := range recs {
		wantOK := i%2 == 0
		if (r.Kind == OK) != wantOK || r.Reused == wantOK {
			t.Errorf("request %d: %s reused=%v (%s); want ok=%v reused=%v", i, r.Kind, r.Reused, r.Err, wantOK, !wantOK)
		}
		if !wantOK && r.Kind != EOF && r.Kind != Reset {
			t.Errorf("request %d on a closed connection: kind %s, want eof or reset", i, r.Kind)
		}
	}
	if n := requests.Load(); n != 2 {
		t.Errorf("the server answered %d requests, want 2: a failed request must not be retried", n)
	}
}

func TestBalancedRefusesForeignTargets(t *testing.T) {
	t.Parallel()
	eps := &Static{}
	eps.Set(Target{IP: "192.0.2.1", Pod: "elsewhere"})
	load, err := StartBalanced(context.Background(), eps, BalancedConfig{Port: 80, MaxRequests: 10, MaxDuration: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	<-load.Done() // the refused target stops the load by itself
	recs, err := load.Stop()
	if !errors.Is(err, ErrTargetNotAllowed) {
		t.Fatalf("Stop() error = %v, want ErrTargetNotAllowed", err)
	}
	if len(recs) != 0 {
		t.Fatalf("%d requests were sent to a refused target", len(recs))
	}
	if _, err := StartBalanced(context.Background(), eps, BalancedConfig{Port: 80}); err == nil {
		t.Fatal("an unbounded load was started")
	}
}

func TestStreamRoundTrip(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	w := NewStreamWriter(&buf)
	now := time.Now().UTC().Round(time.Microsecond)
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.Write(Event{Type: EventRecord, Record: &Record{Result: Result{Client: i, Start: now, End: now.Add(time.Second), Kind: Reset, Err: "x"}, Target: Target{IP: "10.244.0.9", Pod: "web-1"}}})
		}()
	}
	wg.Wait()
	w.Write(Event{Type: EventChange, Change: &Change{At: now, Targets: []Target{{IP: "10.244.0.9"}}}})
	w.Write(Event{Type: EventDone})
	var got []Event
	if err := ReadStream(bytes.NewReader(buf.Bytes()), func(e Event) { got = append(got, e) }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 52 || got[51].Requests != 50 {
		t.Fatalf("read %d events (done says %d records), want 52 and 50", len(got), got[len(got)-1].Requests)
	}
	r := got[0].Record
	if r.Kind != Reset || r.IP != "10.244.0.9" || r.Pod != "web-1" || !r.Start.Equal(now) || r.End.Sub(r.Start) != time.Second {
		t.Fatalf("record did not survive the round trip: %+v", r)
	}

	lines := strings.SplitAfter(buf.String(), "\n")
	for _, c := range []struct {
		name, stream, want string
	}{
		{"a lost record line", strings.Join(append(lines[1:51:51], lines[51:]...), ""), "done says 50 records, 49 were read"},
		{"no done event", strings.Join(lines[:51], ""), "without a done event"},
		{"a line that is not an event", "hello\n", "line 1: not an event"},
		{"an error event", `{"type":"error","error":"no endpoints"}` + "\n", "load stopped: no endpoints"},
		{"an unknown type", `{"type":"nope"}` + "\n", `unknown event type "nope"`},
	} {
		err := ReadStream(strings.NewReader(c.stream), func(Event) {})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: ReadStream() = %v, want an error containing %q", c.name, err, c.want)
		}
	}
}
