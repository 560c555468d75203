package shim

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lastcall-dev/lastcall/internal/loadgen"
)

const haproxyConfFmt = `global
  pidfile %[1]s/haproxy.pid
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend fe
  bind 127.0.0.1:%[2]d
  default_backend be
backend be
  server app %[3]s
`

// heldBackend is a loopback HTTP server that answers /fast at once and holds every other request until released:
// the slow upstream behind a proxy under test.
func heldBackend(t *testing.T) (addr string, running func() int, release func()) {
	t.Helper()
	var n atomic.Int32
	ch := make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(ch) }) }
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/fast" {
			n.Add(1)
			select {
			case <-ch:
			case <-time.After(2 * serveTimeout):
			}
		}
		fmt.Fprintln(w, "ok")
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(release) // before srv.Close, which waits for its handlers
	return strings.TrimPrefix(srv.URL, "http://"), func() int { return int(n.Load()) }, release
}

// haproxyServer is Debian's haproxy in master-worker mode in the foreground, as the official image runs it
// (`haproxy -W -db -f CFG`), in front of a held backend.
func haproxyServer(t *testing.T, hookArgs ...string) slowHTTP {
	t.Helper()
	tools := requireReal(t, "haproxy", "unshare", "nsenter")
	dir := t.TempDir()
	backend, running, release := heldBackend(t)
	port := freePort(t)
	cfg := filepath.Join(dir, "haproxy.cfg")
	writeFile(t, cfg, fmt.Sprintf(haproxyConfFmt, dir, port, backend))
	return slowHTTP{argv: []string{tools["haproxy"], "-W", "-db", "-f", cfg}, env: debianEnv(asShimEnv + "=1"),
		addr: fmt.Sprintf("127.0.0.1:%d", port), fast: "/fast", slow: "/slow", running: running, release: release, hookArgs: hookArgs}
}

// The haproxy profile: SIGUSR1 is the soft-stop. The listener is unbound at once, every in-flight request
// completes, and haproxy exits when the last one is done.
func TestServerHAProxyPrestopUsr1SoftStopKeepsInFlightRequests(t *testing.T) {
	t.Parallel()
	p := profile(t, "haproxy")
	r := runSlowHTTP(t, haproxyServer(t, prestopArgs(p.StopSignal, p.DrainTimeout)...), exitBound(p))
	t.Logf("haproxy %s: %s", p.StopSignal, r.summary())
	if ok := r.inflight.Count(loadgen.OK); ok != inflight {
		t.Errorf("%s: %d/%d in-flight requests succeeded (%s), want all", p.StopSignal, ok, inflight, r.inflight.Summary())
	}
	if !r.refused {
		t.Errorf("%s: a new connection was accepted after the signal, want refused (soft-stop unbinds)", p.StopSignal)
	}
	if !r.exitedSelf {
		t.Errorf("%s: haproxy still running %s after the signal", p.StopSignal, exitBound(p))
	}
}

// The baseline: the kubelet's SIGTERM is haproxy's hard stop; every in-flight request is cut.
func TestServerHAProxyBaselineTermCutsInFlightRequests(t *testing.T) {
	t.Parallel()
	r := runSlowHTTP(t, haproxyServer(t, prestopArgs("SIGTERM", 30*time.Second)...), 10*time.Second)
	t.Logf("haproxy SIGTERM: %s", r.summary())
	if ok := r.inflight.Count(loadgen.OK); ok != 0 {
		t.Errorf("SIGTERM: %d/%d in-flight requests succeeded (%s); want all cut, or the baseline proves nothing", ok, inflight, r.inflight.Summary())
	}
}
