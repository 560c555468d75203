//go:build e2e

package framework

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// lastcall as the suites install it.
const (
	LastcallNamespace  = "lastcall-system"
	LastcallRelease    = "lastcall"
	LastcallDeployment = "lastcall"
	LastcallWebhook    = "lastcall" // the MutatingWebhookConfiguration
	// LastcallPolicyRelease is the chart installed with mode=policy next to the webhook release: only the
	// admission policies (the CRD stays the webhook release's). The policies' names are fixed by the chart's
	// pre-rendered files: the MutatingAdmissionPolicy and its binding are both LastcallPolicy.
	LastcallPolicyRelease = "lastcall-policy"
	LastcallPolicy        = "lastcall"
	// LabelInject opts a namespace in (value "enabled") or a pod out (value "disabled").
	LabelInject = "lastcall.dev/inject"
)

// LastcallVersion is the image tag: $VERSION as the Makefile exports it, else the Makefile's default.
func LastcallVersion() string {
	if v := os.Getenv("VERSION"); v != "" {
		return v
	}
	return "v0.1.0-dev"
}

// LastcallImages are the webhook and shim images of LastcallVersion (hack/images.sh lastcall).
func LastcallImages() []string {
	v := LastcallVersion()
	return []string{"ghcr.io/lastcall-dev/lastcall-webhook:" + v, "ghcr.io/lastcall-dev/lastcall-shim:" + v}
}

// BuildLastcall builds static lastcall-webhook and lastcall-shim binaries of this clone into _output/e2e/bin and
// points hack/images.sh at them (LASTCALL_BIN_DIR), leaving bin/ to `make build`.
func BuildLastcall(ctx context.Context, root string) error {
	dir := filepath.Join(root, "_output", "e2e", "bin")
	// The webhook's main package is cmd/webhook; its binary (and hack/images.sh's input) is lastcall-webhook.
	for out, pkg := range map[string]string{"lastcall-webhook": "./cmd/webhook", "lastcall-shim": "./cmd/lastcall-shim"} {
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath",
			"-ldflags", "-s -w -X github.com/lastcall-dev/lastcall/pkg/version.Version="+LastcallVersion(),
			"-o", filepath.Join(dir, out), pkg)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %w: %s", pkg, err, b)
		}
	}
	return os.Setenv("LASTCALL_BIN_DIR", dir)
}

// InstallLastcall installs (or upgrades) lastcall with its Helm chart from the locally built images, with
// self-managed certificates, and waits until the Deployment is available and its CA bundle is in the webhook
// configuration. extra are more `--set` values.
func (e *Env) InstallLastcall(ctx context.Context, extra ...string) error {
	return e.InstallLastcallWith(ctx, nil, extra...)
}

// InstallLastcallWith is InstallLastcall with values files (e.g. charts/lastcall/values-ha.yaml) before the
// `--set` values. Every call states the whole configuration: values not given return to the chart's defaults.
func (e *Env) InstallLastcallWith(ctx context.Context, files []string, extra ...string) error {
	args := []string{"upgrade", "--install", LastcallRelease, "charts/lastcall", "-n", LastcallNamespace,
		"--create-namespace", "--wait", "--timeout", "3m",
		"--set", "image.tag=" + LastcallVersion(), "--set", "logLevel=debug"}
	for _, f := range files {
		args = append(args, "-f", f)
	}
	for _, s := range extra {
		args = append(args, "--set", s)
	}
	if out, err := e.Helm(ctx, args...); err != nil {
		return fmt.Errorf("%w\n%s", err, out)
	}
	e.AlsoDump = appendUnique(e.AlsoDump, LastcallNamespace)
	return e.WaitLastcallReady(ctx, 2*time.Minute)
}

// WaitLastcallReady waits for every wanted replica of the webhook to be available and the caBundle to be set.
func (e *Env) WaitLastcallReady(ctx context.Context, timeout time.Duration) error {
	return WaitFor(ctx, timeout, "lastcall webhook ready with its CA bundle", func(ctx context.Context) (bool, error) {
		d, err := e.Client.AppsV1().Deployments(LastcallNamespace).Get(ctx, LastcallDeployment, metav1.GetOptions{})
		if err != nil || !deploymentAvailable(d) {
			return false, nil
		}
		mwc, err := e.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, LastcallWebhook, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		for _, w := range mwc.Webhooks {
			if len(w.ClientConfig.CABundle) == 0 {
				return false, nil
			}
		}
		return true, nil
	})
}

func deploymentAvailable(d *appsv1.Deployment) bool {
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	return d.Status.ObservedGeneration >= d.Generation && d.Status.UpdatedReplicas == want &&
		d.Status.AvailableReplicas == want && d.Status.Replicas == want
}

// ScaleLastcall sets the webhook's replicas and waits for them (0: until no webhook pod is left).
func (e *Env) ScaleLastcall(ctx context.Context, replicas int) error {
	if _, err := e.Kubectl(ctx, "scale", "-n", LastcallNamespace, "deployment/"+LastcallDeployment, fmt.Sprintf("--replicas=%d", replicas)); err != nil {
		return err
	}
	if replicas > 0 {
		return e.WaitLastcallReady(ctx, 2*time.Minute)
	}
	return WaitFor(ctx, 2*time.Minute, "no lastcall webhook pod left", func(ctx context.Context) (bool, error) {
		pods, err := e.Client.CoreV1().Pods(LastcallNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=lastcall"})
		return err == nil && len(pods.Items) == 0, nil
	})
}

// InstallLastcallPolicy installs lastcall in policy mode with its Helm chart (mode=policy) as a second release
// next to the webhook's: the MutatingAdmissionPolicy, the warnings ValidatingAdmissionPolicy and their bindings,
// with the shim image of LastcallVersion, and nothing else (crds.install=false: the CRD belongs to the webhook
// release, and Helm refuses an object another release owns). The API server loads policies asynchronously:
// the caller waits until they apply.
func (e *Env) InstallLastcallPolicy(ctx context.Context) error {
	out, err := e.Helm(ctx, "upgrade", "--install", LastcallPolicyRelease, "charts/lastcall", "-n", LastcallNamespace,
		"--create-namespace", "--set", "mode=policy", "--set", "crds.install=false", "--set", "image.tag="+LastcallVersion())
	if err != nil {
		return fmt.Errorf("%w\n%s", err, out)
	}
	return nil
}

// UninstallLastcallPolicy removes the policy-mode release.
func (e *Env) UninstallLastcallPolicy(ctx context.Context) error {
	out, err := e.Helm(ctx, "uninstall", LastcallPolicyRelease, "-n", LastcallNamespace, "--wait", "--timeout", "1m")
	if err != nil {
		return fmt.Errorf("%w\n%s", err, out)
	}
	return nil
}

// LastcallPolicyControllerRelease is the chart installed with mode=policy and policyController.enabled next to
// the webhook release. With a release name that contains the chart's name, its fullname is the release name:
// the controller applies the policies LastcallPolicyControllerRelease+"-rendered" (policy.MutatingNames and
// ValidatingNames), owned by ClusterRole LastcallPolicyController, and its metrics Service is
// LastcallPolicyControllerRelease+"-metrics".
const (
	LastcallPolicyControllerRelease = "lastcall-ctl"
	LastcallPolicyController        = LastcallPolicyControllerRelease + "-policy-controller"
)

// InstallLastcallPolicyController installs lastcall in policy mode with the policy controller
// (lastcall-webhook --policy-controller, the same image as the webhook's) as a second release next to the
// webhook's, without the CRD (the webhook release owns it), and waits until the controller's Deployment is
// available. extra are more `--set` values. The controller applies its policies when it starts, and the API
// server loads them asynchronously: the caller waits until they apply. Not together with
// InstallLastcallPolicy: both would serve the opted-in namespaces.
func (e *Env) InstallLastcallPolicyController(ctx context.Context, extra ...string) error {
	args := []string{"upgrade", "--install", LastcallPolicyControllerRelease, "charts/lastcall", "-n", LastcallNamespace,
		"--create-namespace", "--wait", "--timeout", "3m",
		"--set", "mode=policy", "--set", "policyController.enabled=true", "--set", "crds.install=false",
		"--set", "image.tag=" + LastcallVersion(), "--set", "logLevel=debug"}
	for _, s := range extra {
		args = append(args, "--set", s)
	}
	if out, err := e.Helm(ctx, args...); err != nil {
		return fmt.Errorf("%w\n%s", err, out)
	}
	e.AlsoDump = appendUnique(e.AlsoDump, LastcallNamespace)
	return WaitFor(ctx, 2*time.Minute, "lastcall policy controller available", func(ctx context.Context) (bool, error) {
		d, err := e.Client.AppsV1().Deployments(LastcallNamespace).Get(ctx, LastcallPolicyController, metav1.GetOptions{})
		return err == nil && deploymentAvailable(d), nil
	})
}

// UninstallLastcallPolicyController removes the policy controller's release. It does not wait for the policies
// the controller applied: the garbage collector deletes them after their owner, the release's ClusterRole.
func (e *Env) UninstallLastcallPolicyController(ctx context.Context) error {
	out, err := e.Helm(ctx, "uninstall", LastcallPolicyControllerRelease, "-n", LastcallNamespace, "--wait", "--timeout", "1m")
	if err != nil {
		return fmt.Errorf("%w\n%s", err, out)
	}
	return nil
}

// LastcallReplicas is the webhook Deployment's wanted number of replicas.
func (e *Env) LastcallReplicas(ctx context.Context) (int, error) {
	d, err := e.Client.AppsV1().Deployments(LastcallNamespace).Get(ctx, LastcallDeployment, metav1.GetOptions{})
	if err != nil {
		return 0, err
	}
	if d.Spec.Replicas == nil {
		return 1, nil
	}
	return int(*d.Spec.Replicas), nil
}

// LastcallLogs returns the logs of every webhook pod, concatenated.
func (e *Env) LastcallLogs(ctx context.Context) string {
	out, _ := e.Kubectl(ctx, "logs", "-n", LastcallNamespace, "-l", "app.kubernetes.io/name=lastcall", "--tail=-1", "--prefix")
	return out
}

func appendUnique(s []string, v string) []string {
	for _, x := range s {
		if x == v {
			return s
		}
	}
	return append(s, v)
}
