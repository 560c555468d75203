package shim

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lastcall-dev/lastcall/internal/loadgen"
)

const (
	inflight     = 6                      // K requests in flight when the signal arrives
	releaseAfter = 500 * time.Millisecond // in-flight requests end this long after the signal
	drainDelay   = 1 * time.Second        // prestop --delay
	serveTimeout = 15 * time.Second       // per request bound for the load generator
	hookBound    = 20 * time.Second       // the longest any hook in these tests may run
	readyBound   = 10 * time.Second       // server start-up
	nginxConfFmt = `daemon off;
master_process on;
worker_processes 2;
user root;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log info;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  server {
    listen 127.0.0.1:%[2]d;
    location = /fast { return 200 "fast\n"; }
    location / { proxy_pass http://%[3]s; proxy_read_timeout 30s; }
  }
}
`
)

// nginxResult is what one nginx shutdown run measured.
type nginxResult struct {
	inflight     *loadgen.Report // the K slow requests started before the signal
	duringDelay  *loadgen.Report // fresh requests sent during the drain delay
	hook         *hookRun
	lastResponse time.Time // end of the last in-flight request
	nginxExit    time.Time
}

// nginxServer is nginx, PID 1 of its own PID namespace, in front of a loopback upstream that holds every
// request until released, so requests are in flight when a signal arrives however slowly this machine starts
// the hook.
type nginxServer struct {
	ns      *nsProc
	target  string
	release func()
	slow    chan *loadgen.Report // the K slow requests, once they all ended
}

// startNginx starts nginx (wrapped by wrapper, e.g. `lastcall-shim run`, when given) and puts K requests in flight.
func startNginx(t *testing.T, env []string, wrapper ...string) *nginxServer {
	tools := requireReal(t, "nginx", "unshare", "nsenter")
	dir := t.TempDir()
	var started atomic.Int32
	release := make(chan struct{})
	var releaseOnce sync.Once
	srv := &nginxServer{release: func() { releaseOnce.Do(func() { close(release) }) }, slow: make(chan *loadgen.Report, 1)}
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started.Add(1)
		select {
		case <-release:
		case <-time.After(serveTimeout):
		}
		fmt.Fprintln(w, "slow")
	}))
	t.Cleanup(upstream.Close)
	t.Cleanup(srv.release) // before upstream.Close, which waits for its handlers
	port := freePort(t)
	conf := filepath.Join(dir, "nginx.conf")
	writeFile(t, conf, fmt.Sprintf(nginxConfFmt, dir, port, strings.TrimPrefix(upstream.URL, "http://")))
	argv := append(append([]string{}, wrapper...), tools["nginx"], "-e", filepath.Join(dir, "error.log"), "-p", dir, "-c", conf)
	srv.ns = startInPIDNS(t, env, argv...)
	srv.target = fmt.Sprintf("127.0.0.1:%d", port)
	waitFor(t, readyBound, "nginx to serve", func() bool {
		rep, err := loadgen.Run(context.Background(), loadgen.Config{Target: srv.target, Path: "/fast", Requests: 1, Timeout: time.Second})
		return err == nil && rep.Count(loadgen.OK) == 1
	})
	go func() {
		rep, err := loadgen.Run(context.Background(), loadgen.Config{Target: srv.target, Path: "/slow", Clients: inflight, Requests: inflight, Timeout: serveTimeout})
		if err != nil {
			t.Error(err)
		}
		srv.slow <- rep
	}()
	waitFor(t, 5*time.Second, fmt.Sprintf("%d requests in flight at the upstream", inflight), func() bool { return started.Load() == inflight })
	return srv
}

// runNginxShutdown puts K requests in flight at nginx and runs `lastcall-shim prestop --target auto` inside its
// namespace as the kubelet would.
func runNginxShutdown(t *testing.T, signal string) nginxResult {
	srv := startNginx(t, os.Environ())
	ns, target, releaseAll := srv.ns, srv.target, srv.release
	hook := startHook(t, ns.nsenter(shimArgv(t, "prestop", "--delay", drainDelay.String(), "--signal", signal, "--timeout", "10s")...))
	afterSignal(hook, releaseAfter, releaseAll)
	// New connections during the delay must still be served: endpoints may still send traffic then. A few
	// requests every 100ms cover the delay without hogging the CPU; only those sent before the signal count.
	during := &loadgen.Report{}
	for range 8 {
		rep, err := loadgen.Run(context.Background(), loadgen.Config{Target: target, Path: "/fast", Requests: 3, Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		during.Results = append(during.Results, rep.Results...)
		time.Sleep(100 * time.Millisecond)
	}
	hook.wait(t, hookBound)
	if !ns.exitedWithin(5 * time.Second) {
		t.Fatalf("nginx still running 5s after the hook returned; hook stdout:\n%s", hook.stdout)
	}
	res := nginxResult{inflight: <-srv.slow, hook: hook, nginxExit: ns.exited}
	res.duringDelay = &loadgen.Report{}
	for _, r := range during.Results {
		if r.End.Before(hook.stdout.signalled()) {
			res.duringDelay.Results = append(res.duringDelay.Results, r)
		}
	}
	sig := hook.stdout.signalled()
	if sig.IsZero() {
		t.Fatalf("the hook never printed its signal line; stdout:\n%s", hook.stdout)
	}
	// The upstream holds every slow request until after the signal, so one that started before it was in flight;
	// its end is not compared with the signal line: SIGTERM cuts it within a millisecond, and the hook's stdout
	// may reach the test later than that on a busy machine.
	started := 0
	for _, r := range res.inflight.Results {
		if r.Start.Before(sig) {
			started++
		}
	}
	if n := started; n != inflight {
		t.Fatalf("only %d of %d slow requests were in flight at the signal: the test proves nothing", n, inflight)
	}
	for _, r := range res.inflight.Results {
		if r.End.After(res.lastResponse) {
			res.lastResponse = r.End
		}
	}
	t.Logf("%s: in-flight %s; during the delay %s; nginx exited ~%s after the signal; hook %s, output:\n%s%s", signal,
		res.inflight.Summary(), res.duringDelay.Summary(), ns.exited.Sub(hook.stdout.signalled()).Round(time.Millisecond),
		hook.status(), hook.stdout, hook.stderr)
	return res
}

// checkHookOutput asserts the hook's promise: the "expected failure" line, and that it did not return before
// nginx was done (with PID 1 as target the kernel kills the hook when nginx exits: "signal SIGKILL" is fine).
func checkHookOutput(t *testing.T, r nginxResult, sig string) {
	t.Helper()
	want := fmt.Sprintf("lastcall: %s sent to nginx (pid 1) after %s; the kubelet reports this hook as failed when nginx exits: expected\n", sig, drainDelay)
	if !strings.Contains(r.hook.stdout.String(), want) {
		t.Errorf("hook stdout lacks %q:\n%s", want, r.hook.stdout)
	}
	if st := r.hook.status(); st != "exit 0" && st != "signal SIGKILL" {
		t.Errorf("hook ended with %s, want exit 0 or SIGKILL when PID 1 exits; stderr:\n%s", st, r.hook.stderr)
	}
	// nginx writes the last response and exits; the client may record its end a moment after the hook (killed
	// with the namespace) was reaped, so only an early return by more than scheduling noise counts.
	if r.hook.ended.Before(r.lastResponse.Add(-100 * time.Millisecond)) {
		t.Errorf("hook returned at %s, before nginx answered its last in-flight request at %s", r.hook.ended.Format(time.StampMilli), r.lastResponse.Format(time.StampMilli))
	}
	if d := r.nginxExit.Sub(r.hook.ended); d > 500*time.Millisecond {
		t.Errorf("nginx exited %s after the hook returned: the hook must wait for the exit", d)
	}
	if n := r.duringDelay.Count(loadgen.OK); n < 6 || n != len(r.duringDelay.Results) {
		t.Errorf("requests during the drain delay: %s; want at least 6, all served", r.duringDelay.Summary())
	}
}

func TestNginxPrestopQuitKeepsInFlightRequests(t *testing.T) {
	t.Parallel()
	r := runNginxShutdown(t, "QUIT")
	checkHookOutput(t, r, "SIGQUIT")
	if ok := r.inflight.Count(loadgen.OK); ok != inflight {
		t.Errorf("SIGQUIT: %d/%d in-flight requests succeeded (%s), want all", ok, inflight, r.inflight.Summary())
	}
}

func TestNginxPrestopTermDropsInFlightRequests(t *testing.T) {
	t.Parallel()
	r := runNginxShutdown(t, "SIGTERM")
	checkHookOutput(t, r, "SIGTERM")
	// SIGTERM is nginx's fast shutdown: the connections of in-flight requests are closed without a response.
	if failed := len(r.inflight.Failures()); failed < inflight/2 {
		t.Errorf("SIGTERM: only %d/%d in-flight requests failed (%s); nginx's fast shutdown should cut them", failed, inflight, r.inflight.Summary())
	}
}

// The other rendering: `lastcall-shim run --rewrite TERM=QUIT` as PID 1 turns the kubelet's SIGTERM into
// nginx's graceful stop, so no exec hook (and no FailedPreStopHook event) is needed.
func TestRunRewriteMakesNginxStopGracefully(t *testing.T) {
	t.Parallel()
	srv := startNginx(t, shimEnv(), shimArgv(t, "run", "--rewrite", "TERM=QUIT", "--")...)
	sent := time.Now()
	if err := unix.Kill(srv.ns.pid, unix.SIGTERM); err != nil { // what the kubelet sends when the preStop sleep ends
		t.Fatal(err)
	}
	time.AfterFunc(releaseAfter, srv.release)
	rep := <-srv.slow
	if !srv.ns.exitedWithin(5 * time.Second) {
		t.Fatal("nginx under lastcall-shim run still running 5s after its requests ended")
	}
	t.Logf("SIGTERM rewritten to SIGQUIT: in-flight %s; exited %s after the signal, status %d", rep.Summary(),
		srv.ns.exited.Sub(sent).Round(time.Millisecond), srv.ns.exitCode())
	if ok := rep.InFlight(sent).Count(loadgen.OK); ok != inflight {
		t.Errorf("%d/%d in-flight requests succeeded (%s), want all", ok, inflight, rep.Summary())
	}
	if code := srv.ns.exitCode(); code != 0 {
		t.Errorf("exit status %d, want nginx's 0 after a graceful stop; output:\n%s", code, srv.ns.out)
	}
}
