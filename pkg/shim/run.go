package shim

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Supervisor runs one command as the container's PID 1. It forwards signals to that child only (a signal to the
// child's process group would also hit celery's pool processes and turn its warm shutdown into lost tasks),
// rewrites them (the kubelet's SIGTERM becomes nginx's graceful SIGQUIT), reaps every zombie that is reparented
// to it, and exits with the child's status.
type Supervisor struct {
	Argv     []string
	Rewrites map[syscall.Signal]syscall.Signal
	// Delay postpones forwarding the first StopSignal, so endpoints stop sending traffic first; other signals
	// pass at once.
	Delay      time.Duration
	StopSignal syscall.Signal // SIGTERM when zero: what the kubelet sends
	// Timeout bounds the wait for processes the child left behind when it exited after a signal; zero waits
	// until they exit (the kubelet's SIGKILL at the end of the grace period bounds it then).
	Timeout time.Duration
	Log     io.Writer
}

// forwarded lists the signals a process can catch that make sense to relay. Excluded: SIGCHLD (ours, for
// reaping), SIGURG (the Go runtime's preemption signal), the synchronous fault signals, and SIGTTIN/SIGTTOU.
func forwarded() []os.Signal {
	sigs := []os.Signal{unix.SIGHUP, unix.SIGINT, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2, unix.SIGPIPE,
		unix.SIGALRM, unix.SIGTERM, unix.SIGSTKFLT, unix.SIGCONT, unix.SIGTSTP, unix.SIGXCPU, unix.SIGXFSZ,
		unix.SIGVTALRM, unix.SIGPROF, unix.SIGWINCH, unix.SIGIO, unix.SIGPWR, unix.SIGSYS}
	for s := 34; s <= 64; s++ { // real-time signals
		sigs = append(sigs, syscall.Signal(s))
	}
	return sigs
}

// Run starts the child and supervises it until it exits; it returns the exit code to use (the child's status,
// 128+n when signal n killed it) or an error with ExitNotFound/ExitCannotExec when it cannot start.
func (s *Supervisor) Run() (int, error) {
	if len(s.Argv) == 0 {
		return ExitUsage, usageErr("run: missing command after --")
	}
	path, err := exec.LookPath(s.Argv[0])
	if err != nil {
		// Shell convention: 127 for a command that does not exist, 126 for one that cannot be executed.
		code := ExitCannotExec
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
			code = ExitNotFound
		}
		return code, withCode(code, fmt.Errorf("run: %w", err))
	}
	stop := s.StopSignal
	if stop == 0 {
		stop = unix.SIGTERM
	}
	if os.Getpid() != 1 {
		// Not PID 1 (tests, or a wrapper above us): become the reaper of orphaned descendants anyway, so zombie
		// handling is the same as in a container.
		_ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
	}
	// Subscribe before the fork: a signal or an exit arriving before the loop must not be lost.
	sigs := make(chan os.Signal, 128)
	signal.Notify(sigs, append(forwarded(), unix.SIGCHLD)...)
	defer signal.Stop(sigs)

	_, err = unix.IoctlGetTermios(0, unix.TCGETS)
	interactive := err == nil
	pid, err := syscall.ForkExec(path, s.Argv, &syscall.ProcAttr{
		Env:   os.Environ(),
		Files: []uintptr{0, 1, 2},
		// Its own process group keeps terminal and group signals aimed at us away from it (we forward them);
		// with a terminal it stays in ours so job control keeps working.
		Sys: &syscall.SysProcAttr{Setpgid: !interactive},
	})
	if err != nil {
		code := ExitCannotExec
		if errors.Is(err, unix.ENOENT) {
			code = ExitNotFound
		}
		return code, withCode(code, fmt.Errorf("run: start %s: %w", path, err))
	}
	// The first stop signal starts the delay; later ones during it are dropped (the delayed one is coming), and
	// once it has passed every signal is forwarded at once.
	var delayed <-chan time.Time
	delayOver := s.Delay <= 0
	var last syscall.Signal // the last signal forwarded (before rewriting): what orphans get when the child is gone
	for {
		select {
		case sig := <-sigs:
			if sig == unix.SIGCHLD {
				if ws, done := reap(pid); done {
					return s.drainOrphans(sigs, path, ws, last, delayed, stop), nil
				}
				continue
			}
			sys := sig.(syscall.Signal)
			if sys == stop && !delayOver {
				if delayed == nil {
					s.logf("%s received; forwarding %s to pid %d in %s", SignalName(sys), SignalName(s.rewrite(sys)), pid, s.Delay)
					delayed = time.After(s.Delay)
				}
				continue
			}
			last = sys
			s.forward(pid, sys)
		case <-delayed:
			delayed, delayOver, last = nil, true, stop
			s.forward(pid, stop)
		}
	}
}

// drainOrphans runs once the child has exited. A shell entrypoint that does not exec (`sh -c 'celery worker'`)
// dies of the SIGTERM we forwarded while the app it started, now reparented to us, has not even been told to
// stop; if we exited now, the kernel would SIGKILL it (we are PID 1) and its in-flight work would be lost. So when
// a signal was received, the orphans get that signal (rewritten), each one alone (a process-group signal would
// reach celery's pool processes and break its warm shutdown), and we wait for them, at most Timeout, before
// exiting with the child's status. A child that exits on its own, with no signal received, ends the container
// at once as before: its orphans are not ours to keep alive.
func (s *Supervisor) drainOrphans(sigs <-chan os.Signal, path string, ws unix.WaitStatus, last syscall.Signal, delayed <-chan time.Time, stop syscall.Signal) int {
	code := exitCode(ws)
	if last == 0 && delayed == nil {
		return code
	}
	signalled := map[procKey]bool{}
	send := func(sig syscall.Signal) int {
		kids := liveChildren()
		for _, k := range kids {
			if sig == 0 || signalled[k] {
				continue
			}
			signalled[k] = true
			s.forward(k.pid, sig)
		}
		return len(kids)
	}
	n := send(last)
	if n == 0 {
		return code
	}
	bound := "until they exit (the pod's grace period bounds it)"
	var timeout <-chan time.Time
	if s.Timeout > 0 {
		bound = "up to " + s.Timeout.String()
		t := time.NewTimer(s.Timeout)
		defer t.Stop()
		timeout = t.C
	}
	s.logf("%s exited (status %d) while %d process(es) it started still run; waiting %s for them before exiting with its status", path, code, n, bound)
	for {
		select {
		case sig := <-sigs:
			if sig == unix.SIGCHLD {
				reapAll()
				if send(last) == 0 {
					s.logf("the processes %s left behind have exited; exiting with its status %d", path, code)
					return code
				}
				continue
			}
			// Later signals (a second SIGTERM, a SIGQUIT for a cold stop) are the user's to give: pass them on.
			last = sig.(syscall.Signal)
			clear(signalled)
			send(last)
		case <-delayed:
			delayed, last = nil, stop
			send(last)
		case <-timeout:
			s.logf("processes %s left behind still running after %s; exiting with its status %d (the kernel kills them)", path, s.Timeout, code)
			return code
		}
	}
}

// procKey identifies a process across PID reuse.
type procKey struct {
	pid   int
	start uint64
}

// liveChildren lists our children that have not exited (zombies excluded): after the main child's exit, the
// processes reparented to us. A scan of /proc for PPid equal to our PID works in a container (its own /proc) and
// with hostPID alike, and needs no CONFIG_PROC_CHILDREN.
func liveChildren() []procKey {
	var p Procfs
	self := os.Getpid()
	pids, err := p.pids()
	if err != nil {
		return nil
	}
	var out []procKey
	for _, pid := range pids {
		st, err := p.stat(pid)
		if err != nil || st.PPid != self || st.State == 'Z' || st.State == 'X' {
			continue
		}
		out = append(out, procKey{pid, st.StartTime})
	}
	return out
}

// reapAll collects every exited child.
func reapAll() {
	for {
		var st unix.WaitStatus
		pid, err := unix.Wait4(-1, &st, unix.WNOHANG, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || pid <= 0 {
			return
		}
	}
}

// forward sends sig (rewritten) to the child alone. The child cannot be a reused PID: we have not reaped it.
func (s *Supervisor) forward(pid int, sig syscall.Signal) {
	to := s.rewrite(sig)
	if to != sig || sig == unix.SIGTERM || sig == unix.SIGINT || sig == unix.SIGQUIT {
		s.logf("%s received; sending %s to pid %d", SignalName(sig), SignalName(to), pid)
	}
	if err := unix.Kill(pid, to); err != nil && !errors.Is(err, unix.ESRCH) {
		s.logf("send %s to pid %d: %v", SignalName(to), pid, err)
	}
}

func (s *Supervisor) rewrite(sig syscall.Signal) syscall.Signal {
	if to, ok := s.Rewrites[sig]; ok {
		return to
	}
	return sig
}

// reap collects every exited child, ours and orphans reparented to us (one SIGCHLD may stand for many exits),
// and reports the main child's status once it is among them.
func reap(child int) (ws unix.WaitStatus, done bool) {
	for {
		var st unix.WaitStatus
		pid, err := unix.Wait4(-1, &st, unix.WNOHANG, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || pid <= 0 {
			return ws, done
		}
		if pid == child {
			ws, done = st, true
		}
	}
}

// exitCode follows the shell convention, so the kubelet reports 137 for a SIGKILLed app as it would without us.
func exitCode(ws unix.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

func (s *Supervisor) logf(format string, args ...any) {
	if s.Log != nil {
		logf(s.Log, "run", format, args...)
	}
}
