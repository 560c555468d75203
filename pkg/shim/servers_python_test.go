package shim

import (
	"fmt"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lastcall-dev/lastcall/internal/loadgen"
	"github.com/lastcall-dev/lastcall/pkg/profiles"
)

// The slow handlers poll for the release file (never one long sleep: a signal could cut a sleep short and make
// a broken shutdown look graceful) and leave a marker when they start.
const (
	wsgiApp = `import os, time
MARKERS, RELEASE = os.environ["LASTCALL_MARKERS"], os.environ["LASTCALL_RELEASE"]

def app(environ, start_response):
    if environ["PATH_INFO"] == "/slow":
        open(os.path.join(MARKERS, "%d-%f" % (os.getpid(), time.time())), "w").close()
        end = time.time() + 30
        while not os.path.exists(RELEASE) and time.time() < end:
            time.sleep(0.05)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok\n"]
`
	asgiApp = `import asyncio, os, time
MARKERS, RELEASE = os.environ["LASTCALL_MARKERS"], os.environ["LASTCALL_RELEASE"]

async def app(scope, receive, send):
    if scope["path"] == "/slow":
        open(os.path.join(MARKERS, "%d-%f" % (os.getpid(), time.time())), "w").close()
        end = time.time() + 30
        while not os.path.exists(RELEASE) and time.time() < end:
            await asyncio.sleep(0.05)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok\n"})
`
)

// pythonServer writes app.py (src) and returns a slowHTTP for argv, which must serve app:app from dir.
func pythonServer(t *testing.T, src string, argv func(dir string, port int) []string, hookArgs ...string) slowHTTP {
	t.Helper()
	dir := t.TempDir()
	port := freePort(t)
	writeFile(t, filepath.Join(dir, "app.py"), src)
	markers, release := filepath.Join(dir, "markers"), filepath.Join(dir, "release")
	running := markerCounter(t, markers)
	env := debianEnv(asShimEnv+"=1", "LASTCALL_MARKERS="+markers, "LASTCALL_RELEASE="+release)
	return slowHTTP{argv: argv(dir, port), env: env, addr: fmt.Sprintf("127.0.0.1:%d", port), fast: "/fast", slow: "/slow",
		running: running, release: releaseFile(release), hookArgs: hookArgs}
}

// gunicornServer is Debian's gunicorn with sync workers, one more than the slow requests, and the graceful
// timeout set to the profile's drain timeout (gunicorn's own default is the same 30 s).
func gunicornServer(t *testing.T, p *profiles.Profile, hookArgs ...string) slowHTTP {
	t.Helper()
	tools := requireReal(t, "gunicorn", "unshare", "nsenter")
	requirePython(t, "gunicorn")
	return pythonServer(t, wsgiApp, func(dir string, port int) []string {
		return []string{tools["gunicorn"], "--bind", fmt.Sprintf("127.0.0.1:%d", port), "--workers", strconv.Itoa(inflight + 1),
			"--graceful-timeout", strconv.Itoa(int(p.DrainTimeout.Seconds())), "--chdir", dir, "app:app"}
	}, hookArgs...)
}

// uvicornServer is Debian's uvicorn (0.17.6: no --timeout-graceful-shutdown) run as `python3 -m uvicorn`.
func uvicornServer(t *testing.T, hookArgs ...string) slowHTTP {
	t.Helper()
	requireReal(t, "unshare", "nsenter")
	requirePython(t, "uvicorn")
	return pythonServer(t, asgiApp, func(dir string, port int) []string {
		return []string{debianPython, "-m", "uvicorn", "--host", "127.0.0.1", "--port", strconv.Itoa(port), "--lifespan", "off",
			"--app-dir", dir, "app:app"}
	}, hookArgs...)
}

// checkGraceful asserts a profile's run: all in-flight requests served, every request during the drain delay
// served, the server gone by itself within the profile's timeout, and (when wantRefused) the listener closed.
func checkGraceful(t *testing.T, name string, p *profiles.Profile, r httpResult, wantRefused bool) {
	t.Helper()
	t.Logf("%s %s: %s", name, p.StopSignal, r.summary())
	if ok := r.inflight.Count(loadgen.OK); ok != inflight {
		t.Errorf("%s %s: %d/%d in-flight requests succeeded (%s), want all", name, p.StopSignal, ok, inflight, r.inflight.Summary())
	}
	if r.duringDelay != nil && (len(r.duringDelay.Results) < 3 || r.duringDelay.Count(loadgen.OK) != len(r.duringDelay.Results)) {
		t.Errorf("%s: requests during the drain delay: %s; want at least 3, all served", name, r.duringDelay.Summary())
	}
	if wantRefused && !r.refused {
		t.Errorf("%s %s: a new connection was accepted after the signal, want refused (the listener is closed)", name, p.StopSignal)
	}
	if !r.exitedSelf {
		t.Errorf("%s %s: still running %s after the signal", name, p.StopSignal, exitBound(p))
	}
}

func checkLost(t *testing.T, name, sig string, r httpResult) {
	t.Helper()
	t.Logf("%s %s: %s", name, sig, r.summary())
	if ok := r.inflight.Count(loadgen.OK); ok != 0 {
		t.Errorf("%s %s: %d/%d in-flight requests succeeded (%s); want all lost, or the baseline proves nothing", name, sig, ok, inflight, r.inflight.Summary())
	}
}

// The gunicorn profile: SIGTERM is gunicorn's graceful shutdown: the arbiter closes the listener, the workers
// finish their requests (within --graceful-timeout) and exit.
func TestServerGunicornPrestopTermKeepsInFlightRequests(t *testing.T) {
	t.Parallel()
	p := profile(t, "gunicorn")
	// Not asserted: refused new connections. Busy sync workers keep the listening socket open until they exit,
	// so a new connection lands in the backlog and is reset when the last worker exits (a documented caveat);
	// the drain delay is what keeps new connections away.
	checkGraceful(t, "gunicorn", p, runSlowHTTP(t, gunicornServer(t, p, prestopArgs(p.StopSignal, p.DrainTimeout)...), exitBound(p)), false)
}

// The baseline: SIGQUIT and SIGINT are gunicorn's quick shutdown (what an image's STOPSIGNAL SIGQUIT, copied from
// nginx's, gives): every in-flight request is cut.
func TestServerGunicornBaselineQuitCutsInFlightRequests(t *testing.T) {
	t.Parallel()
	p := profile(t, "gunicorn")
	checkLost(t, "gunicorn", "SIGQUIT", runSlowHTTP(t, gunicornServer(t, p, prestopArgs("SIGQUIT", 30*time.Second)...), 10*time.Second))
}

// The uvicorn profile: SIGTERM closes the listener and waits for the open requests. uvicorn 0.17.6 (Debian 12)
// has no --timeout-graceful-shutdown: it waits for as long as they take, so the pod's grace period is the bound.
func TestServerUvicornPrestopTermKeepsInFlightRequests(t *testing.T) {
	t.Parallel()
	p := profile(t, "uvicorn")
	checkGraceful(t, "uvicorn", p, runSlowHTTP(t, uvicornServer(t, prestopArgs(p.StopSignal, p.DrainTimeout)...), exitBound(p)), true)
}

// The baseline: without lastcall the kubelet sends SIGTERM at once, while endpoints still route new connections
// to the pod. uvicorn drains its in-flight requests, but closes its listener at once: the new connections of the
// next seconds are refused. That is the work the profile's drain delay saves (see the profile run: every request
// during the delay is served).
func TestServerUvicornBaselineTermWithoutDelayRefusesNewConnections(t *testing.T) {
	t.Parallel()
	srv := uvicornServer(t)
	srv.signal = func(ns *nsProc) { unix.Kill(ns.pid, unix.SIGTERM) }
	r := runSlowHTTP(t, srv, 10*time.Second)
	t.Logf("uvicorn SIGTERM without delay: %s", r.summary())
	if !r.refused {
		t.Errorf("a new connection 300ms after SIGTERM was accepted; want refused, or the baseline proves nothing")
	}
}
