package shim

// Shared pieces of the real-server tests (servers_*_test.go): every built-in profile is run against the real
// server from Debian, with the profile's own values from pkg/profiles, so a change in the catalog is tested.

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lastcall-dev/lastcall/internal/loadgen"
	"github.com/lastcall-dev/lastcall/pkg/profiles"
)

// debianPython is Debian's interpreter: python3 on PATH may be a pyenv shim without Debian's packages
// (python3-celery, python3-uvicorn, gunicorn).
const debianPython = "/usr/bin/python3"

// debianEnv is the environment for Debian's servers: Debian's directories first on PATH (the celery script runs
// `python3` from PATH), and the test binary's variables otherwise.
func debianEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PATH=") && !strings.HasPrefix(kv, "PYTHON") {
			env = append(env, kv)
		}
	}
	env = append(env, "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONDONTWRITEBYTECODE=1")
	return append(env, extra...)
}

// requirePython skips (or fails under make test) when Debian's python3 lacks a module the test needs.
func requirePython(t *testing.T, modules ...string) {
	t.Helper()
	requireReal(t)
	for _, m := range modules {
		if err := exec.Command(debianPython, "-c", "import "+m).Run(); err != nil {
			msg := fmt.Sprintf("%s cannot import %s (hack/install-deps.sh installs it): %v", debianPython, m, err)
			if os.Getenv("LASTCALL_REQUIRE_REAL") == "1" {
				t.Fatalf("LASTCALL_REQUIRE_REAL=1 and %s", msg)
			}
			t.Skip(msg)
		}
	}
}

// profile returns a built-in profile: the tests use its signal and timeout, so they test the catalog.
func profile(t *testing.T, name string) *profiles.Profile {
	t.Helper()
	p, ok := profiles.Builtins().Get(name)
	if !ok {
		t.Fatalf("no built-in profile %q", name)
	}
	return p
}

// prestopArgs renders the hook the engine renders for p (with the test's short drain delay and a timeout).
func prestopArgs(sig profiles.Signal, timeout time.Duration, extra ...string) []string {
	return append([]string{"prestop", "--delay", drainDelay.String(), "--signal", string(sig), "--timeout", timeout.String()}, extra...)
}

// startProc starts argv outside any namespace (a backing service such as redis), in its own group, killed with
// the test.
func startProc(t *testing.T, env []string, dir string, argv ...string) (*exec.Cmd, *syncBuffer) {
	t.Helper()
	out := &syncBuffer{}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env, cmd.Dir = env, dir
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = testProcAttr()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %v: %v", argv, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		unix.Kill(-cmd.Process.Pid, unix.SIGKILL)
		<-done
	})
	return cmd, out
}

// redis is a private redis-server on a loopback port: broker and result store of the Celery and Sidekiq tests.
type redis struct {
	port int
	cli  string
}

func startRedis(t *testing.T) *redis {
	t.Helper()
	tools := requireReal(t, "redis-server", "redis-cli")
	dir := t.TempDir()
	r := &redis{port: freePort(t), cli: tools["redis-cli"]}
	startProc(t, debianEnv(), dir, tools["redis-server"], "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir, "--daemonize", "no", "--logfile", filepath.Join(dir, "redis.log"))
	waitFor(t, readyBound, "redis to answer PING", func() bool {
		out, err := r.do("PING")
		return err == nil && out == "PONG"
	})
	return r
}

func (r *redis) url() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", r.port) }

// do runs one redis command and returns its output, trimmed.
func (r *redis) do(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, r.cli, append([]string{"-p", strconv.Itoa(r.port), "--raw"}, args...)...).Output()
	return strings.TrimSpace(string(out)), err
}

// count returns the number of members of a set.
func (r *redis) count(t *testing.T, set string) int {
	t.Helper()
	out, err := r.do("SCARD", set)
	if err != nil {
		t.Fatalf("redis SCARD %s: %v", set, err)
	}
	n, err := strconv.Atoi(out)
	if err != nil {
		t.Fatalf("redis SCARD %s: %q", set, out)
	}
	return n
}

// refused reports whether a TCP connect to addr is refused now (the listener is closed).
func refused(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return true
	}
	c.Close()
	return false
}

// hookInNS runs the profile's prestop hook inside ns as the kubelet runs an exec hook.
func hookInNS(t *testing.T, ns *nsProc, args ...string) *hookRun {
	t.Helper()
	return startHook(t, ns.nsenter(shimArgv(t, args...)...))
}

// exitBound is how long after the signal a server may take to exit: its profile's timeout, but never more than
// the tests can afford; the in-flight work in these tests is shorter than both.
func exitBound(p *profiles.Profile) time.Duration {
	return min(p.DrainTimeout, 40*time.Second)
}

// slowHTTP is a server under test that holds K slow requests until released, plus a fast path for readiness.
type slowHTTP struct {
	argv     []string // run as PID 1 of a PID namespace
	env      []string
	addr     string        // IP:port the server listens on
	fast     string        // path answered at once
	slow     string        // path held until release
	running  func() int    // slow requests the server is executing now
	release  func()        // lets every slow request finish
	k        int           // slow requests in flight at the signal; inflight when 0
	hookArgs []string      // `lastcall-shim prestop ...` run inside the namespace
	signal   func(*nsProc) // instead of a hook: the baseline's own signal to PID 1 (nil: use hookArgs)
}

// httpResult is what one shutdown of a slowHTTP measured.
type httpResult struct {
	inflight    *loadgen.Report // the K slow requests
	duringDelay *loadgen.Report // new requests sent during the hook's drain delay (hook runs only)
	signalAt    time.Time
	refused     bool          // a new connection was refused while the slow requests still ran
	exitAfter   time.Duration // from the signal to the namespace's end; 0 if it did not end
	hook        *hookRun
	ns          *nsProc
	exitedSelf  bool // the server exited by itself within the bound
}

// runSlowHTTP starts srv, puts K requests in flight, signals it (the hook, or srv.signal), checks that new
// connections are refused while the slow requests still run, releases them releaseAfter after the signal and
// waits up to bound for the server to exit.
func runSlowHTTP(t *testing.T, srv slowHTTP, bound time.Duration) httpResult {
	t.Helper()
	k := srv.k
	if k == 0 {
		k = inflight
	}
	ns := startInPIDNS(t, srv.env, srv.argv...)
	t.Cleanup(srv.release)
	waitFor(t, 3*readyBound, fmt.Sprintf("%v to serve %s", srv.argv, srv.fast), func() bool {
		rep, err := loadgen.Run(context.Background(), loadgen.Config{Target: srv.addr, Path: srv.fast, Requests: 1, Timeout: time.Second})
		return err == nil && rep.Count(loadgen.OK) == 1
	})
	slow := make(chan *loadgen.Report, 1)
	go func() {
		rep, err := loadgen.Run(context.Background(), loadgen.Config{Target: srv.addr, Path: srv.slow, Clients: k, Requests: k, Timeout: 2 * serveTimeout})
		if err != nil {
			t.Error(err)
		}
		slow <- rep
	}()
	waitFor(t, 10*time.Second, fmt.Sprintf("%d slow requests running", k), func() bool { return srv.running() >= k })
	res := httpResult{ns: ns}
	if srv.signal != nil {
		res.signalAt = time.Now()
		srv.signal(ns)
	} else {
		res.hook = hookInNS(t, ns, srv.hookArgs...)
		// New connections during the drain delay, as endpoints still send them: every one must be served.
		res.duringDelay = &loadgen.Report{}
		waitFor(t, 10*time.Second, "the hook to signal", func() bool {
			select {
			case <-res.hook.done:
				return true
			default:
			}
			if !res.hook.stdout.signalled().IsZero() {
				return true
			}
			if rep, err := loadgen.Run(context.Background(), loadgen.Config{Target: srv.addr, Path: srv.fast, Requests: 1, Timeout: time.Second}); err == nil {
				res.duringDelay.Results = append(res.duringDelay.Results, rep.Results...)
			}
			time.Sleep(100 * time.Millisecond)
			return false
		})
		res.signalAt = res.hook.stdout.signalled()
		kept := &loadgen.Report{}
		for _, r := range res.duringDelay.Results {
			if r.End.Before(res.signalAt) {
				kept.Results = append(kept.Results, r)
			}
		}
		res.duringDelay = kept
		if res.signalAt.IsZero() {
			t.Fatalf("the hook ended without signalling (%s); stdout:\n%s\nstderr:\n%s", res.hook.status(), res.hook.stdout, res.hook.stderr)
		}
	}
	// New connections: give the server a moment to act on the signal, then try one while the slow requests run.
	time.Sleep(300 * time.Millisecond)
	res.refused = refused(srv.addr)
	time.AfterFunc(max(0, releaseAfter-300*time.Millisecond), srv.release)
	res.inflight = <-slow
	res.exitedSelf = ns.exitedWithin(bound)
	if res.exitedSelf {
		res.exitAfter = ns.exited.Sub(res.signalAt)
	}
	if res.hook != nil {
		res.hook.wait(t, hookBound)
	}
	return res
}

// summary is one log line for the measured table.
func (r httpResult) summary() string {
	exit := "did not exit"
	if r.exitedSelf {
		exit = fmt.Sprintf("exit %d after %s", r.ns.exitCode(), r.exitAfter.Round(10*time.Millisecond))
	}
	delay := ""
	if r.duringDelay != nil {
		delay = "; during the delay " + r.duringDelay.Summary()
	}
	return fmt.Sprintf("in-flight %s%s; new connection refused: %v; %s", r.inflight.Summary(), delay, r.refused, exit)
}

// markerCounter counts the files a slow handler creates when it starts.
func markerCounter(t *testing.T, dir string) func() int {
	t.Helper()
	if err := os.MkdirAll(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o777)
	return func() int {
		entries, _ := os.ReadDir(dir)
		return len(entries)
	}
}

// releaseFile returns a release func that creates path (the slow handlers poll for it).
func releaseFile(path string) func() {
	var once sync.Once
	return func() { once.Do(func() { os.WriteFile(path, nil, 0o644) }) }
}

// openDir makes a test directory traversable by servers that drop root (apache's www-data).
func openDir(t *testing.T, dir string) {
	t.Helper()
	for d := dir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		os.Chmod(d, 0o777)
	}
}
