//go:build e2e

package framework

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Env is the cluster a suite runs against, set up once by Main.
type Env struct {
	Provider Provider
	Root     string // the clone
	Config   *rest.Config
	Client   kubernetes.Interface
	podCIDR  netip.Prefix
	// AlsoDump are namespaces whose pod logs every failure dump includes (e.g. lastcall's own).
	AlsoDump []string
}

var current *Env

// Current returns the Env that Main set up; it fails the test when there is none (run through TestMain).
func Current(t testing.TB) *Env {
	t.Helper()
	if current == nil {
		t.Fatal("no e2e environment: the package's TestMain must call framework.Main")
	}
	return current
}

// Options for Main.
type Options struct {
	// Images are image references (see ImageTar) loaded into the cluster after Up.
	Images []string
	// ImageTargets are the hack/images.sh targets that build them (e.g. "base", "testapp", "lastcall").
	ImageTargets []string
	// BuildLastcall builds lastcall-webhook and lastcall-shim into _output/e2e/bin before the image targets
	// run (hack/images.sh reads them from there through LASTCALL_BIN_DIR), so the suite tests this clone.
	BuildLastcall bool
	// Setup runs once after the cluster is up and the images are loaded, before the tests (e.g. InstallLastcall).
	Setup func(ctx context.Context, env *Env) error
}

// Main is a TestMain body: build images, bring the cluster up, load images, run the tests, and, unless
// E2E_KEEP=1, bring it down and check that nothing was left behind (local provider). Returns the exit code.
func Main(m *testing.M, opts Options) int {
	root, err := RepoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	p, err := FromEnv(root)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	ctx := context.Background()
	logf("provider %s", p.Name())
	if p.BuildsImages() && os.Getenv("E2E_SKIP_IMAGES") != "1" {
		if opts.BuildLastcall {
			t0 := time.Now()
			if err := BuildLastcall(ctx, root); err != nil {
				fmt.Fprintln(os.Stderr, "e2e: building lastcall:", err)
				return 1
			}
			logf("lastcall binaries built (%.1fs)", time.Since(t0).Seconds())
		}
		for _, target := range opts.ImageTargets {
			t0 := time.Now()
			if _, err := run(ctx, os.Stderr, filepath.Join(root, "hack", "images.sh"), target); err != nil {
				fmt.Fprintln(os.Stderr, "e2e: building images:", err)
				return 1
			}
			logf("images %s ready (%.1fs)", target, time.Since(t0).Seconds())
		}
	}
	env := &Env{Provider: p, Root: root}
	var procs []Process
	code := func() int {
		t0 := time.Now()
		upCtx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
		if err := p.Up(upCtx); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: cluster up:", err)
			env.dumpCluster(ctx, "TestMain-up")
			return 1
		}
		logf("cluster up in %.1fs, kubeconfig %s", time.Since(t0).Seconds(), p.Kubeconfig())
		if l, ok := p.(*Local); ok {
			procs = l.Processes()
		}
		if err := env.connect(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "e2e:", err)
			env.dumpCluster(ctx, "TestMain-connect")
			return 1
		}
		if p.BuildsImages() {
			for _, img := range opts.Images {
				t1 := time.Now()
				if err := p.LoadImage(ctx, ImageTar(root, img)); err != nil {
					fmt.Fprintln(os.Stderr, "e2e: loading", img+":", err)
					return 1
				}
				logf("loaded %s (%.1fs)", img, time.Since(t1).Seconds())
			}
		}
		if opts.Setup != nil {
			t1 := time.Now()
			if err := opts.Setup(ctx, env); err != nil {
				fmt.Fprintln(os.Stderr, "e2e: setup:", err)
				env.dumpCluster(ctx, "TestMain-setup")
				return 1
			}
			logf("setup done (%.1fs)", time.Since(t1).Seconds())
		}
		current = env
		code := m.Run()
		if l, ok := p.(*Local); ok {
			procs = l.Processes() // again: now with the shims of the pods the tests ran
			if out, err := run(ctx, io.Discard, l.Script, "rss"); err == nil {
				logf("cluster RSS after the tests: %s MiB (components, shims, pods)", strings.TrimSpace(out))
			}
		}
		return code
	}()
	if os.Getenv("E2E_KEEP") == "1" {
		logf("E2E_KEEP=1: cluster left running; KUBECONFIG=%s", p.Kubeconfig())
		return code
	}
	t0 := time.Now()
	downCtx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	if err := p.Down(downCtx); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: cluster down:", err)
		code = 1
	}
	logf("cluster down in %.1fs", time.Since(t0).Seconds())
	if l, ok := p.(*Local); ok {
		if left := l.Leftovers(procs); len(left) > 0 {
			fmt.Fprintln(os.Stderr, "e2e: the local cluster left things behind:")
			for _, s := range left {
				fmt.Fprintln(os.Stderr, "  -", s)
			}
			code = 1
		} else {
			logf("teardown check: no process, mount, bridge, iptables chain or pod cgroup left (%d processes checked)", len(procs))
		}
	}
	return code
}

func logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "[e2e %s] %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, a...))
}

func (e *Env) connect(ctx context.Context) error {
	cfg, cs, err := NewClient(e.Provider.Kubeconfig())
	if err != nil {
		return err
	}
	e.Config, e.Client = cfg, cs
	e.podCIDR = e.Provider.PodCIDR()
	if !e.podCIDR.IsValid() {
		nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err == nil && len(nodes.Items) > 0 && nodes.Items[0].Spec.PodCIDR != "" {
			e.podCIDR, _ = netip.ParsePrefix(nodes.Items[0].Spec.PodCIDR)
		}
	}
	return nil
}

// PodCIDR is the cluster's pod network (may be invalid for an existing cluster that does not say).
func (e *Env) PodCIDR() netip.Prefix { return e.podCIDR }

// KubectlPath is $LASTCALL_CACHE/bin/kubectl when built by hack/build-k8s.sh, else kubectl from PATH.
func KubectlPath() string {
	p := filepath.Join(CacheDir(), "bin", "kubectl")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	return "kubectl"
}

// Kubectl runs kubectl against the cluster and returns its combined output. Its discovery cache lives under
// _output/e2e, not ~/.kube.
func (e *Env) Kubectl(ctx context.Context, args ...string) (string, error) {
	full := append([]string{"--kubeconfig", e.Provider.Kubeconfig(),
		"--cache-dir", filepath.Join(e.Root, "_output", "e2e", "kubectl-cache")}, args...)
	out, err := exec.CommandContext(ctx, KubectlPath(), full...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %v: %w: %s", args, err, out)
	}
	return string(out), nil
}

// HelmPath is $LASTCALL_CACHE/bin/helm when built by hack/build-k8s.sh, else helm from PATH.
func HelmPath() string {
	p := filepath.Join(CacheDir(), "bin", "helm")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	return "helm"
}

// Helm runs helm against the cluster (e.g. `upgrade --install lastcall charts/lastcall ...`, run from the
// clone's root) and returns its combined output. Its caches and config live under _output/e2e/helm.
func (e *Env) Helm(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, HelmPath(), append([]string{"--kubeconfig", e.Provider.Kubeconfig()}, args...)...)
	cmd.Dir = e.Root
	h := filepath.Join(e.Root, "_output", "e2e", "helm")
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+h+"/cache", "HELM_CONFIG_HOME="+h+"/config", "HELM_DATA_HOME="+h+"/data")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("helm %v: %w: %s", args, err, out)
	}
	return string(out), nil
}
