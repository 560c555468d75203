//go:build e2e

package framework

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Kind uses an existing kind cluster (KIND=1, KIND_CLUSTER); images are loaded with `kind load image-archive`.
type Kind struct {
	Cluster string
	Root    string
	kubecfg string
}

func (k *Kind) Name() string       { return "kind" }
func (k *Kind) BuildsImages() bool { return true }
func (k *Kind) Kubeconfig() string { return k.kubecfg }

func (k *Kind) Up(ctx context.Context) error {
	out, err := run(ctx, os.Stderr, "kind", "get", "clusters")
	if err != nil {
		return err
	}
	if !slices.Contains(strings.Fields(out), k.Cluster) {
		return fmt.Errorf("kind cluster %q not found (have: %s); create it with `kind create cluster --name %s`",
			k.Cluster, strings.Join(strings.Fields(out), ", "), k.Cluster)
	}
	cfg, err := run(ctx, os.Stderr, "kind", "get", "kubeconfig", "--name", k.Cluster)
	if err != nil {
		return err
	}
	dir := filepath.Join(k.Root, "_output", "e2e")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	k.kubecfg = filepath.Join(dir, "kind-"+k.Cluster+".kubeconfig")
	return os.WriteFile(k.kubecfg, []byte(cfg), 0o600)
}

// Down leaves the kind cluster alone: the framework did not create it.
func (k *Kind) Down(context.Context) error { return nil }

func (k *Kind) LoadImage(ctx context.Context, tarPath string) error {
	_, err := run(ctx, os.Stderr, "kind", "load", "image-archive", tarPath, "--name", k.Cluster)
	return err
}

func (k *Kind) DumpDiagnostics(ctx context.Context, dir string) error {
	_, err := run(ctx, os.Stderr, "kind", "export", "logs", filepath.Join(dir, "cluster"), "--name", k.Cluster)
	return err
}

func (k *Kind) PodCIDR() netip.Prefix     { return netip.MustParsePrefix("10.244.0.0/16") }
func (k *Kind) PodNetworkReachable() bool { return false }

// Existing is any cluster given by E2E_KUBECONFIG; images must already be available to it.
type Existing struct{ Path string }

func (e *Existing) Name() string                                  { return "existing" }
func (e *Existing) BuildsImages() bool                            { return false }
func (e *Existing) Kubeconfig() string                            { return e.Path }
func (e *Existing) Up(context.Context) error                      { _, err := os.Stat(e.Path); return err }
func (e *Existing) Down(context.Context) error                    { return nil }
func (e *Existing) LoadImage(context.Context, string) error       { return nil }
func (e *Existing) DumpDiagnostics(context.Context, string) error { return nil }
func (e *Existing) PodCIDR() netip.Prefix                         { return netip.Prefix{} }
func (e *Existing) PodNetworkReachable() bool                     { return false }
