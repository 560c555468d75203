package shim

import (
	"fmt"
	"io"
	"strings"
	"syscall"
)

const runSynopsis = `run [--rewrite FROM=TO]... [--delay D] [--timeout T] -- CMD [ARGS...]

Runs CMD as a child and supervises it as the container's PID 1: forwards every catchable signal to the child
only (never to its process group), rewrites FROM to TO (e.g. --rewrite TERM=QUIT so the kubelet's SIGTERM
becomes a graceful SIGQUIT), optionally delays the stop signal (SIGTERM) by D, reaps all zombies, and exits
with the child's status (128+n when signal n killed it). A child that ignores signals is waited for until
it exits or is killed. When the child exits after a signal while processes it started still run (a shell
entrypoint that does not exec: sh dies, the app it started is reparented to the shim), those processes get
the same signal, each alone, and the shim waits for them (at most T; 0 = until they exit) before exiting.`

// rewriteFlag collects repeated --rewrite FROM=TO values.
type rewriteFlag map[syscall.Signal]syscall.Signal

func (r rewriteFlag) String() string {
	var parts []string
	for from, to := range r {
		parts = append(parts, SignalName(from)+"="+SignalName(to))
	}
	return strings.Join(parts, ",")
}

func (r rewriteFlag) Set(v string) error {
	from, to, ok := strings.Cut(v, "=")
	if !ok {
		return fmt.Errorf("want FROM=TO, e.g. TERM=QUIT, got %q", v)
	}
	f, err := ParseSignal(from)
	if err != nil {
		return err
	}
	t, err := ParseSignal(to)
	if err != nil {
		return err
	}
	r[f] = t
	return nil
}

func runMain(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("run", runSynopsis, stdout)
	rewrites := rewriteFlag{}
	fs.Var(rewrites, "rewrite", "rewrite signal FROM to TO before forwarding (repeatable), e.g. TERM=QUIT")
	delay := fs.Duration("delay", 0, "delay forwarding the stop signal (SIGTERM) by this long")
	timeout := fs.Duration("timeout", 0, "after the child exits, wait at most this long for the processes it left behind; 0: until they exit")
	if err := fs.parse(args); err != nil {
		return err
	}
	if *delay < 0 || *timeout < 0 {
		return usageErr("run: --delay and --timeout must not be negative")
	}
	if fs.NArg() == 0 {
		return usageErr("run: missing command (lastcall-shim run [flags] -- CMD ARGS)")
	}
	s := &Supervisor{Argv: fs.Args(), Rewrites: rewrites, Delay: *delay, Timeout: *timeout, Log: stderr}
	code, err := s.Run()
	if err != nil {
		return err
	}
	if code != 0 {
		// The child's status is the exit code; the child has said why itself, so no extra line.
		return withCode(code, errSilent)
	}
	return nil
}
