//go:build e2e

package framework

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// cert-manager as hack/build-cert-manager.sh builds it and hack/images.sh cert-manager images it.
const (
	CertManagerVersion   = "v1.21.2"
	CertManagerNamespace = "cert-manager"
	CertManagerRelease   = "cert-manager"
)

// CertManagerImages are the controller, cainjector and webhook images.
func CertManagerImages() []string {
	var out []string
	for _, c := range []string{"controller", "cainjector", "webhook"} {
		out = append(out, "local.test/cert-manager-"+c+":"+CertManagerVersion)
	}
	return out
}

// InstallCertManager builds (cached) and loads the cert-manager images and installs cert-manager with its own
// Helm chart (kept by hack/build-cert-manager.sh in the cache), CRDs included, then waits for its three
// Deployments. Its webhook must be serving before any Certificate or Issuer can be created.
func (e *Env) InstallCertManager(ctx context.Context) error {
	if e.Provider.BuildsImages() {
		if _, err := run(ctx, nil, filepath.Join(e.Root, "hack", "images.sh"), "cert-manager"); err != nil {
			return fmt.Errorf("cert-manager images: %w", err)
		}
		for _, img := range CertManagerImages() {
			if err := e.Provider.LoadImage(ctx, ImageTar(e.Root, img)); err != nil {
				return fmt.Errorf("loading %s: %w", img, err)
			}
		}
	}
	chart := filepath.Join(CacheDir(), "cert-manager", "chart")
	args := []string{"upgrade", "--install", CertManagerRelease, chart, "-n", CertManagerNamespace,
		"--create-namespace", "--wait", "--timeout", "3m",
		"--set", "crds.enabled=true", "--set", "startupapicheck.enabled=false",
		// No cluster DNS on the local cluster; cert-manager needs none for CA and self-signed issuers.
		"--set", "podDnsPolicy=Default"}
	for _, c := range []struct{ key, name string }{{"image", "controller"}, {"webhook.image", "webhook"}, {"cainjector.image", "cainjector"}} {
		args = append(args, "--set", c.key+".repository=local.test/cert-manager-"+c.name,
			"--set", c.key+".tag="+CertManagerVersion, "--set", c.key+".pullPolicy=IfNotPresent")
	}
	if out, err := e.Helm(ctx, args...); err != nil {
		return fmt.Errorf("%w\n%s", err, out)
	}
	e.AlsoDump = appendUnique(e.AlsoDump, CertManagerNamespace)
	if err := WaitFor(ctx, 2*time.Minute, "cert-manager deployments available", func(ctx context.Context) (bool, error) {
		for _, name := range []string{"cert-manager", "cert-manager-webhook", "cert-manager-cainjector"} {
			d, err := e.Client.AppsV1().Deployments(CertManagerNamespace).Get(ctx, name, metav1.GetOptions{})
			if err != nil || !deploymentAvailable(d) {
				return false, nil
			}
		}
		return true, nil
	}); err != nil {
		return err
	}
	// Ready pods are not enough: cert-manager's own webhook must have its CA injected before the API server
	// accepts an Issuer. A server-side dry run of one says so.
	var last string
	if err := WaitFor(ctx, 2*time.Minute, "cert-manager's webhook accepting an Issuer", func(ctx context.Context) (bool, error) {
		cmd := exec.CommandContext(ctx, KubectlPath(), "--kubeconfig", e.Provider.Kubeconfig(), "apply", "--dry-run=server", "-f", "-")
		cmd.Stdin = strings.NewReader("apiVersion: cert-manager.io/v1\nkind: Issuer\nmetadata: {name: e2e-probe, namespace: " + CertManagerNamespace + "}\nspec: {selfSigned: {}}\n")
		out, err := cmd.CombinedOutput()
		last = string(out)
		return err == nil, nil
	}); err != nil {
		return fmt.Errorf("%w: %s", err, last)
	}
	return nil
}

// UninstallCertManager removes the release (the CRDs stay: the chart keeps them).
func (e *Env) UninstallCertManager(ctx context.Context) error {
	out, err := e.Helm(ctx, "uninstall", CertManagerRelease, "-n", CertManagerNamespace, "--wait", "--timeout", "2m")
	if err != nil {
		return fmt.Errorf("%w\n%s", err, out)
	}
	return nil
}
