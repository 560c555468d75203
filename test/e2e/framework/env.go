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

// Start prepares a cluster for a suite or a demo: build lastcall and the images (unless the provider does not
// build images or E2E_SKIP_IMAGES=1), bring the cluster up, connect, load the images and run opts.Setup. On
// error the cluster may be up; the caller decides whether to bring it down.
func Start(ctx context.Context, opts Options) (*Env, error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	p, err := FromEnv(root)
	if err != nil {
		return nil, err
	}
	logf("provider %s", p.Name())
	env := &Env{Provider: p, Root: root}
	if p.BuildsImages() && os.Getenv("E2E_SKIP_IMAGES") != "1" {
		if opts.BuildLastcall {
			t0 := time.Now()
			if err := BuildLastcall(ctx, root); err != nil {
				return env, fmt.Errorf("building lastcall: %w", err)
			}
			logf("lastcall binaries built (%.1fs)", time.Since(t0).Seconds())
		}
		for _, target := range opts.ImageTargets {
			t0 := time.Now()
			if _, err := run(ctx, os.Stderr, filepath.Join(root, "hack", "images.sh"), target); err != nil {
				return env, fmt.Errorf("building images: %w", err)
			}
			logf("images %s ready (%.1fs)", target, time.Since(t0).Seconds())
		}
	}
	t0 := time.Now()
	upCtx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	if err := p.Up(upCtx); err != nil {
		env.dumpCluster(ctx, "TestMain-up")
		return env, fmt.Errorf("cluster up: %w", err)
	}
	logf("cluster up in %.1fs, kubeconfig %s", time.Since(t0).Seconds(), p.Kubeconfig())
	if err := env.connect(ctx); err != nil {
		env.dumpCluster(ctx, "TestMain-connect")
		return env, err
	}
	if p.BuildsImages() {
		for _, img := range opts.Images {
			t1 := time.Now()
			if err := p.LoadImage(ctx, ImageTar(root, img)); err != nil {
				return env, fmt.Errorf("loading %s: %w", img, err)
			}
			logf("loaded %s (%.1fs)", img, time.Since(t1).Seconds())
		}
	}
	if opts.Setup != nil {
		t1 := time.Now()
		if err := opts.Setup(ctx, env); err != nil {
			env.dumpCluster(ctx, "TestMain-setup")
			return env, fmt.Errorf("setup: %w", err)
		}
		logf("setup done (%.1fs)", time.Since(t1).Seconds())
	}
	return env, nil
}

// Main is a TestMain body: Start (build images, bring the cluster up, load images, setup), run the tests, and,
// unless E2E_KEEP=1, bring it down and check that nothing was left behind (local provider). Returns the exit code.
func Main(m *testing.M, opts Options) int {
	ctx := context.Background()
	var procs []Process
	env, err := Start(ctx, opts)
	if env == nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	p := env.Provider
	code := func() int {
		if err != nil {
			fmt.Fprintln(os.Stderr, "e2e:", err)
			return 1
		}
		if l, ok := p.(*Local); ok {
			procs = l.Processes()
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

// Logf prints a timestamped progress line on stderr, as the framework does.
func Logf(format string, a ...any) { logf(format, a...) }

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
	if v := os.Getenv("E2E_POD_CIDR"); v != "" {
		if e.podCIDR, err = netip.ParsePrefix(v); err != nil {
			return fmt.Errorf("E2E_POD_CIDR=%q: %w", v, err)
		}
	}
	if !e.podCIDR.IsValid() {
		nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err == nil && len(nodes.Items) > 0 && nodes.Items[0].Spec.PodCIDR != "" {
			e.podCIDR, _ = netip.ParsePrefix(nodes.Items[0].Spec.PodCIDR)
		}
	}
	return nil
}

// PodCIDR is the cluster's pod network: E2E_POD_CIDR, the provider's, or the first node's spec.podCIDR (may
// be invalid for an existing cluster that says nowhere). Load is only ever sent to addresses inside it.
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
