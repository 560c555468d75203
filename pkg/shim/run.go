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
	Log        io.Writer
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
	for {
		select {
		case sig := <-sigs:
			if sig == unix.SIGCHLD {
				if ws, done := reap(pid); done {
					return exitCode(ws), nil
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
			s.forward(pid, sys)
		case <-delayed:
			delayed, delayOver = nil, true
			s.forward(pid, stop)
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
