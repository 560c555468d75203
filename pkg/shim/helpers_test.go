package shim

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The test binary doubles as lastcall-shim: with this variable set it runs Main instead of the tests, so the
// real-process tests exercise the real entry point without a separate build step.
const asShimEnv = "LASTCALL_SHIM_TEST_AS_MAIN"

func TestMain(m *testing.M) {
	if addr := os.Getenv(asHTTPEnv); addr != "" {
		os.Exit(serveHTTPUntilTerm(addr))
	}
	if os.Getenv(asShimEnv) == "1" {
		os.Exit(Main(os.Args[1:], os.Stdout, os.Stderr))
	}
	// The real-server tests mostly wait (for a held request, a 15 s task, a drain delay): run more of them at
	// once than the default GOMAXPROCS, unless -test.parallel was given.
	flag.Parse()
	explicit := false
	flag.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "test.parallel" })
	if !explicit {
		flag.Set("test.parallel", "6")
	}
	os.Exit(m.Run())
}

// requireReal skips a real-process test when a tool or root is missing, or fails it under make test
// (LASTCALL_REQUIRE_REAL=1), where a silently skipped real-process test would prove nothing.
func requireReal(t *testing.T, tools ...string) map[string]string {
	t.Helper()
	missing := func(why string) {
		t.Helper()
		if os.Getenv("LASTCALL_REQUIRE_REAL") == "1" {
			t.Fatalf("LASTCALL_REQUIRE_REAL=1 and %s", why)
		}
		t.Skipf("skipping real-process test: %s (set LASTCALL_REQUIRE_REAL=1 to fail instead)", why)
	}
	if os.Geteuid() != 0 {
		missing("not root (PID namespaces and cgroups need root): run the tests as root")
	}
	paths := map[string]string{}
	for _, tool := range tools {
		alts := strings.Split(tool, "|")
		for _, alt := range alts {
			if p, err := exec.LookPath(alt); err == nil {
				paths[alts[0]] = p
				break
			}
			if p := filepath.Join("/usr/sbin", alt); isExec(p) {
				paths[alts[0]] = p
				break
			}
		}
		if paths[alts[0]] == "" {
			missing(fmt.Sprintf("%s not found (hack/install-deps.sh installs it)", strings.Join(alts, " or ")))
		}
	}
	return paths
}

func isExec(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

// shimArgv is the command line that runs this test binary as lastcall-shim.
func shimArgv(t *testing.T, args ...string) []string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return append([]string{exe}, args...)
}

func shimEnv() []string { return append(os.Environ(), asShimEnv+"=1") }

// nsProc is a process running as PID 1 of its own PID (and mount) namespace, like a container's main process.
type nsProc struct {
	pid    int // host PID of the namespace's PID 1
	cmd    *exec.Cmd
	out    *syncBuffer
	done   chan struct{}
	exited time.Time
	err    error
}

// startInPIDNS runs argv as PID 1 of a new PID namespace with its own /proc (unshare --pid --fork --mount-proc).
// Cleanup SIGKILLs the namespace's PID 1, which takes every process of the namespace with it.
func startInPIDNS(t *testing.T, env []string, argv ...string) *nsProc {
	t.Helper()
	out := &syncBuffer{}
	cmd := exec.Command("unshare", append([]string{"--pid", "--fork", "--mount-proc", "--kill-child"}, argv...)...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = testProcAttr()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %v: %v", argv, err)
	}
	p := &nsProc{cmd: cmd, out: out, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		p.exited = time.Now()
		close(p.done)
	}()
	t.Cleanup(func() {
		if p.pid > 0 {
			unix.Kill(p.pid, unix.SIGKILL)
		}
		unix.Kill(-cmd.Process.Pid, unix.SIGKILL)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			t.Errorf("namespace of %v did not exit after SIGKILL", argv)
		}
	})
	children := fmt.Sprintf("/proc/%d/task/%d/children", cmd.Process.Pid, cmd.Process.Pid)
	waitFor(t, 5*time.Second, "unshare to fork the namespace's PID 1", func() bool {
		b, _ := os.ReadFile(children)
		f := strings.Fields(string(b))
		if len(f) > 0 {
			p.pid, _ = strconv.Atoi(f[0])
		}
		return p.pid > 0
	})
	return p
}

// exitedWithin waits for the namespace to end.
func (p *nsProc) exitedWithin(d time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(d):
		return false
	}
}

// exitCode is unshare's exit status, which is that of the namespace's PID 1.
func (p *nsProc) exitCode() int {
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		if ws := ee.Sys().(syscall.WaitStatus); ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	if p.err != nil {
		return -1
	}
	return 0
}

// nsenter returns a command that runs argv inside p's PID and mount namespaces, as the kubelet runs an exec hook
// inside a container: its parent is outside, so it sees PPid 0, and /proc is the namespace's.
func (p *nsProc) nsenter(argv ...string) *exec.Cmd {
	cmd := exec.Command("nsenter", append([]string{"-t", strconv.Itoa(p.pid), "-p", "-m", "--"}, argv...)...)
	cmd.SysProcAttr = testProcAttr()
	return cmd
}

// hookRun is a started prestop hook with its output and the time it ended.
type hookRun struct {
	cmd     *exec.Cmd
	stdout  *syncBuffer
	stderr  *syncBuffer
	done    chan struct{}
	started time.Time
	ended   time.Time
	err     error
}

func startHook(t *testing.T, cmd *exec.Cmd) *hookRun {
	t.Helper()
	h := &hookRun{cmd: cmd, stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = h.stdout, h.stderr
	if cmd.Env == nil {
		cmd.Env = shimEnv()
	}
	h.started = time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start hook: %v", err)
	}
	go func() {
		h.err = cmd.Wait()
		h.ended = time.Now()
		close(h.done)
	}()
	t.Cleanup(func() {
		unix.Kill(-cmd.Process.Pid, unix.SIGKILL)
		<-h.done
	})
	return h
}

// afterSignal calls fn d after the hook printed its "signal sent" line (or ended without one).
func afterSignal(h *hookRun, d time.Duration, fn func()) {
	go func() {
		for h.stdout.signalled().IsZero() {
			select {
			case <-h.done:
				fn()
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
		time.Sleep(d)
		fn()
	}()
}

func (h *hookRun) wait(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case <-h.done:
	case <-time.After(d):
		t.Fatalf("hook still running after %s; stdout:\n%s\nstderr:\n%s", d, h.stdout, h.stderr)
	}
}

// status describes how the hook ended: "exit N" or "signal NAME".
func (h *hookRun) status() string {
	var ee *exec.ExitError
	if errors.As(h.err, &ee) {
		if ws := ee.Sys().(syscall.WaitStatus); ws.Signaled() {
			return "signal " + SignalName(ws.Signal())
		}
		return "exit " + strconv.Itoa(ee.ExitCode())
	}
	if h.err != nil {
		return h.err.Error()
	}
	return "exit 0"
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// freePort returns a loopback port that was free a moment ago; each test gets its own.
// freePort hands out a port for a real server to listen on, each at most once per test binary and from
// below Linux's ephemeral range (32768 and up by default): a port the kernel picked for "127.0.0.1:0" and
// released can be picked again for another parallel test, or become a client connection's source port,
// before the server binds it; its readiness probe would then reach another test's server (both serve
// /fast), and the slow requests would never start (seen once in CI, cause not proven).
func freePort(t *testing.T) int {
	t.Helper()
	portMu.Lock()
	defer portMu.Unlock()
	for range portHigh - portLow {
		p := nextPort
		if nextPort++; nextPort >= portHigh {
			nextPort = portLow
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		l.Close()
		return p
	}
	t.Fatalf("no free port in %d-%d", portLow, portHigh)
	return 0
}

const portLow, portHigh = 20000, 32000

var (
	portMu   sync.Mutex
	nextPort = portLow + os.Getpid()%(portHigh-portLow)
)

type syncBuffer struct {
	mu       sync.Mutex
	b        bytes.Buffer
	signalAt time.Time // when prestop printed its "lastcall: SIG... sent" line, just before signalling
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.signalAt.IsZero() && (bytes.HasPrefix(p, []byte("lastcall: ")) || bytes.Contains(p, []byte("\nlastcall: "))) {
		s.signalAt = time.Now()
	}
	return s.b.Write(p)
}

func (s *syncBuffer) signalled() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.signalAt
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// testProcAttr puts a test's process in its own group (cleanup kills the group) and kills it if the test
// binary dies (a timeout panic), so no server outlives the test run.
func testProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
