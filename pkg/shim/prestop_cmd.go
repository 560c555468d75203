package shim

import (
	"context"
	"fmt"
	"io"
	"strings"
	"syscall"
	"time"
)

const prestopSynopsis = `prestop [--delay D] [--signal S] [--timeout T] [--target auto|pid:N|name:NAME]

Sleeps D, sends S to the container's main process, and returns once it has exited (a zombie counts as exited)
or T has passed. Before signalling it prints one line saying that, when the target is PID 1, the kubelet will
report this hook as failed (exit 137) because the kernel kills the hook when PID 1 exits: that is expected.

Targets: auto = PID 1, unless PID 1 is pause or in another cgroup (shareProcessNamespace, hostPID): then the
earliest-started process of this hook's cgroup whose parent is outside it (not the hook or its ancestors);
pid:N; name:NAME = oldest process in this hook's cgroup whose comm is NAME. Never signals pause or a process
of another cgroup (auto, name). Without a target it still sleeps D, then exits 3.`

func prestopMain(args []string, stdout, _ io.Writer) error {
	fs := newFlagSet("prestop", prestopSynopsis, stdout)
	delay := fs.Duration("delay", 0, "wait this long before signalling, so endpoints stop sending traffic (Go duration)")
	sigFlag := fs.String("signal", "SIGTERM", "signal to send: SIGQUIT, QUIT, quit or a number; none only sleeps")
	timeout := fs.Duration("timeout", 30e9, "how long to wait for the target to exit after the signal; 0: do not wait")
	target := fs.String("target", "auto", "which process: auto, pid:N or name:NAME")
	if err := fs.parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErr("prestop: unexpected argument %q", fs.Arg(0))
	}
	if *delay < 0 || *timeout < 0 {
		return usageErr("prestop: --delay and --timeout must not be negative")
	}
	if strings.EqualFold(*sigFlag, "none") {
		// Sleep only: for servers that drain on SIGTERM, on clusters without the native preStop sleep. The
		// kubelet sends SIGTERM itself when the hook returns.
		time.Sleep(*delay)
		fmt.Fprintf(stdout, "lastcall: waited %s; the kubelet now sends the container's stop signal\n", *delay)
		return nil
	}
	sig, err := ParseSignal(*sigFlag)
	if err != nil {
		return usageErr("prestop: --signal: %w", err)
	}
	spec, err := ParseTargetSpec(*target)
	if err != nil {
		return usageErr("prestop: --target: %w", err)
	}
	p := &Prestop{Delay: *delay, Signal: syscall.Signal(sig), Timeout: *timeout, Target: spec, Log: stdout}
	return p.Run(context.Background())
}
