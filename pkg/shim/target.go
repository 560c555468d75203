package shim

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// pauseComm is the name of the pod sandbox's process. With shareProcessNamespace it is PID 1 in every container
// and must never be signalled: it would not stop the app, and its exit tears the sandbox down.
const pauseComm = "pause"

// TargetSpec says which process prestop signals: "auto", "pid:N" or "name:NAME".
type TargetSpec struct {
	PID  int    // set for pid:N
	Name string // set for name:NAME (matched against /proc/PID/comm)
}

// ParseTargetSpec parses the --target value.
func ParseTargetSpec(s string) (TargetSpec, error) {
	switch kind, val, _ := strings.Cut(s, ":"); {
	case s == "auto" || s == "":
		return TargetSpec{}, nil
	case kind == "pid":
		n, err := strconv.Atoi(val)
		if err != nil || n < 1 {
			return TargetSpec{}, fmt.Errorf("target %q: want pid:N with N >= 1", s)
		}
		return TargetSpec{PID: n}, nil
	case kind == "name" && val != "":
		return TargetSpec{Name: val}, nil
	default:
		return TargetSpec{}, fmt.Errorf("target %q: want auto, pid:N or name:NAME", s)
	}
}

// Target is the process prestop signals, identified by PID and start time so PID reuse cannot redirect a signal.
type Target struct {
	PID       int
	Comm      string
	StartTime uint64
	Why       string // how it was chosen, for the log
}

// errNoTarget marks selection failures; prestop maps them to ExitNoTarget.
var errNoTarget = errors.New("no target process")

// FindTarget resolves spec against the process table.
func (p Procfs) FindTarget(spec TargetSpec) (Target, error) {
	switch {
	case spec.PID != 0:
		return p.targetByPID(spec.PID)
	case spec.Name != "":
		return p.targetByName(spec.Name)
	default:
		return p.targetAuto()
	}
}

func (p Procfs) targetByPID(pid int) (Target, error) {
	self, err := p.statPath("self")
	if err != nil {
		return Target{}, err
	}
	if pid == self.PID {
		return Target{}, fmt.Errorf("pid %d is this hook itself: %w", pid, errNoTarget)
	}
	st, err := p.stat(pid)
	if err != nil {
		return Target{}, fmt.Errorf("pid %d: %w: %w", pid, errNoTarget, err)
	}
	if st.State == 'Z' || st.State == 'X' {
		return Target{}, fmt.Errorf("pid %d has already exited: %w", pid, errNoTarget)
	}
	return Target{PID: pid, Comm: p.name(st), StartTime: st.StartTime, Why: "--target pid:" + strconv.Itoa(pid)}, nil
}

// targetAuto picks PID 1 in an ordinary container. Otherwise PID 1 is not this container's: the sandbox's pause
// process (shareProcessNamespace), or the host's init (hostPID). This container's main process is then the
// earliest-started process of this hook's own cgroup that is a root of the container's process tree: its parent
// is outside the namespace (PPid 0, shared namespace) or in another cgroup (hostPID: containerd-shim or runc).
// The hook itself and its ancestors are roots too (runc execs the hook from outside), hence the exclusion and the
// start time. A process of another cgroup, the host's included, is never chosen.
func (p Procfs) targetAuto() (Target, error) {
	selfCg, err := p.cgroup("self")
	if err != nil {
		return Target{}, err
	}
	init, err := p.stat(1)
	if err != nil {
		return Target{}, fmt.Errorf("pid 1: %w", err)
	}
	initName := p.name(init)
	initCg, err := p.cgroup("1")
	if err != nil {
		return Target{}, err
	}
	if initName != pauseComm && initCg == selfCg {
		return Target{PID: 1, Comm: initName, StartTime: init.StartTime, Why: "PID 1 of this container"}, nil
	}
	if isRootCgroup(selfCg) && !p.ownCgroupNS() {
		// Every process of the host may share the root cgroup: "same cgroup" would not mean "same container".
		return Target{}, fmt.Errorf("PID 1 is %s in another cgroup and this hook runs in the root cgroup, so this container's processes cannot be told from the host's: %w",
			initName, errNoTarget)
	}
	cgOf := map[int]string{}
	inOwn := func(pid int) bool {
		cg, ok := cgOf[pid]
		if !ok {
			cg, _ = p.cgroup(strconv.Itoa(pid))
			cgOf[pid] = cg
		}
		return cg == selfCg
	}
	t, err := p.oldestInOwnCgroup(selfCg, func(st procStat, _ string) bool { return st.PPid == 0 || !inOwn(st.PPid) })
	if err != nil {
		return Target{}, fmt.Errorf("PID 1 is %s in another cgroup (shared process namespace or hostPID) and no other process shares this hook's cgroup: %w",
			initName, err)
	}
	t.Why = fmt.Sprintf("earliest-started process of this container's cgroup (PID 1 is %s in another cgroup: shared process namespace or hostPID)", initName)
	return t, nil
}

// isRootCgroup reports whether every hierarchy in a /proc/PID/cgroup text is at "/".
func isRootCgroup(cg string) bool {
	for _, line := range strings.Split(strings.TrimSpace(cg), "\n") {
		if i := strings.LastIndexByte(line, ':'); i < 0 || line[i+1:] != "/" {
			return false
		}
	}
	return true
}

// ownCgroupNS reports whether this hook has a cgroup namespace of its own (then "/" is the container's cgroup).
// When PID 1's namespace cannot be read, it assumes not: refusing is safer than signalling a host process.
func (p Procfs) ownCgroupNS() bool {
	self, err1 := p.cgroupNS("self")
	init, err2 := p.cgroupNS("1")
	return err1 == nil && err2 == nil && self != init
}

// targetByName picks the oldest process of this container named name: nginx's master starts before its workers.
func (p Procfs) targetByName(name string) (Target, error) {
	selfCg, err := p.cgroup("self")
	if err != nil {
		return Target{}, err
	}
	t, err := p.oldestInOwnCgroup(selfCg, func(_ procStat, comm string) bool { return comm == name })
	if err != nil {
		return Target{}, fmt.Errorf("no process named %q in this container: %w", name, err)
	}
	t.Why = "--target name:" + name
	return t, nil
}

// oldestInOwnCgroup returns the earliest-started live process other than this hook and its ancestors that
// shares cgroup selfCg, is neither pause nor a kernel thread, and satisfies keep. Processes that vanish while
// being read are skipped.
func (p Procfs) oldestInOwnCgroup(selfCg string, keep func(procStat, string) bool) (Target, error) {
	self, err := p.statPath("self")
	if err != nil {
		return Target{}, err
	}
	// The hook's ancestors (a shell that runs it, runc when hostPID shows it) are never the app.
	skip := map[int]bool{self.PID: true}
	for ppid := self.PPid; ppid > 1 && !skip[ppid] && len(skip) < 64; {
		skip[ppid] = true
		st, err := p.stat(ppid)
		if err != nil {
			break
		}
		ppid = st.PPid
	}
	pids, err := p.pids()
	if err != nil {
		return Target{}, err
	}
	var best *procStat
	var bestName string
	for _, pid := range pids {
		if skip[pid] {
			continue
		}
		st, err := p.stat(pid)
		if err != nil || st.State == 'Z' || st.State == 'X' || st.Flags&pfKthread != 0 {
			continue
		}
		name := p.name(st)
		if name == pauseComm || !keep(st, name) {
			continue
		}
		if cg, err := p.cgroup(strconv.Itoa(pid)); err != nil || cg != selfCg {
			continue
		}
		if best == nil || st.StartTime < best.StartTime || (st.StartTime == best.StartTime && st.PID < best.PID) {
			st := st
			best, bestName = &st, name
		}
	}
	if best == nil {
		return Target{}, errNoTarget
	}
	return Target{PID: best.PID, Comm: bestName, StartTime: best.StartTime}, nil
}

// name prefers /proc/PID/comm and falls back to the name in stat when comm cannot be read.
func (p Procfs) name(st procStat) string {
	if c, err := p.comm(st.PID); err == nil && c != "" {
		return c
	}
	return st.Comm
}
