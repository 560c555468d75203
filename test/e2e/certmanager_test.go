//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/lastcall-dev/lastcall/test/e2e/framework"
)

// An existing CA ClusterIssuer, as a platform team would have one: a self-signed root in cert-manager's
// cluster resource namespace and a CA ClusterIssuer over it.
const existingIssuer = `apiVersion: cert-manager.io/v1
kind: ClusterIssuer
metadata:
  name: e2e-root
spec:
  selfSigned: {}
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata:
  name: e2e-platform-ca
  namespace: cert-manager
spec:
  isCA: true
  commonName: e2e-platform-ca
  secretName: e2e-platform-ca
  privateKey: {algorithm: ECDSA, size: 256}
  issuerRef: {name: e2e-root, kind: ClusterIssuer}
---
apiVersion: cert-manager.io/v1
kind: ClusterIssuer
metadata:
  name: e2e-platform-ca
spec:
  ca:
    secretName: e2e-platform-ca
`

const (
	phaseRenew        = "cert-manager-renewal"
	phaseIssuerChange = "issuer-change-new-ca"
)

// TestCertManagerMode runs lastcall with certificates from a real cert-manager (built from source by
// hack/build-cert-manager.sh): with the chart's own issuer chain, with an existing ClusterIssuer, and installed
// from the kustomize overlay. Each time the CA bundle is the one cainjector put into the webhook
// configuration, pods are injected, and a forced renewal (the Secret deleted, as `cmctl renew` would re-issue)
// costs no CREATE of a steady stream. Not parallel: it reinstalls the lastcall every other test uses.
func TestCertManagerMode(t *testing.T) {
	env := framework.Current(t)
	ctx := context.Background()
	t.Cleanup(func() {
		ctx := context.Background()
		if out, err := env.Kubectl(ctx, "delete", "--ignore-not-found", "--wait=false", "-n", framework.LastcallNamespace,
			"certificates.cert-manager.io,issuers.cert-manager.io", "--all"); err != nil {
			t.Logf("delete lastcall's cert-manager objects: %v %s", err, out)
		}
		// Back to the default install (self-managed certificates) for the tests after this one.
		if _, err := env.Client.CoreV1().Secrets(framework.LastcallNamespace).Get(ctx, tlsSecret, metav1.GetOptions{}); err == nil {
			_ = env.Client.CoreV1().Secrets(framework.LastcallNamespace).Delete(ctx, tlsSecret, metav1.DeleteOptions{})
		}
		if err := env.InstallLastcall(ctx); err != nil {
			t.Errorf("restore the default lastcall install: %v", err)
		}
		if err := env.UninstallCertManager(ctx); err != nil {
			t.Logf("uninstall cert-manager: %v", err)
		}
	})
	t0 := time.Now()
	if err := env.InstallCertManager(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("cert-manager %s installed in %.1fs", framework.CertManagerVersion, time.Since(t0).Seconds())

	t.Run("chart-issuer", func(t *testing.T) {
		if err := env.InstallLastcall(ctx, "certificates.mode=certManager"); err != nil {
			t.Fatal(err)
		}
		certManagerRenewalUnderStream(t, env, "lastcall-ca")
	})

	t.Run("existing-cluster-issuer", func(t *testing.T) {
		if out, err := kubectlApply(ctx, env, existingIssuer); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		t.Cleanup(func() {
			if out, err := kubectlStdin(context.Background(), env, existingIssuer, "delete", "--ignore-not-found", "-f", "-"); err != nil {
				t.Logf("delete the existing issuer: %v\n%s", err, out)
			}
		})
		// Changing the issuer changes the CA: measured under the stream, not asserted (see docs/install.md).
		s := startStream(t, env, env.Namespace(t, optedIn), chaosRate, chaosInFlight)
		time.Sleep(chaosSettle)
		s.fault(t, phaseIssuerChange, chaosSettle, func(ctx context.Context) error {
			if err := env.InstallLastcall(ctx, "certificates.mode=certManager",
				"certificates.certManager.issuerRef.name=e2e-platform-ca", "certificates.certManager.issuerRef.kind=ClusterIssuer"); err != nil {
				return err
			}
			_, err := waitCertManagerWired(ctx, env, "e2e-platform-ca")
			return err
		})
		s.halt()
		s.report(t, "changing the issuer (a new CA), failurePolicy Ignore")
		certManagerRenewalUnderStream(t, env, "e2e-platform-ca")
	})

	t.Run("kustomize-overlay", func(t *testing.T) {
		// The overlay installs the same objects as the chart: take the chart's release away first (its CRD and
		// namespace stay, the chart keeps them) and the Secret its certificates were in.
		if out, err := env.Helm(ctx, "uninstall", framework.LastcallRelease, "-n", framework.LastcallNamespace, "--wait"); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		_ = env.Client.CoreV1().Secrets(framework.LastcallNamespace).Delete(ctx, tlsSecret, metav1.DeleteOptions{})
		rendered, err := env.Kubectl(ctx, "kustomize", filepath.Join(env.Root, "config", "overlays", "cert-manager"))
		if err != nil {
			t.Fatal(err)
		}
		rendered = strings.ReplaceAll(rendered, "ghcr.io/lastcall-dev/lastcall-webhook:v0.1.0-dev", "ghcr.io/lastcall-dev/lastcall-webhook:"+framework.LastcallVersion())
		rendered = strings.ReplaceAll(rendered, "ghcr.io/lastcall-dev/lastcall-shim:v0.1.0-dev", "ghcr.io/lastcall-dev/lastcall-shim:"+framework.LastcallVersion())
		objects := withoutKinds(rendered, "Namespace", "CustomResourceDefinition")
		t.Cleanup(func() {
			if out, err := kubectlStdin(context.Background(), env, objects, "delete", "--ignore-not-found", "--wait=true", "-f", "-"); err != nil {
				t.Errorf("delete the kustomize install: %v\n%s", err, out)
			}
			_ = env.Client.CoreV1().Secrets(framework.LastcallNamespace).Delete(context.Background(), tlsSecret, metav1.DeleteOptions{})
		})
		if out, err := kubectlApply(ctx, env, rendered); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if err := env.WaitLastcallReady(ctx, 3*time.Minute); err != nil {
			t.Fatal(err)
		}
		certManagerRenewalUnderStream(t, env, "lastcall-ca")
	})
}

const tlsSecret = framework.LastcallRelease + "-webhook-tls"

// certManagerRenewalUnderStream checks the wiring (the Secret issued by issuer, the CA bundle injected from it,
// every replica serving it, a pod injected), then deletes the Secret under a steady stream of CREATEs and
// waits until cert-manager has issued a new one and every replica serves it.
func certManagerRenewalUnderStream(t *testing.T, env *framework.Env, issuer string) {
	t.Helper()
	ctx := context.Background()
	served, err := waitCertManagerWired(ctx, env, issuer)
	if err != nil {
		t.Fatal(err)
	}
	ns := env.Namespace(t, optedIn)
	probe := newPod("probe", nil, testappContainer("app"))
	probe.Spec.NodeName = noSuchNode // admission only
	if p := createPod(t, env, ns, probe); p.Annotations[annInjected] != "app=http" {
		t.Fatalf("pod not injected with cert-manager certificates: annotations %v", p.Annotations)
	}
	s := startStream(t, env, ns, chaosRate, chaosInFlight)
	time.Sleep(chaosSettle)
	s.fault(t, phaseRenew, chaosSettle, func(ctx context.Context) error {
		if err := env.Client.CoreV1().Secrets(framework.LastcallNamespace).Delete(ctx, tlsSecret, metav1.DeleteOptions{}); err != nil {
			return err
		}
		return waitServed(ctx, env, tlsSecret, served)
	})
	s.halt()
	order, m := s.report(t, fmt.Sprintf("certificates.mode=certManager (issuer %s), failurePolicy Ignore", issuer))
	for _, p := range order {
		if got := m[p]; got.Refused > 0 || got.Uninjected > 0 {
			t.Errorf("%s: %d refused, %d uninjected: %v", p, got.Refused, got.Uninjected, got.FirstErr)
		}
	}
}

// waitCertManagerWired waits until the Secret is issued by issuer, the CA bundle cainjector keeps in the
// webhook configuration holds the Secret's CA, and every replica serves the Secret's certificate, which the
// bundle verifies for the Service's name (what the API server checks). It returns the served certificate's
// hash. The bundle may hold more CAs: cainjector keeps the previous one while a CA changes.
func waitCertManagerWired(ctx context.Context, env *framework.Env, issuer string) (string, error) {
	var served, last string
	svc := "lastcall-webhook." + framework.LastcallNamespace + ".svc"
	err := framework.WaitFor(ctx, 3*time.Minute, "certificate from "+issuer+" issued, injected and served", func(ctx context.Context) (bool, error) {
		sec, err := env.Client.CoreV1().Secrets(framework.LastcallNamespace).Get(ctx, tlsSecret, metav1.GetOptions{})
		if err != nil || sec.Annotations["cert-manager.io/issuer-name"] != issuer {
			last = "secret not issued by " + issuer
			return false, nil
		}
		mwc, err := env.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, framework.LastcallWebhook, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		bundle := mwc.Webhooks[0].ClientConfig.CABundle
		caBlock, _ := pem.Decode(sec.Data["ca.crt"])
		if caBlock == nil || !bytes.Contains(bundle, pem.EncodeToMemory(caBlock)) {
			last = "caBundle does not hold the Secret's ca.crt"
			return false, nil
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(bundle) {
			last = "caBundle holds no certificate"
			return false, nil
		}
		cur, err := pemCertHash(sec.Data[corev1.TLSCertKey])
		if err != nil {
			return false, nil
		}
		pods, err := lastcallPods(ctx, env)
		if err != nil || len(pods) == 0 {
			return false, nil
		}
		for _, p := range pods {
			chain, err := servedChain(ctx, env, p)
			if err != nil || certHash(chain[0].Raw) != cur {
				last = fmt.Sprintf("pod %s does not serve the Secret's certificate %s yet (%v)", p.Name, cur, err)
				return false, nil
			}
			inter := x509.NewCertPool()
			for _, c := range chain[1:] {
				inter.AddCert(c)
			}
			if _, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: svc}); err != nil {
				last = fmt.Sprintf("pod %s: the caBundle does not verify its certificate: %v", p.Name, err)
				return false, nil
			}
		}
		served = cur
		return true, nil
	})
	if err != nil {
		return "", fmt.Errorf("%w (%s)", err, last)
	}
	return served, nil
}

func kubectlApply(ctx context.Context, env *framework.Env, manifest string) (string, error) {
	return kubectlStdin(ctx, env, manifest, "apply", "-f", "-")
}

func kubectlStdin(ctx context.Context, env *framework.Env, stdin string, args ...string) (string, error) {
	full := append([]string{"--kubeconfig", env.Provider.Kubeconfig()}, args...)
	cmd := exec.CommandContext(ctx, framework.KubectlPath(), full...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %v: %w", args, err)
	}
	return string(out), nil
}

// withoutKinds drops the documents of a multi-document YAML stream whose top-level kind is one of kinds.
func withoutKinds(stream string, kinds ...string) string {
	var keep []string
	for _, doc := range strings.Split(stream, "\n---\n") {
		drop := false
		for _, k := range kinds {
			drop = drop || strings.Contains("\n"+doc+"\n", "\nkind: "+k+"\n")
		}
		if !drop {
			keep = append(keep, doc)
		}
	}
	return strings.Join(keep, "\n---\n")
}
