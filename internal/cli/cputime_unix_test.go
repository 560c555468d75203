//go:build unix

package cli

import (
	"syscall"
	"time"
)

// cpuTime is the process's user+system CPU time. Benchmarks report it next to wall time because the shared
// 2-core machines they run on are often busy with other work, which stretches wall time but not CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
