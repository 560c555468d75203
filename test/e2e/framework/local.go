//go:build e2e

package framework

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// Local is the single-node cluster of hack/cluster/local.sh on this machine.
type Local struct {
	Script   string // hack/cluster/local.sh
	StateDir string // $LASTCALL_CLUSTER_DIR or /var/tmp/lastcall-cluster
	kubecfg  string
}

// NewLocal returns the local provider of the clone at root.
func NewLocal(root string) *Local {
	dir := os.Getenv("LASTCALL_CLUSTER_DIR")
	if dir == "" {
		dir = "/var/tmp/lastcall-cluster"
	}
	return &Local{Script: filepath.Join(root, "hack", "cluster", "local.sh"), StateDir: dir}
}

func (l *Local) Name() string       { return "local" }
func (l *Local) BuildsImages() bool { return true }
func (l *Local) Kubeconfig() string { return l.kubecfg }

// Up starts the cluster, or reuses one that is fully running (e.g. left by an earlier E2E_KEEP=1 run).
func (l *Local) Up(ctx context.Context) error {
	if err := exec.CommandContext(ctx, l.Script, "status").Run(); err == nil {
		out, err := run(ctx, os.Stderr, l.Script, "kubeconfig")
		if err != nil {
			return err
		}
		l.kubecfg = strings.TrimSpace(out)
		logf("reusing the running local cluster (hack/cluster/local.sh down stops it)")
		return nil
	}
	out, err := run(ctx, os.Stderr, l.Script, "up")
	if err != nil {
		return err
	}
	l.kubecfg = strings.TrimSpace(lastLine(out))
	if l.kubecfg == "" {
		return fmt.Errorf("local.sh up printed no kubeconfig path")
	}
	return nil
}

func (l *Local) Down(ctx context.Context) error {
	_, err := run(ctx, os.Stderr, l.Script, "down")
	return err
}

func (l *Local) LoadImage(ctx context.Context, tarPath string) error {
	_, err := run(ctx, os.Stderr, l.Script, "load", tarPath)
	return err
}

func (l *Local) DumpDiagnostics(ctx context.Context, dir string) error {
	_, err := run(ctx, os.Stderr, l.Script, "logs", filepath.Join(dir, "cluster"))
	return err
}

func (l *Local) PodCIDR() netip.Prefix     { return netip.MustParsePrefix("10.244.0.0/24") }
func (l *Local) PodNetworkReachable() bool { return true }

// Process is a process the local cluster recorded (PID and start time, so a recycled PID is not confused).
type Process struct {
	Name      string
	PID       int
	StartTime string
}

// Processes returns the components recorded under the state dir and the containerd shims of the cluster.
// Take it while the cluster runs; after Down, Leftovers checks that none of them survived.
func (l *Local) Processes() []Process {
	var ps []Process
	pidDir := filepath.Join(l.StateDir, "run", "pids")
	entries, _ := os.ReadDir(pidDir)
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(pidDir, e.Name()))
		if err != nil {
			continue
		}
		f := strings.Fields(string(b))
		if len(f) != 2 {
			continue
		}
		pid, _ := strconv.Atoi(f[0])
		ps = append(ps, Process{Name: e.Name(), PID: pid, StartTime: f[1]})
	}
	// containerd shims: their -address is this cluster's containerd socket (containerd 1.6 writes no shim.pid)
	sock := filepath.Join(l.StateDir, "run", "containerd", "containerd.sock")
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range procs {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if !strings.Contains(args[0], "containerd-shim") {
			continue
		}
		for i := 0; i+1 < len(args); i++ {
			if args[i] == "-address" && args[i+1] == sock {
				pid, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(f, "/proc/"), "/cmdline"))
				if st, ok := procState(pid); ok {
					ps = append(ps, Process{Name: "containerd-shim", PID: pid, StartTime: st.start})
				}
				break
			}
		}
	}
	return ps
}

type pstat struct{ state, start string }

// procState reads /proc/PID/stat: state (field 3) and start time (field 22).
func procState(pid int) (pstat, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return pstat{}, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return pstat{}, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return pstat{}, false
	}
	return pstat{state: f[0], start: f[19]}, true
}

// Leftovers lists what a stopped local cluster left on the machine: any of procs still alive (zombies count
// as gone), mounts under the state dir, the cr0 bridge, KUBE-/CNI-/LASTCALL- iptables chains, pod cgroups.
func (l *Local) Leftovers(procs []Process) []string {
	var left []string
	for _, p := range procs {
		if st, ok := procState(p.PID); ok && st.state != "Z" && st.start == p.StartTime {
			left = append(left, fmt.Sprintf("process %s (pid %d) still running", p.Name, p.PID))
		}
	}
	if f, err := os.Open("/proc/self/mounts"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if fs := strings.Fields(sc.Text()); len(fs) > 1 && strings.HasPrefix(fs[1], l.StateDir+"/") {
				left = append(left, "mount "+fs[1])
			}
		}
		f.Close()
	}
	if _, err := net.InterfaceByName("cr0"); err == nil {
		left = append(left, "bridge cr0")
	}
	for _, save := range []string{"iptables-save", "ip6tables-save"} {
		out, err := exec.Command(save).Output()
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(line, ":KUBE-") || strings.HasPrefix(line, ":CNI-") || strings.HasPrefix(line, ":LASTCALL-") {
				left = append(left, save+" chain "+strings.Fields(line)[0][1:])
			}
		}
	}
	if m, _ := filepath.Glob("/sys/fs/cgroup/*/kubepods"); len(m) > 0 {
		left = append(left, "cgroups "+strings.Join(m, " "))
	}
	return left
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
