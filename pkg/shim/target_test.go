package shim

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// fakeProc describes one process of a fixture /proc tree.
type fakeProc struct {
	pid, ppid int
	comm      string
	state     byte
	start     uint64
	cgroup    string
}

// procTree writes a fixture /proc with the given processes; self is the hook's own PID.
func procTree(t *testing.T, self int, procs ...fakeProc) Procfs {
	t.Helper()
	root := t.TempDir()
	for _, p := range procs {
		dir := filepath.Join(root, strconv.Itoa(p.pid))
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		state := p.state
		if state == 0 {
			state = 'S'
		}
		// The 52-field layout of a real stat line; starttime is field 22.
		stat := fmt.Sprintf("%d (%s) %c %d %d %d 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 %d 1000 100 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n",
			p.pid, p.comm, state, p.ppid, p.pid, p.pid, p.start)
		writeFile(t, filepath.Join(dir, "stat"), stat)
		writeFile(t, filepath.Join(dir, "comm"), p.comm+"\n")
		writeFile(t, filepath.Join(dir, "cgroup"), p.cgroup)
	}
	if err := os.Symlink(strconv.Itoa(self), filepath.Join(root, "self")); err != nil {
		t.Fatal(err)
	}
	return Procfs{Root: root}
}

// Cgroups as the kubelet lays them out with cgroup v1 and no cgroup namespace.
const (
	cgPause = "12:pids:/kubepods/burstable/pod1/aaaa\n1:name=systemd:/kubepods/burstable/pod1/aaaa\n"
	cgApp   = "12:pids:/kubepods/burstable/pod1/bbbb\n1:name=systemd:/kubepods/burstable/pod1/bbbb\n"
	cgOther = "12:pids:/kubepods/burstable/pod1/cccc\n1:name=systemd:/kubepods/burstable/pod1/cccc\n"
	cgPlain = "0::/\n"
)

func TestFindTarget(t *testing.T) {
	t.Parallel()
	// A pod with shareProcessNamespace: pause is PID 1, a sidecar's nginx started first, our app's nginx master
	// (with a worker) second, then the hook, exec'd through sh (both PPid 0, like any exec'd process).
	shared := []fakeProc{
		{pid: 1, comm: "pause", start: 10, cgroup: cgPause},
		{pid: 7, comm: "nginx", start: 50, cgroup: cgOther},
		{pid: 8, comm: "nginx", ppid: 7, start: 51, cgroup: cgOther},
		{pid: 20, comm: "nginx", start: 100, cgroup: cgApp},
		{pid: 21, comm: "nginx", ppid: 20, start: 101, cgroup: cgApp},
		{pid: 40, comm: "sh", start: 900, cgroup: cgApp},
		{pid: 41, comm: "lastcall-shim", ppid: 40, start: 901, cgroup: cgApp},
	}
	// hostPID: PID 1 is the host's init; containerd-shim (host cgroup) started the main process and, later, runc
	// exec'd the hook; a host daemon started before the container.
	hostPID := []fakeProc{
		{pid: 1, comm: "systemd", start: 1, cgroup: cgPlain},
		{pid: 300, comm: "kubelet", ppid: 1, start: 20, cgroup: cgOther},
		{pid: 500, comm: "containerd-shim", ppid: 1, start: 2000, cgroup: cgPause},
		{pid: 600, comm: "celery", ppid: 500, start: 2001, cgroup: cgApp},
		{pid: 601, comm: "celery", ppid: 600, start: 2002, cgroup: cgApp},
		{pid: 700, comm: "lastcall-shim", ppid: 500, start: 3000, cgroup: cgApp},
	}
	cases := []struct {
		name    string
		self    int
		procs   []fakeProc
		spec    string
		wantPID int
	}{
		{"auto picks PID 1 in an ordinary container", 30, []fakeProc{
			{pid: 1, comm: "nginx", start: 5, cgroup: cgPlain},
			{pid: 6, comm: "nginx", ppid: 1, start: 6, cgroup: cgPlain},
			{pid: 30, comm: "lastcall-shim", start: 700, cgroup: cgPlain},
		}, "auto", 1},
		{"auto in a shared namespace picks this container's oldest PPid-0 process, not pause or the sidecar", 41, shared, "auto", 20},
		{"auto skips a main process that is already a zombie", 41, append([]fakeProc{
			{pid: 19, comm: "php-fpm", state: 'Z', start: 90, cgroup: cgApp}}, shared...), "auto", 20},
		{"auto treats a PID 1 in another cgroup as foreign even when it is not named pause", 30, []fakeProc{
			{pid: 1, comm: "tini", start: 5, cgroup: cgOther},
			{pid: 12, comm: "celery", start: 50, cgroup: cgApp},
			{pid: 30, comm: "lastcall-shim", start: 700, cgroup: cgApp},
		}, "auto", 12},
		{"auto fails when only pause, another container and the hook exist", 41, []fakeProc{
			{pid: 1, comm: "pause", start: 10, cgroup: cgPause},
			{pid: 7, comm: "nginx", start: 50, cgroup: cgOther},
			{pid: 41, comm: "lastcall-shim", start: 901, cgroup: cgApp},
		}, "auto", 0},
		{"auto never picks a pause process even in its own cgroup", 41, []fakeProc{
			{pid: 1, comm: "pause", start: 10, cgroup: cgApp},
			{pid: 41, comm: "lastcall-shim", start: 901, cgroup: cgApp},
		}, "auto", 0},
		{"auto with hostPID picks this container's main process, not the host's init or an older host process", 700, hostPID, "auto", 600},
		{"auto with hostPID never picks the hook's own parent when the main process is gone", 701, []fakeProc{
			hostPID[0], hostPID[1], hostPID[2], {pid: 600, comm: "celery", ppid: 500, state: 'Z', start: 2001, cgroup: cgApp},
			{pid: 700, comm: "sh", ppid: 500, start: 3000, cgroup: cgApp},
			{pid: 701, comm: "lastcall-shim", ppid: 700, start: 3001, cgroup: cgApp}}, "auto", 0},
		{"auto with hostPID never picks a process of another cgroup when the container has none left", 700, []fakeProc{
			hostPID[0], hostPID[1], hostPID[2], hostPID[5]}, "auto", 0},
		{"auto with hostPID refuses to search when the hook is in the root cgroup", 30, []fakeProc{
			{pid: 1, comm: "systemd", start: 1, cgroup: cgOther},
			{pid: 5, comm: "sshd", start: 4, cgroup: cgPlain},
			{pid: 30, comm: "lastcall-shim", start: 700, cgroup: cgPlain},
		}, "auto", 0},
		{"name picks the oldest match in this container, not the older one in the sidecar", 41, shared, "name:nginx", 20},
		{"name fails when only another container has it", 41, shared, "name:redis", 0},
		{"pid picks exactly that process", 41, shared, "pid:21", 21},
		{"pid refuses the hook itself", 41, shared, "pid:41", 0},
		{"pid refuses a process that does not exist", 41, shared, "pid:999", 0},
		{"pid refuses a zombie", 41, append([]fakeProc{{pid: 19, comm: "php-fpm", state: 'Z', start: 90, cgroup: cgApp}}, shared...), "pid:19", 0},
		{"a comm with spaces and parentheses parses", 30, []fakeProc{
			{pid: 1, comm: "my (odd) app", start: 5, cgroup: cgPlain},
			{pid: 30, comm: "lastcall-shim", start: 700, cgroup: cgPlain},
		}, "auto", 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			spec, err := ParseTargetSpec(tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			got, err := procTree(t, tc.self, tc.procs...).FindTarget(spec)
			if tc.wantPID == 0 {
				if err == nil || !errors.Is(err, errNoTarget) && !errors.Is(err, errGone) {
					t.Fatalf("FindTarget(%s) = pid %d (%v), want a no-target error", tc.spec, got.PID, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("FindTarget(%s): %v", tc.spec, err)
			}
			if got.PID != tc.wantPID {
				t.Fatalf("FindTarget(%s) = pid %d (%s, %s), want %d", tc.spec, got.PID, got.Comm, got.Why, tc.wantPID)
			}
		})
	}
}

func TestParseTargetSpecRejectsBadValues(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"pid:", "pid:0", "pid:x", "name:", "process:1", "1"} {
		if _, err := ParseTargetSpec(s); err == nil {
			t.Errorf("ParseTargetSpec(%q) succeeded, want an error", s)
		}
	}
}

func TestParseSignal(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"SIGQUIT": "SIGQUIT", "QUIT": "SIGQUIT", "quit": "SIGQUIT", "sigquit": "SIGQUIT",
		"3": "SIGQUIT", " TERM ": "SIGTERM", "winch": "SIGWINCH", "SIGUSR1": "SIGUSR1", "40": "signal 40"} {
		sig, err := ParseSignal(in)
		if err != nil || SignalName(sig) != want {
			t.Errorf("ParseSignal(%q) = %s, %v; want %s", in, SignalName(sig), err, want)
		}
	}
	for _, in := range []string{"", "0", "65", "-1", "SIGFOO", "QUITT"} {
		if sig, err := ParseSignal(in); err == nil {
			t.Errorf("ParseSignal(%q) = %d, want an error", in, sig)
		}
	}
}
