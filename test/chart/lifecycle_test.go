package chart_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// TestHelmLifecycle installs the chart with helm into the envtest apiserver (no controllers run there, so no
// pod starts; this is about the objects), then checks the two promises about the webhook configuration:
//   - helm upgrade does not fight the webhook over caBundle (self mode: the webhook patches it in at runtime);
//   - helm uninstall leaves no MutatingWebhookConfiguration behind.
func TestHelmLifecycle(t *testing.T) {
	helm := tool(t, "helm")
	apiserver(t)
	c := newClient(t, envCfg)
	ctx := context.Background()
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, env.KubeConfig, 0o600); err != nil {
		t.Fatal(err)
	}
	// Helm 4 installs with server-side apply by default; client-side three-way merge is still an option.
	for _, serverSide := range []string{"true", "false"} {
		mode := map[string]string{"true": "server-side", "false": "client-side"}[serverSide]
		t.Run(mode+" apply", func(t *testing.T) {
			ns := "helm-" + mode
			helmRun := func(args ...string) {
				t.Helper()
				all := append(args, "--kubeconfig", kubeconfig, "--namespace", ns)
				if out, err := run(t, helm, all...); err != nil {
					t.Fatalf("helm %v: %v\n%s", args, err, out)
				}
			}
			// The CRD is already installed (by envtest, not by Helm), so the chart must not own it here.
			helmRun("install", releaseName, chartDir(t), "--create-namespace", "--set", "crds.install=false", "--server-side="+serverSide)
			t.Cleanup(func() { _, _ = run(t, helm, "uninstall", releaseName, "--kubeconfig", kubeconfig, "--namespace", ns) })

			var mwc admissionregistrationv1.MutatingWebhookConfiguration
			if err := c.Get(ctx, client.ObjectKey{Name: releaseName}, &mwc); err != nil {
				t.Fatalf("after helm install: %v", err)
			}
			if len(mwc.Webhooks) != 1 || len(mwc.Webhooks[0].ClientConfig.CABundle) != 0 {
				t.Fatalf("want one webhook without caBundle, got %+v", mwc.Webhooks)
			}

			// What the webhook does in self mode: write the CA bundle with its own field manager.
			ca := []byte("-----BEGIN CERTIFICATE-----\nlastcall-test\n-----END CERTIFICATE-----\n")
			mwc.Webhooks[0].ClientConfig.CABundle = ca
			if err := c.Update(ctx, &mwc, client.FieldOwner("lastcall-webhook")); err != nil {
				t.Fatalf("patch caBundle: %v", err)
			}

			helmRun("upgrade", releaseName, chartDir(t), "--set", "crds.install=false", "--set", "webhook.timeoutSeconds=7", "--server-side="+serverSide)
			if err := c.Get(ctx, client.ObjectKey{Name: releaseName}, &mwc); err != nil {
				t.Fatal(err)
			}
			if got := mwc.Webhooks[0].TimeoutSeconds; got == nil || *got != 7 {
				t.Errorf("helm upgrade did not apply timeoutSeconds=7: %v", got)
			}
			if got := string(mwc.Webhooks[0].ClientConfig.CABundle); got != string(ca) {
				t.Errorf("helm upgrade changed the caBundle the webhook patched in: got %q", got)
			}

			helmRun("uninstall", releaseName)
			err := c.Get(ctx, client.ObjectKey{Name: releaseName}, &admissionregistrationv1.MutatingWebhookConfiguration{})
			if !apierrors.IsNotFound(err) {
				t.Errorf("after helm uninstall the MutatingWebhookConfiguration is still there (err %v)", err)
			}
		})
	}
}
