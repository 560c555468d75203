//go:build e2e

package framework

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"time"
)

// Provider is a cluster the suites run against.
type Provider interface {
	// Name is local, kind or existing.
	Name() string
	// Up starts the cluster (local) or checks that it is reachable (kind, existing).
	Up(ctx context.Context) error
	// Down stops what Up started; a no-op for clusters the framework does not own.
	Down(ctx context.Context) error
	// Kubeconfig is the path of an admin kubeconfig, valid after Up.
	Kubeconfig() string
	// LoadImage makes an image tarball (hack/images.sh) available to the cluster's container runtime.
	LoadImage(ctx context.Context, tarPath string) error
	// BuildsImages reports whether the suites should build image tarballs for LoadImage (false: the images
	// must already be available to the cluster).
	BuildsImages() bool
	// DumpDiagnostics writes the cluster's own logs (components, runtime) into dir.
	DumpDiagnostics(ctx context.Context, dir string) error
	// PodCIDR is the pod network; PodNetworkReachable says whether this process can open connections to pod
	// addresses directly (otherwise tests go through the apiserver's pod proxy).
	PodCIDR() netip.Prefix
	PodNetworkReachable() bool
}

// FromEnv picks the provider: E2E_KUBECONFIG -> existing, KIND=1 -> kind (KIND_CLUSTER, default "kind"),
// otherwise local (hack/cluster/local.sh).
func FromEnv(root string) (Provider, error) {
	if kc := os.Getenv("E2E_KUBECONFIG"); kc != "" {
		return &Existing{Path: kc}, nil
	}
	if os.Getenv("KIND") == "1" {
		name := os.Getenv("KIND_CLUSTER")
		if name == "" {
			name = "kind"
		}
		return &Kind{Cluster: name, Root: root}, nil
	}
	return NewLocal(root), nil
}

// run executes a command, streaming its stderr to ours (progress output) and returning its stdout.
func run(ctx context.Context, stderr io.Writer, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = stderr
	cmd.WaitDelay = 10 * time.Second
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return out.String(), nil
}
