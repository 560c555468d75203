package shim

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Procfs reads process information below Root ("/proc" in production). Tests point Root at fixture trees, so
// target selection can be checked against pod layouts this machine cannot produce.
type Procfs struct {
	Root string
}

func (p Procfs) root() string {
	if p.Root == "" {
		return "/proc"
	}
	return p.Root
}

// procStat is the part of /proc/PID/stat that prestop needs.
type procStat struct {
	PID       int
	Comm      string
	State     byte
	PPid      int
	Flags     uint64 // PF_* flags: PF_KTHREAD marks kernel threads
	StartTime uint64 // clock ticks since boot: with PID, identifies a process across PID reuse
}

// pfKthread is the kernel's PF_KTHREAD flag (include/linux/sched.h).
const pfKthread = 0x00200000

// errGone reports a process that no longer exists.
var errGone = errors.New("process has exited")

// stat reads /proc/PID/stat ("self" allowed as pid "self" via statPath).
func (p Procfs) stat(pid int) (procStat, error) {
	return p.statPath(strconv.Itoa(pid))
}

func (p Procfs) statPath(name string) (procStat, error) {
	b, err := os.ReadFile(filepath.Join(p.root(), name, "stat"))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
			return procStat{}, fmt.Errorf("pid %s: %w", name, errGone)
		}
		return procStat{}, fmt.Errorf("read %s stat: %w", name, err)
	}
	return parseStat(b)
}

// parseStat parses "PID (COMM) STATE PPID ... STARTTIME ...". COMM may contain spaces and parentheses, so the
// fields after it are found from the last ')'.
func parseStat(b []byte) (procStat, error) {
	open := bytes.IndexByte(b, '(')
	closing := bytes.LastIndexByte(b, ')')
	if open < 0 || closing < open {
		return procStat{}, fmt.Errorf("malformed stat %q", b)
	}
	pid, err := strconv.Atoi(string(bytes.TrimSpace(b[:open])))
	if err != nil {
		return procStat{}, fmt.Errorf("malformed stat pid: %w", err)
	}
	rest := strings.Fields(string(b[closing+1:]))
	// rest[0] is field 3 (state); starttime is field 22.
	if len(rest) < 20 {
		return procStat{}, fmt.Errorf("malformed stat for pid %d: %d fields", pid, len(rest)+2)
	}
	ppid, err := strconv.Atoi(rest[1])
	if err != nil {
		return procStat{}, fmt.Errorf("malformed stat ppid: %w", err)
	}
	start, err := strconv.ParseUint(rest[19], 10, 64)
	if err != nil {
		return procStat{}, fmt.Errorf("malformed stat starttime: %w", err)
	}
	flags, err := strconv.ParseUint(rest[6], 10, 64) // field 9
	if err != nil {
		return procStat{}, fmt.Errorf("malformed stat flags: %w", err)
	}
	return procStat{PID: pid, Comm: string(b[open+1 : closing]), State: rest[0][0], PPid: ppid, Flags: flags, StartTime: start}, nil
}

// cgroup returns the content of /proc/NAME/cgroup; two processes of one container have identical content.
func (p Procfs) cgroup(name string) (string, error) {
	b, err := os.ReadFile(filepath.Join(p.root(), name, "cgroup"))
	if err != nil {
		return "", fmt.Errorf("read cgroup of %s: %w", name, err)
	}
	return string(b), nil
}

// cgroupNS returns the cgroup namespace link of /proc/NAME ("cgroup:[4026531835]").
func (p Procfs) cgroupNS(name string) (string, error) {
	l, err := os.Readlink(filepath.Join(p.root(), name, "ns", "cgroup"))
	if err != nil {
		return "", fmt.Errorf("read cgroup namespace of %s: %w", name, err)
	}
	return l, nil
}

// comm returns /proc/PID/comm, the name the kernel took from the executable (at most 15 bytes).
func (p Procfs) comm(pid int) (string, error) {
	b, err := os.ReadFile(filepath.Join(p.root(), strconv.Itoa(pid), "comm"))
	if err != nil {
		return "", fmt.Errorf("read comm of pid %d: %w", pid, err)
	}
	return strings.TrimSuffix(string(b), "\n"), nil
}

// pids lists the numeric entries of the proc root.
func (p Procfs) pids() ([]int, error) {
	entries, err := os.ReadDir(p.root())
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	var out []int
	for _, e := range entries {
		if n, err := strconv.Atoi(e.Name()); err == nil && n > 0 {
			out = append(out, n)
		}
	}
	return out, nil
}

// exited reports whether the process identified by (pid, starttime) is gone. A zombie counts as gone: it has
// exited, and where PID 1 reaps orphans slowly kill(pid, 0) keeps succeeding on it for seconds.
func (p Procfs) exited(pid int, start uint64) (bool, error) {
	st, err := p.stat(pid)
	if errors.Is(err, errGone) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	return st.State == 'Z' || st.State == 'X' || st.StartTime != start, nil
}
