package shim

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// startRun starts `lastcall-shim run ARGS` as PID 1 of a new PID namespace, as in a container whose command the
// webhook wrapped, and returns once the script has created dir/ready.
func startRun(t *testing.T, dir string, args ...string) *nsProc {
	t.Helper()
	requireReal(t, "unshare")
	ns := startInPIDNS(t, shimEnv(), shimArgv(t, append([]string{"run"}, args...)...)...)
	waitFor(t, 5*time.Second, "the supervised command to start", func() bool {
		_, err := os.Stat(filepath.Join(dir, "ready"))
		return err == nil
	})
	return ns
}

// childrenOf lists the live and zombie processes whose parent is pid (host view).
func childrenOf(t *testing.T, pid int) []procStat {
	t.Helper()
	pids, err := Procfs{}.pids()
	if err != nil {
		t.Fatal(err)
	}
	var out []procStat
	for _, p := range pids {
		if st, err := (Procfs{}).stat(p); err == nil && st.PPid == pid {
			out = append(out, st)
		}
	}
	return out
}

func readFileString(path string) string {
	b, _ := os.ReadFile(path)
	return strings.TrimSpace(string(b))
}

const loop = `while :; do sleep 0.05; done`

func TestRunRewritesAndDelaysTheStopSignal(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	got := filepath.Join(dir, "got")
	script := fmt.Sprintf(`trap 'echo QUIT > %[1]s; exit 0' QUIT; trap 'echo TERM > %[1]s; exit 0' TERM; : > %[2]s/ready; %[3]s`, got, dir, loop)
	ns := startRun(t, dir, "--rewrite", "TERM=QUIT", "--delay", "400ms", "--", "sh", "-c", script)
	sent := time.Now()
	if err := unix.Kill(ns.pid, unix.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the child to get a signal", func() bool { return readFileString(got) != "" })
	took := time.Since(sent)
	if s := readFileString(got); s != "QUIT" {
		t.Errorf("child received %s, want QUIT (TERM rewritten)", s)
	}
	if took < 400*time.Millisecond || took > 3*time.Second {
		t.Errorf("child signalled %s after SIGTERM, want after the 400ms delay", took)
	}
	if !ns.exitedWithin(5*time.Second) || ns.exitCode() != 0 {
		t.Errorf("shim exit %d (%v), want 0; output:\n%s", ns.exitCode(), ns.err, ns.out)
	}
}

func TestRunForwardsStopSignalsAfterTheDelayAtOnce(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	got := filepath.Join(dir, "got")
	// The child survives SIGTERM and logs each one, like a server that needs a second signal to stop fast.
	ns := startRun(t, dir, "--delay", "300ms", "--", "sh", "-c", fmt.Sprintf(`trap 'echo TERM >> %s' TERM; : > %s/ready; %s`, got, dir, loop))
	lines := func() int { return strings.Count(readFileString(got)+"\n", "TERM\n") }
	for i, bound := range []time.Duration{5 * time.Second, 250 * time.Millisecond} {
		sent := time.Now()
		if err := unix.Kill(ns.pid, unix.SIGTERM); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 5*time.Second, fmt.Sprintf("SIGTERM #%d to reach the child", i+1), func() bool { return lines() == i+1 })
		if took := time.Since(sent); i == 0 && took < 300*time.Millisecond || took > bound {
			t.Errorf("SIGTERM #%d reached the child after %s", i+1, took)
		}
	}
}

// A shell entrypoint that traps the signal and relays it to its app: the shim must deliver the signal to the
// shell (its child), and exit with the shell's status.
func TestRunShellEntrypointRelaysToItsApp(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	app := fmt.Sprintf(`trap 'echo graceful > %[1]s/app; exit 7' TERM; : > %[1]s/app-ready; %[2]s`, dir, loop)
	// The entrypoint says it is ready only once its trap is set and $pid is known: a SIGTERM before that would
	// kill it (no trap yet, exit 143) or run the trap with an empty $pid (kill fails, wait waits forever).
	entrypoint := fmt.Sprintf(`trap 'kill -TERM $pid; wait $pid; exit $?' TERM; sh -c "%s" & pid=$!; `+
		`while [ ! -f %s/app-ready ]; do sleep 0.01; done; : > %s/ready; wait $pid`,
		strings.ReplaceAll(app, `"`, `\"`), dir, dir)
	ns := startRun(t, dir, "--", "sh", "-c", entrypoint)
	if err := unix.Kill(ns.pid, unix.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if !ns.exitedWithin(5 * time.Second) {
		t.Fatalf("shim still running 5s after SIGTERM; output:\n%s", ns.out)
	}
	if s := readFileString(filepath.Join(dir, "app")); s != "graceful" {
		t.Errorf("the app behind the shell entrypoint did not shut down gracefully (%q)", s)
	}
	if ns.exitCode() != 7 {
		t.Errorf("shim exit %d, want the entrypoint's 7; output:\n%s", ns.exitCode(), ns.out)
	}
}

func TestRunReapsOrphans(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// Each ( sleep & ) leaves an orphan that the kernel reparents to PID 1, the shim.
	script := fmt.Sprintf(`for i in 1 2 3 4 5; do (sleep 0.4 &); done; : > %s/ready; sleep 30`, dir)
	ns := startRun(t, dir, "--", "sh", "-c", script)
	if n := len(childrenOf(t, ns.pid)); n < 6 {
		t.Fatalf("shim has %d children, want the shell and 5 orphaned sleeps (reparenting did not happen)", n)
	}
	time.Sleep(1200 * time.Millisecond)
	var zombies []string
	kids := childrenOf(t, ns.pid)
	for _, c := range kids {
		if c.State == 'Z' {
			zombies = append(zombies, fmt.Sprintf("%d (%s)", c.PID, c.Comm))
		}
	}
	if len(zombies) > 0 || len(kids) != 1 {
		t.Errorf("after the orphans exited the shim has %d children, zombies %v; want only the shell", len(kids), zombies)
	}
}

func TestRunExitStatus(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		script string
		want   int
	}{
		{"exit 3 is passed through", "exit 3", 3},
		{"a child killed by SIGKILL gives 137", "kill -KILL $$", 137},
		{"a child killed by SIGSEGV gives 139", "kill -SEGV $$", 139},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			ns := startRun(t, dir, "--", "sh", "-c", fmt.Sprintf(": > %s/ready; sleep 0.1; %s", dir, tc.script))
			if !ns.exitedWithin(5 * time.Second) {
				t.Fatal("shim did not exit")
			}
			if ns.exitCode() != tc.want {
				t.Errorf("exit %d, want %d; output:\n%s", ns.exitCode(), tc.want, ns.out)
			}
		})
	}
}

func TestRunStartFailures(t *testing.T) {
	t.Parallel()
	notExec := filepath.Join(t.TempDir(), "script")
	writeFile(t, notExec, "#!/bin/sh\n")
	cases := []struct {
		name string
		args []string
		want int
	}{
		{"a missing command is 127", []string{"--", "/nonexistent/cmd"}, ExitNotFound},
		{"a command not on PATH is 127", []string{"--", "no-such-command-xyz"}, ExitNotFound},
		{"a file that is not executable is 126", []string{"--", notExec}, ExitCannotExec},
		{"no command is a usage error", []string{"--delay", "1s"}, ExitUsage},
		{"a bad rewrite is a usage error", []string{"--rewrite", "TERM", "--", "true"}, ExitUsage},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			argv := shimArgv(t, append([]string{"run"}, tc.args...)...)
			cmd := exec.Command(argv[0], argv[1:]...)
			cmd.Env = shimEnv()
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			}
			if code != tc.want || strings.Count(stderr.String(), "\n") != 1 || !strings.HasPrefix(stderr.String(), prefix) {
				t.Errorf("exit %d stderr %q; want exit %d and one %q line", code, &stderr, tc.want, prefix)
			}
		})
	}
}

// The child and its grandchild share a process group; a group signal would reach both (and break celery's warm
// shutdown by killing its pool processes). Only the child may receive it.
func TestRunSignalsOnlyTheChild(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	grandchild := fmt.Sprintf(`trap 'echo TERM > %[1]s/grandchild; exit 0' TERM; %[2]s`, dir, loop)
	// The child stays alive after SIGTERM: once it exits, its orphaned grandchild gets the signal by design.
	script := fmt.Sprintf(`sh -c "%[1]s" & trap 'echo TERM > %[2]s/child' TERM; : > %[2]s/ready; %[3]s`,
		strings.ReplaceAll(grandchild, `"`, `\"`), dir, loop)
	ns := startRun(t, dir, "--", "sh", "-c", script)
	var child, grand int
	waitFor(t, 5*time.Second, "the child and its grandchild", func() bool {
		for _, c := range childrenOf(t, ns.pid) {
			if c.Comm == "sh" {
				child = c.PID
			}
		}
		for _, g := range childrenOf(t, child) {
			if g.Comm == "sh" {
				grand = g.PID
			}
		}
		return child > 0 && grand > 0
	})
	pgChild, _ := unix.Getpgid(child)
	pgGrand, _ := unix.Getpgid(grand)
	if pgChild != pgGrand || pgChild == 0 {
		t.Fatalf("child pgid %d, grandchild pgid %d: want one process group, or the test proves nothing", pgChild, pgGrand)
	}
	if err := unix.Kill(ns.pid, unix.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the child to get SIGTERM", func() bool { return readFileString(filepath.Join(dir, "child")) == "TERM" })
	time.Sleep(300 * time.Millisecond)
	if s := readFileString(filepath.Join(dir, "grandchild")); s != "" {
		t.Errorf("the grandchild received %s: the shim signalled the process group", s)
	}
	unix.Kill(child, unix.SIGKILL)
	if !ns.exitedWithin(5*time.Second) || ns.exitCode() != 137 {
		t.Errorf("shim exit %d, want the child's 137", ns.exitCode())
	}
}

func TestRunWaitsForAChildThatIgnoresSignals(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ns := startRun(t, dir, "--", "sh", "-c", fmt.Sprintf(`trap '' TERM QUIT INT; : > %s/ready; %s`, dir, loop))
	for _, sig := range []unix.Signal{unix.SIGTERM, unix.SIGQUIT, unix.SIGINT} {
		if err := unix.Kill(ns.pid, sig); err != nil {
			t.Fatal(err)
		}
	}
	if ns.exitedWithin(700 * time.Millisecond) {
		t.Fatalf("shim exited (%d) although its child ignores the signals; output:\n%s", ns.exitCode(), ns.out)
	}
	var child int
	for _, c := range childrenOf(t, ns.pid) {
		if c.Comm == "sh" {
			child = c.PID
		}
	}
	if child == 0 {
		t.Fatal("child not found")
	}
	unix.Kill(child, unix.SIGKILL) // what the kubelet does when the grace period ends
	if !ns.exitedWithin(5*time.Second) || ns.exitCode() != 137 {
		t.Errorf("shim exit %d after the child was SIGKILLed, want 137", ns.exitCode())
	}
}

// A shell entrypoint that does not exec: the SIGTERM the shim forwards kills sh at once, and the app it started
// is reparented to the shim. The app must get the signal too (alone, not its group) and be waited for; the shim
// then exits with sh's status.
func TestRunForwardsToOrphansWhenTheShellEntrypointDies(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	app := fmt.Sprintf(`trap 'sleep 0.5; echo graceful > %[1]s/app; exit 0' TERM; : > %[1]s/ready; %[2]s`, dir, loop)
	ns := startRun(t, dir, "--", "sh", "-c", fmt.Sprintf(`sh -c "%s"; echo unreachable`, strings.ReplaceAll(app, `"`, `\"`)))
	sent := time.Now()
	if err := unix.Kill(ns.pid, unix.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if !ns.exitedWithin(5 * time.Second) {
		t.Fatalf("shim still running 5s after SIGTERM; output:\n%s", ns.out)
	}
	if s := readFileString(filepath.Join(dir, "app")); s != "graceful" {
		t.Errorf("the app behind the dead shell was not stopped gracefully (%q): the shim exited and the kernel killed it; output:\n%s", s, ns.out)
	}
	if took := ns.exited.Sub(sent); took < 500*time.Millisecond {
		t.Errorf("shim exited %s after SIGTERM, before the app's 0.5s shutdown", took)
	}
	if ns.exitCode() != 143 {
		t.Errorf("shim exit %d, want sh's 143 (killed by SIGTERM); output:\n%s", ns.exitCode(), ns.out)
	}
}

// --timeout bounds that wait: an orphan that ignores the signal does not keep the container alive past it.
func TestRunOrphanWaitIsBoundedByTimeout(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	app := fmt.Sprintf(`trap '' TERM; : > %s/ready; %s`, dir, loop)
	ns := startRun(t, dir, "--timeout", "700ms", "--", "sh", "-c", fmt.Sprintf(`sh -c "%s"; echo unreachable`, app))
	sent := time.Now()
	if err := unix.Kill(ns.pid, unix.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if !ns.exitedWithin(5 * time.Second) {
		t.Fatalf("shim still running 5s after SIGTERM with --timeout 700ms; output:\n%s", ns.out)
	}
	if took := ns.exited.Sub(sent); took < 700*time.Millisecond || took > 3*time.Second {
		t.Errorf("shim exited %s after SIGTERM, want about the 700ms timeout", took)
	}
	if !strings.Contains(ns.out.String(), "still running after 700ms") {
		t.Errorf("no line about the timeout; output:\n%s", ns.out)
	}
}

// A child that exits on its own (no signal received) ends the container at once, as before: its background
// processes are not waited for.
func TestRunDoesNotWaitForOrphansWithoutASignal(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ns := startRun(t, dir, "--", "sh", "-c", fmt.Sprintf(`(trap '' TERM; sleep 30) & : > %s/ready; sleep 0.2; exit 4`, dir))
	if !ns.exitedWithin(3 * time.Second) {
		t.Fatalf("shim waited for a background process although no signal was received; output:\n%s", ns.out)
	}
	if ns.exitCode() != 4 {
		t.Errorf("shim exit %d, want the child's 4", ns.exitCode())
	}
}
