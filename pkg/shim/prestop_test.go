package shim

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// startTarget starts a shell that traps SIGTERM with onTerm and returns once the trap is installed. It is never
// waited for by the test before the hook returns, so once it exits it stays a zombie: exactly what a slow PID 1
// reaper leaves behind.
func startTarget(t *testing.T, onTerm string) *exec.Cmd {
	t.Helper()
	ready := filepath.Join(t.TempDir(), "ready")
	cmd := exec.Command("sh", "-c", fmt.Sprintf(`trap '%s' TERM; : > %s; while :; do sleep 0.05; done`, onTerm, ready))
	cmd.SysProcAttr = testProcAttr()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		unix.Kill(-cmd.Process.Pid, unix.SIGKILL)
		cmd.Wait()
	})
	waitFor(t, 5*time.Second, "the target's trap", func() bool { _, err := os.Stat(ready); return err == nil })
	return cmd
}

func procState(pid int) byte {
	st, err := Procfs{}.stat(pid)
	if err != nil {
		return 0
	}
	return st.State
}

func TestPrestopWaitsForExitAndTreatsZombieAsExited(t *testing.T) {
	t.Parallel()
	target := startTarget(t, "sleep 0.8; exit 0")
	pid := target.Process.Pid
	var stdout, stderr bytes.Buffer
	start := time.Now()
	code := Main([]string{"prestop", "--signal", "TERM", "--timeout", "10s", "--target", "pid:" + strconv.Itoa(pid)}, &stdout, &stderr)
	took := time.Since(start)
	state := procState(pid)
	if code != ExitOK {
		t.Fatalf("exit %d, stderr %q", code, &stderr)
	}
	if took < 800*time.Millisecond {
		t.Errorf("prestop returned after %s, before the target finished its 800ms shutdown", took)
	}
	if took > 3*time.Second {
		t.Errorf("prestop returned after %s: it did not notice the exit (a zombie must count as exited)", took)
	}
	if state != 'Z' {
		t.Errorf("target state %q when prestop returned, want Z (exited, not yet reaped)", state)
	}
	want := fmt.Sprintf("lastcall: SIGTERM sent to sh (pid %d) after 0s; waiting up to 10s for it to exit\n", pid)
	if !strings.Contains(stdout.String(), want) || !strings.Contains(stdout.String(), "exited") {
		t.Errorf("stdout lacks %q and an exit line:\n%s", want, &stdout)
	}
}

func TestPrestopGivesUpAtTimeout(t *testing.T) {
	t.Parallel()
	target := startTarget(t, "") // trap '' TERM: ignore it, like a hung server
	pid := target.Process.Pid
	var stdout, stderr bytes.Buffer
	start := time.Now()
	code := Main([]string{"prestop", "--signal", "SIGTERM", "--timeout", "500ms", "--target", "pid:" + strconv.Itoa(pid)}, &stdout, &stderr)
	took := time.Since(start)
	if code != ExitTimeout {
		t.Errorf("exit %d, want %d (timeout)", code, ExitTimeout)
	}
	if took < 500*time.Millisecond || took > 2*time.Second {
		t.Errorf("returned after %s, want about 500ms", took)
	}
	want := fmt.Sprintf("lastcall-shim: sh (pid %d) still running 500ms after SIGTERM; giving up so the kubelet can proceed", pid)
	if !strings.HasPrefix(stderr.String(), want) || strings.Count(stderr.String(), "\n") != 1 {
		t.Errorf("stderr = %q, want one line starting with %q", &stderr, want)
	}
	if s := procState(pid); s == 0 || s == 'Z' {
		t.Errorf("the ignoring target is gone (state %q); the test proves nothing", s)
	}
}

func TestPrestopUsageErrors(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"--signal", "SIGNOPE"}, {"--target", "pid:abc"}, {"--delay", "-1s"}, {"--timeout", "soon"}, {"extra"},
	} {
		var stdout, stderr bytes.Buffer
		if code := Main(append([]string{"prestop"}, args...), &stdout, &stderr); code != ExitUsage || strings.Count(stderr.String(), "\n") != 1 ||
			!strings.HasPrefix(stderr.String(), prefix) {
			t.Errorf("prestop %v: exit %d stderr %q; want exit %d and one %q line", args, code, &stderr, ExitUsage, prefix)
		}
	}
	var stdout, stderr bytes.Buffer
	if code := Main([]string{"prestop", "--target", "name:no-such-process-xyz"}, &stdout, &stderr); code != ExitNoTarget {
		t.Errorf("unknown name: exit %d (stderr %q), want %d", code, &stderr, ExitNoTarget)
	}
}

// cgroupRoot returns a writable cgroup hierarchy to create test cgroups in: the v1 pids controller or the v2
// unified root.
func cgroupRoot(t *testing.T) string {
	t.Helper()
	for _, dir := range []string{"/sys/fs/cgroup/pids", "/sys/fs/cgroup"} {
		if _, err := os.Stat(filepath.Join(dir, "cgroup.procs")); err == nil {
			return dir
		}
	}
	if os.Getenv("LASTCALL_REQUIRE_REAL") == "1" {
		t.Fatal("no writable cgroup hierarchy at /sys/fs/cgroup/pids or /sys/fs/cgroup")
	}
	t.Skip("no cgroup hierarchy at /sys/fs/cgroup/pids or /sys/fs/cgroup")
	return ""
}

// TestPrestopAutoInSharedPIDNamespace builds what shareProcessNamespace looks like: PID 1 is a pause process,
// another container's process started first, then this container's main process and the hook, each container
// in its own cgroup. auto must signal this container's main process and nothing else, and the hook survives
// (the target is not PID 1), so it returns 0.
func TestPrestopAutoInSharedPIDNamespace(t *testing.T) {
	t.Parallel()
	requireReal(t, "unshare", "nsenter", "sleep")
	root := cgroupRoot(t)
	dir := t.TempDir()
	base := filepath.Join(root, "lastcall-test-"+strconv.Itoa(os.Getpid())+"-"+filepath.Base(dir))
	cgApp, cgOther := filepath.Join(base, "app"), filepath.Join(base, "other")
	for _, d := range []string{base, cgApp, cgOther} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { // runs after the namespace is killed (cleanups run in reverse)
		for _, d := range []string{cgApp, cgOther, base} {
			for i := 0; os.Remove(d) != nil && i < 100; i++ {
				time.Sleep(20 * time.Millisecond)
			}
		}
	})
	sleepBin, _ := exec.LookPath("sleep")
	pause := filepath.Join(dir, "pause") // comm is taken from the executed path: "pause"
	if err := os.Symlink(sleepBin, pause); err != nil {
		t.Fatal(err)
	}
	ns := startInPIDNS(t, os.Environ(), pause, "1000")

	// inCgroup runs argv inside the namespace, in cgroup cg: the shell moves itself before nsenter forks.
	inCgroup := func(cg string, argv ...string) *exec.Cmd {
		quoted := make([]string, len(argv))
		for i, a := range argv {
			quoted[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		cmd := exec.Command("sh", "-c", fmt.Sprintf("echo $$ > %s/cgroup.procs && exec nsenter -t %d -p -m -- %s",
			cg, ns.pid, strings.Join(quoted, " ")))
		cmd.SysProcAttr = testProcAttr()
		return cmd
	}
	server := func(name, cg string) {
		script := fmt.Sprintf(`trap 'echo TERM > %[1]s/%[2]s.signalled; exit 0' TERM; : > %[1]s/%[2]s.ready; while :; do sleep 0.05; done`, dir, name)
		cmd := inCgroup(cg, "sh", "-c", script)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Kill(-cmd.Process.Pid, unix.SIGKILL); cmd.Wait() })
		waitFor(t, 5*time.Second, name+" to start", func() bool { _, err := os.Stat(filepath.Join(dir, name+".ready")); return err == nil })
	}
	server("other", cgOther) // older than the app: start time alone must not decide
	time.Sleep(20 * time.Millisecond)
	server("app", cgApp)

	hookCmd := inCgroup(cgApp, shimArgv(t, "prestop", "--signal", "TERM", "--timeout", "5s")...)
	hookCmd.Env = shimEnv()
	hook := startHook(t, hookCmd)
	hook.wait(t, hookBound)
	t.Logf("hook %s, output:\n%s%s", hook.status(), hook.stdout, hook.stderr)
	if hook.status() != "exit 0" {
		t.Errorf("hook ended with %s, want exit 0 (it survives when the target is not PID 1)", hook.status())
	}
	if _, err := os.Stat(filepath.Join(dir, "app.signalled")); err != nil {
		t.Errorf("the app container's main process was not signalled: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "other.signalled")); err == nil {
		t.Errorf("the other container's process was signalled")
	}
	if s := procState(ns.pid); s == 0 || s == 'Z' {
		t.Errorf("pause (PID 1) is gone (state %q)", s)
	}
	if want := "lastcall: SIGTERM sent to sh (pid "; !strings.Contains(hook.stdout.String(), want) ||
		!strings.Contains(hook.stdout.String(), "shared process namespace") {
		t.Errorf("hook stdout lacks %q and the shared-namespace reason", want)
	}
}

// --signal none only sleeps: no target is needed and nothing is signalled.
func TestPrestopSignalNoneOnlySleeps(t *testing.T) {
	var out bytes.Buffer
	start := time.Now()
	if err := prestopMain([]string{"--delay", "150ms", "--signal", "none", "--target", "pid:999999999"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < 150*time.Millisecond {
		t.Fatalf("returned after %s, before the delay", el)
	}
	if !strings.Contains(out.String(), "waited 150ms") {
		t.Fatalf("output %q", out.String())
	}
}
