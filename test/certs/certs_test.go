// Package certs tests the self-managed certificate mode against a real kube-apiserver: the webhook creates its
// Secret, patches the caBundle, serves TLS the API server trusts, and keeps admitting through rotations.
package certs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/lastcall-dev/lastcall/internal/server"
	"github.com/lastcall-dev/lastcall/internal/testenv"
	"github.com/lastcall-dev/lastcall/pkg/mutate"
	"github.com/lastcall-dev/lastcall/pkg/webhook"
)

func freePort(t *testing.T) (string, int) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String(), l.Addr().(*net.TCPAddr).Port
}

// fingerprint identifies a certificate (cert-controller gives every serving certificate serial number 1).
func fingerprint(pemBytes []byte) string {
	b, _ := pem.Decode(pemBytes)
	if b == nil {
		return ""
	}
	sum := sha256.Sum256(b.Bytes)
	return hex.EncodeToString(sum[:])
}

func TestSelfManagedCertificatesSurviveRotation(t *testing.T) {
	testenv.Check(t)
	env := testenv.Environment()
	cfg, err := env.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	k8s, err := testenv.Client(env)
	if err != nil {
		t.Fatal(err)
	}
	if os.Getenv("CERTS_DEBUG") != "" {
		log, _ := server.NewLogger("console", "debug")
		ctrl.SetLogger(log)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	for _, ns := range []*corev1.Namespace{
		{ObjectMeta: metav1.ObjectMeta{Name: "lastcall-system"}},
		{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{mutate.LabelInject: "enabled"}}},
	} {
		if err := k8s.Create(ctx, ns); err != nil {
			t.Fatal(err)
		}
	}
	_, port := freePort(t)
	url := fmt.Sprintf("https://localhost:%d%s", port, webhook.Path)
	fail, none := admissionregistrationv1.Fail, admissionregistrationv1.SideEffectClassNone
	// failurePolicy Fail: any TLS or trust problem during a rotation fails a pod create and the test.
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "lastcall"},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name: "pods.lastcall.dev", FailurePolicy: &fail, SideEffects: &none, AdmissionReviewVersions: []string{"v1"},
			ClientConfig:      admissionregistrationv1.WebhookClientConfig{URL: &url},
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{mutate.LabelInject: "enabled"}},
			Rules: []admissionregistrationv1.RuleWithOperations{{Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}}},
		}}}
	if err := k8s.Create(ctx, mwc); err != nil {
		t.Fatal(err)
	}

	probe, _ := testenv.FreeAddr()
	metrics, _ := testenv.FreeAddr()
	done := make(chan error, 1)
	go func() {
		done <- server.Run(ctx, cfg, server.Options{
			Config: filepath.Join(t.TempDir(), "absent.yaml"), CertDir: t.TempDir(), CertMode: "self",
			CertSecret: "lastcall-webhook-tls", WebhookConfig: "lastcall", ServiceName: "lastcall-webhook",
			Namespace: "lastcall-system", Port: port, MetricsAddr: metrics, ProbeAddr: probe,
			ExtraDNSNames: []string{"localhost"},
			// Serving certificates renewed 3 s after they are issued: several rotations during the test.
			ServerCertValidity: time.Hour, RenewBefore: time.Hour - 3*time.Second, RotationCheck: time.Second,
		}, logr.Discard())
	}()
	if err := testenv.WaitReady(probe, done, 60*time.Second); err != nil {
		t.Fatal(err)
	}

	var sec corev1.Secret
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: "lastcall-system", Name: "lastcall-webhook-tls"}, &sec); err != nil {
		t.Fatalf("the webhook did not create its Secret: %v", err)
	}
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(mwc), mwc); err != nil {
		t.Fatal(err)
	}
	if ca := mwc.Webhooks[0].ClientConfig.CABundle; len(ca) == 0 || !bytes.Equal(ca, sec.Data["ca.crt"]) {
		t.Fatalf("caBundle not patched from the Secret's CA (bundle %d bytes)", len(ca))
	}

	// Admit pods for 12 s while serving certificates rotate underneath.
	serials, served := map[string]bool{}, map[string]bool{}
	var created int
	end := time.Now().Add(12 * time.Second)
	for i := 0; time.Now().Before(end); i++ {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("web-%d", i), Namespace: "shop"},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx:1.27"}}}}
		if err := k8s.Create(ctx, p); err != nil {
			t.Fatalf("pod %d failed during rotation: %v", i, err)
		}
		if p.Annotations[mutate.AnnotationInjected] != "web=nginx" {
			t.Fatalf("pod %d was not injected", i)
		}
		created++
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(&sec), &sec); err == nil {
			serials[fingerprint(sec.Data["tls.crt"])] = true
		}
		// What the server presents, to prove it reloads rotated certificates without a restart.
		if conn, err := tls.Dial("tcp", fmt.Sprintf("localhost:%d", port), &tls.Config{InsecureSkipVerify: true}); err == nil {
			served[hex.EncodeToString(sha256Sum(conn.ConnectionState().PeerCertificates[0].Raw))] = true
			conn.Close()
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(serials) < 3 {
		t.Fatalf("saw %d serving certificates in 12 s; the rotation did not happen, so the test proves nothing", len(serials))
	}
	if len(served) < 2 {
		t.Fatalf("the server presented %d certificate(s) in 12 s; it does not reload rotated ones", len(served))
	}
	t.Logf("%d pods admitted without a failure across %d serving certificates (%d seen on the wire)", created, len(serials), len(served))
}

func sha256Sum(b []byte) []byte { s := sha256.Sum256(b); return s[:] }
