package shim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Prestop is the preStop hook: wait Delay so endpoints and load balancers forget the pod, send Signal to the
// target, and return only when the target has exited (or Timeout passed), because the kubelet sends the
// container's stop signal, usually SIGTERM, the moment the hook returns.
type Prestop struct {
	Delay   time.Duration
	Signal  syscall.Signal
	Timeout time.Duration // 0: do not wait after signalling
	Target  TargetSpec
	Proc    Procfs
	Log     io.Writer     // timestamped steps and the "expected failure" line
	Poll    time.Duration // exit polling interval; 20ms when zero
}

// errTimeout marks a target that outlived Timeout; prestop maps it to ExitTimeout.
var errTimeout = errors.New("timeout")

// Run executes the hook. It resolves the target first and pins it by PID and start time, so a reused PID is
// never signalled. When no target is found it still sleeps the delay before failing: the delay is what keeps
// traffic flowing to a pod whose endpoints are being removed, and the kubelet's own stop signal follows the
// hook's exit, so a hook that failed at once would give the pod no drain at all.
func (p *Prestop) Run(ctx context.Context) error {
	t, err := p.Proc.FindTarget(p.Target)
	if err != nil {
		if p.Delay > 0 {
			p.logf("no target process (%v); sleeping the %s drain delay before giving up", err, p.Delay)
			if serr := sleepCtx(ctx, p.Delay); serr != nil {
				return withCode(ExitNoTarget, fmt.Errorf("%w; interrupted during the %s delay: %w", err, p.Delay, serr))
			}
		}
		return withCode(ExitNoTarget, fmt.Errorf("%w; waited the %s drain delay, sending nothing: the kubelet now sends the container's stop signal", err, p.Delay))
	}
	sig := SignalName(p.Signal)
	p.logf("target %s (pid %d): %s; %s in %s, then wait up to %s for it to exit", t.Comm, t.PID, t.Why, sig, p.Delay, p.Timeout)
	// A pidfd pins the process itself; without pidfd support (old kernels, strict seccomp) kill(2) after a
	// start-time check is the fallback.
	pidfd, pidfdErr := unix.PidfdOpen(t.PID, 0)
	if pidfdErr == nil {
		defer unix.Close(pidfd)
	}
	if err := sleepCtx(ctx, p.Delay); err != nil {
		return fmt.Errorf("interrupted during the %s delay: %w", p.Delay, err)
	}
	if gone, err := p.Proc.exited(t.PID, t.StartTime); err == nil && gone {
		p.logf("%s (pid %d) exited during the delay; nothing to signal", t.Comm, t.PID)
		return nil
	}
	// Printed before the signal: when the target is PID 1 the kernel kills this hook as soon as the target exits,
	// and the kubelet copies this output into its FailedPreStopHook event.
	if t.PID == 1 {
		fmt.Fprintf(p.Log, "lastcall: %s sent to %s (pid 1) after %s; the kubelet reports this hook as failed when %s exits: expected\n",
			sig, t.Comm, p.Delay, t.Comm)
	} else {
		fmt.Fprintf(p.Log, "lastcall: %s sent to %s (pid %d) after %s; waiting up to %s for it to exit\n",
			sig, t.Comm, t.PID, p.Delay, p.Timeout)
	}
	if err := p.send(t, pidfd, pidfdErr); err != nil {
		if errors.Is(err, errGone) {
			p.logf("%s (pid %d) exited before the signal", t.Comm, t.PID)
			return nil
		}
		return err
	}
	return p.wait(ctx, t, sig)
}

func (p *Prestop) send(t Target, pidfd int, pidfdErr error) error {
	sig := SignalName(p.Signal)
	if pidfdErr == nil {
		err := unix.PidfdSendSignal(pidfd, p.Signal, nil, 0)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, unix.ESRCH):
			return errGone
		case !errors.Is(err, unix.ENOSYS):
			return fmt.Errorf("send %s to %s (pid %d): %w", sig, t.Comm, t.PID, err)
		}
	}
	if gone, err := p.Proc.exited(t.PID, t.StartTime); err == nil && gone {
		return errGone
	}
	if err := unix.Kill(t.PID, p.Signal); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return errGone
		}
		return fmt.Errorf("send %s to %s (pid %d): %w", sig, t.Comm, t.PID, err)
	}
	return nil
}

// wait polls /proc rather than kill(pid, 0): a zombie waiting for a slow reaper has exited for our purpose.
func (p *Prestop) wait(ctx context.Context, t Target, sig string) error {
	if p.Timeout <= 0 {
		p.logf("%s sent to %s (pid %d); --timeout 0: not waiting for it to exit", sig, t.Comm, t.PID)
		return nil
	}
	start := time.Now()
	poll := p.Poll
	if poll <= 0 {
		poll = 20 * time.Millisecond
	}
	deadline := time.NewTimer(p.Timeout)
	defer deadline.Stop()
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for {
		gone, err := p.Proc.exited(t.PID, t.StartTime)
		if err != nil {
			return fmt.Errorf("watch %s (pid %d): %w", t.Comm, t.PID, err)
		}
		if gone {
			p.logf("%s (pid %d) exited %s after %s", t.Comm, t.PID, time.Since(start).Round(time.Millisecond), sig)
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("interrupted while waiting for %s (pid %d): %w", t.Comm, t.PID, ctx.Err())
		case <-deadline.C:
			return withCode(ExitTimeout, fmt.Errorf("%s (pid %d) still running %s after %s; giving up so the kubelet can proceed: %w",
				t.Comm, t.PID, p.Timeout, sig, errTimeout))
		case <-tick.C:
		}
	}
}

func (p *Prestop) logf(format string, args ...any) {
	logf(p.Log, "prestop", format, args...)
}

// logf writes one timestamped line; kubelet events keep hook output but not its timing.
func logf(w io.Writer, cmd, format string, args ...any) {
	fmt.Fprintf(w, "%s lastcall-shim %s: %s\n", time.Now().UTC().Format("2006-01-02T15:04:05.000Z"), cmd, fmt.Sprintf(format, args...))
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
