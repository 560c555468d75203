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
	"testing"
	"time"

	"golang.org/x/sys/unix"

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
