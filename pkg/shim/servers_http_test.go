package shim

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// asHTTPEnv makes the test binary our own generic HTTP server (the http profile's model: a Go net/http server
// that calls Shutdown on SIGTERM) listening on the variable's address.
const asHTTPEnv = "LASTCALL_SHIM_TEST_AS_HTTP"

// serveHTTPUntilTerm serves /fast at once and holds other paths until LASTCALL_RELEASE exists; on SIGTERM it
// closes its listener and waits for the open requests (http.Server.Shutdown), then exits 0.
func serveHTTPUntilTerm(addr string) int {
	markers, release := os.Getenv("LASTCALL_MARKERS"), os.Getenv("LASTCALL_RELEASE")
	srv := &http.Server{Addr: addr, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/fast" {
			os.WriteFile(filepath.Join(markers, fmt.Sprint(time.Now().UnixNano())), nil, 0o644)
			for end := time.Now().Add(30 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
				if _, err := os.Stat(release); err == nil {
					break
				}
			}
		}
		fmt.Fprintln(w, "ok")
	})}
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	go func() {
		<-term
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		srv.Shutdown(ctx)
	}()
	if err := srv.ListenAndServe(); err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// ListenAndServe returns as soon as Shutdown starts; wait for it to finish the open requests.
	for range 600 {
		time.Sleep(100 * time.Millisecond)
		if srv.Shutdown(context.Background()) == nil {
			return 0
		}
	}
	return 1
}

func httpServer(t *testing.T, hookArgs ...string) slowHTTP {
	t.Helper()
	requireReal(t, "unshare", "nsenter")
	dir := t.TempDir()
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	markers, release := filepath.Join(dir, "markers"), filepath.Join(dir, "release")
	running := markerCounter(t, markers)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), asShimEnv+"=1", "LASTCALL_MARKERS="+markers, "LASTCALL_RELEASE="+release)
	return slowHTTP{argv: []string{"env", asHTTPEnv + "=" + addr, exe}, env: env, addr: addr, fast: "/fast", slow: "/slow",
		running: running, release: releaseFile(release), hookArgs: hookArgs}
}

// The http profile (the cluster default) on our own Go server: SIGTERM after the drain delay. Requests during the
// delay are served, in-flight requests complete, the listener closes, and the server exits by itself.
func TestServerHTTPGoPrestopTermDrains(t *testing.T) {
	t.Parallel()
	p := profile(t, "http")
	checkGraceful(t, "http (Go net/http)", p, runSlowHTTP(t, httpServer(t, prestopArgs(p.StopSignal, p.DrainTimeout)...), exitBound(p)), true)
}

// The baseline: the kubelet's SIGTERM with no delay closes the listener while endpoints still route new
// connections to the pod: they are refused.
func TestServerHTTPGoBaselineTermWithoutDelayRefusesNewConnections(t *testing.T) {
	t.Parallel()
	srv := httpServer(t)
	srv.signal = func(ns *nsProc) { unix.Kill(ns.pid, unix.SIGTERM) }
	r := runSlowHTTP(t, srv, 10*time.Second)
	t.Logf("http SIGTERM without delay: %s", r.summary())
	if !r.refused {
		t.Errorf("a new connection 300ms after SIGTERM was accepted; want refused, or the baseline proves nothing")
	}
}
