package shim

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testCgroup creates a cgroup for a fake container under the pids hierarchy (cgroup v1) or the unified one (v2)
// and removes it when the test ends.
func testCgroup(t *testing.T, name string) string {
	t.Helper()
	requireReal(t)
	parent := "/sys/fs/cgroup/pids"
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		parent = "/sys/fs/cgroup"
	}
	dir := filepath.Join(parent, fmt.Sprintf("lastcall-test-%d-%s", os.Getpid(), name))
	if err := os.Mkdir(dir, 0o755); err != nil {
		if os.Getenv("LASTCALL_REQUIRE_REAL") == "1" {
			t.Fatalf("LASTCALL_REQUIRE_REAL=1 and cannot create a cgroup: %v", err)
		}
		t.Skipf("cannot create a cgroup: %v", err)
	}
	t.Cleanup(func() {
		// The namespace's processes are gone once its PID 1 was killed; rmdir fails while any is still exiting.
		deadline := time.Now().Add(5 * time.Second)
		for os.Remove(dir) != nil && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
	})
	return dir
}

// hostPIDLayout is what a hook sees in a hostPID pod, rebuilt in a PID namespace of our own so that a wrong
// choice can only hit the test's processes: PID 1 is the "host's" init, in another cgroup than the container;
// it starts another container's process (a cgroup of its own, started first), then the container's main
// process (moved into the container's cgroup, its parent outside it, like containerd-shim's child), and, when
// the test asks, the hook itself as its child in the container's cgroup, as runc execs it.
func hostPIDLayout(t *testing.T, app, other string, hookArgs ...string) (ns *nsProc, dir string) {
	t.Helper()
	requireReal(t, "unshare", "sh")
	dir = t.TempDir()
	shim := strings.Join(shimArgv(t, hookArgs...), " ")
	script := fmt.Sprintf(`
sh -c 'echo $$ > %[2]s/cgroup.procs; trap "echo TERM > %[1]s/other; exit 0" TERM; : > %[1]s/other-ready; %[4]s' &
while [ ! -f %[1]s/other-ready ]; do sleep 0.02; done
if [ -n "%[3]s" ]; then
  sh -c 'echo $$ > %[3]s/cgroup.procs; trap "sleep 0.3; echo TERM > %[1]s/main; exit 0" TERM; : > %[1]s/main-ready; %[4]s' &
  while [ ! -f %[1]s/main-ready ]; do sleep 0.02; done
fi
while [ ! -f %[1]s/go ]; do sleep 0.02; done
sh -c 'echo $$ > %[5]s/cgroup.procs; exec %[6]s' > %[1]s/hook.out 2> %[1]s/hook.err
echo $? > %[1]s/hook.rc
sleep 30
`, dir, other, app, loop, appOrHook(app, other), shim)
	ns = startInPIDNS(t, shimEnv(), "sh", "-c", script)
	waitFor(t, 10*time.Second, "the processes of the layout", func() bool {
		_, err := os.Stat(filepath.Join(dir, "other-ready"))
		_, err2 := os.Stat(filepath.Join(dir, "main-ready"))
		return err == nil && (app == "" || err2 == nil)
	})
	return ns, dir
}

// appOrHook is the cgroup the hook runs in: the container's, or, with no main process, a cgroup of its own.
func appOrHook(app, other string) string {
	if app != "" {
		return app
	}
	return other + "-hook"
}

// Issue: with hostPID, `--target auto` found PID 1 in another cgroup and no PPid-0 process, and exited 3 at once:
// no drain delay, no graceful signal. It must signal the container's own main process, found by its cgroup.
func TestPrestopHostPIDSignalsTheContainersMainProcess(t *testing.T) {
	t.Parallel()
	app, other := testCgroup(t, "app"), testCgroup(t, "other")
	_, dir := hostPIDLayout(t, app, other, "prestop", "--delay", "500ms", "--signal", "SIGTERM", "--timeout", "5s")
	start := time.Now()
	writeFile(t, filepath.Join(dir, "go"), "")
	waitFor(t, 10*time.Second, "the hook to end", func() bool { return readFileString(filepath.Join(dir, "hook.rc")) != "" })
	took := time.Since(start)
	out, errOut := readFileString(filepath.Join(dir, "hook.out")), readFileString(filepath.Join(dir, "hook.err"))
	t.Logf("hook exit %s after %s; stdout:\n%s\nstderr:\n%s", readFileString(filepath.Join(dir, "hook.rc")), took.Round(time.Millisecond), out, errOut)
	if rc := readFileString(filepath.Join(dir, "hook.rc")); rc != "0" {
		t.Fatalf("hook exit %s, want 0", rc)
	}
	if s := readFileString(filepath.Join(dir, "main")); s != "TERM" {
		t.Errorf("the container's main process did not get SIGTERM (%q)", s)
	}
	if s := readFileString(filepath.Join(dir, "other")); s != "" {
		t.Errorf("the process of another cgroup got %s: auto must never leave its own cgroup", s)
	}
	if took < 500*time.Millisecond+300*time.Millisecond {
		t.Errorf("hook returned after %s, before the 500ms delay and the main process's 300ms shutdown", took)
	}
	if !strings.Contains(out, "earliest-started process of this container's cgroup") {
		t.Errorf("hook output does not say how it chose its target:\n%s", out)
	}
}

// With no main process in its cgroup the hook still waits the drain delay (the endpoints are being removed; the
// kubelet's SIGTERM follows the hook), then fails with one line and exit 3, signalling nothing.
func TestPrestopHostPIDWithoutTargetStillWaitsTheDelay(t *testing.T) {
	t.Parallel()
	other := testCgroup(t, "lonely")
	testCgroup(t, "lonely-hook")
	_, dir := hostPIDLayout(t, "", other, "prestop", "--delay", "700ms", "--signal", "SIGTERM", "--timeout", "5s")
	start := time.Now()
	writeFile(t, filepath.Join(dir, "go"), "")
	waitFor(t, 10*time.Second, "the hook to end", func() bool { return readFileString(filepath.Join(dir, "hook.rc")) != "" })
	took := time.Since(start)
	errOut := readFileString(filepath.Join(dir, "hook.err"))
	if rc := readFileString(filepath.Join(dir, "hook.rc")); rc != fmt.Sprint(ExitNoTarget) {
		t.Errorf("hook exit %s, want %d (no target)", rc, ExitNoTarget)
	}
	if took < 700*time.Millisecond {
		t.Errorf("hook failed after %s, before the 700ms drain delay", took)
	}
	if strings.Count(errOut, "\n") != 0 || !strings.HasPrefix(errOut, prefix) || !strings.Contains(errOut, "waited the 700ms drain delay") {
		t.Errorf("stderr %q: want one %q line saying the delay was waited", errOut, prefix)
	}
	if s := readFileString(filepath.Join(dir, "other")); s != "" {
		t.Errorf("the process of another cgroup got %s", s)
	}
}
