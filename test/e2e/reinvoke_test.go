//go:build e2e

package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/lastcall-dev/lastcall/test/e2e/framework"
)

// addContainerWebhook is a second mutating webhook, served by the test process on loopback (the local
// cluster's apiserver runs on this host): it adds a container "added" to pods labelled e2e-add=yes.
type addContainerWebhook struct {
	calls int
}

func (h *addContainerWebhook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 4<<20))
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil || review.Request == nil {
		http.Error(w, "bad review", http.StatusBadRequest)
		return
	}
	h.calls++
	resp := &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: true}
	var pod corev1.Pod
	if err := json.Unmarshal(review.Request.Object.Raw, &pod); err == nil && findContainer(pod.Spec.Containers, "added") == nil {
		added := testappContainer("added", "serve", "-addr", ":8081")
		patch, _ := json.Marshal([]map[string]any{{"op": "add", "path": "/spec/containers/-", "value": added}})
		pt := admissionv1.PatchTypeJSONPatch
		resp.Patch, resp.PatchType = patch, &pt
	}
	review.Response = resp
	review.Request = nil
	out, _ := json.Marshal(review)
	w.Header().Set("Content-Type", "application/json")
	w.Write(out)
}

// selfSignedLoopback returns a TLS certificate for 127.0.0.1 and its PEM (the webhook's caBundle).
func selfSignedLoopback(t *testing.T) (tls.Certificate, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "e2e-add-container"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// Reinvocation: a second webhook, called after lastcall, adds a container; the apiserver calls lastcall again
// (reinvocationPolicy IfNeeded) and the added container is injected too.
func TestReinvocationSecondWebhook(t *testing.T) {
	t.Parallel()
	env := framework.Current(t)
	if env.Provider.Name() != "local" {
		t.Skip("the second webhook is served on the host's loopback: local provider only")
	}
	ctx := context.Background()
	ns := env.Namespace(t, optedIn)

	cert, caPEM := selfSignedLoopback(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &addContainerWebhook{}
	srv := &http.Server{Handler: h, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}, ReadHeaderTimeout: 5 * time.Second}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })

	// Named after lastcall's configuration: the apiserver calls webhooks in name order, so this one runs second.
	name := "zz-e2e-add-container-" + ns
	side := admissionregistrationv1.SideEffectClassNone
	url := "https://" + ln.Addr().String() + "/mutate"
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:                    "add-container.e2e.lastcall.dev",
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: caPEM},
			Rules:                   []admissionregistrationv1.RuleWithOperations{{Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create}, Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}}},
			NamespaceSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns}},
			ObjectSelector:          &metav1.LabelSelector{MatchLabels: map[string]string{"e2e-add": "yes"}},
			SideEffects:             &side,
			AdmissionReviewVersions: []string{"v1"},
			FailurePolicy:           ptr.To(admissionregistrationv1.Fail),
			ReinvocationPolicy:      ptr.To(admissionregistrationv1.NeverReinvocationPolicy),
			TimeoutSeconds:          ptr.To(int32(5)),
		}},
	}
	if _, err := env.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, mwc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		env.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(context.Background(), name, metav1.DeleteOptions{})
	})

	mk := func() *corev1.Pod {
		p := newPod("app", map[string]string{annDrainDelay: "1s", annDrainTimeout: "5s"}, testappContainer("app"))
		p.Labels = map[string]string{"e2e-add": "yes"}
		return p
	}
	// The apiserver picks up a new webhook configuration within a moment: wait with server-side dry runs.
	err = framework.WaitFor(ctx, 30*time.Second, "the second webhook to be called", func(ctx context.Context) (bool, error) {
		p, err := env.Client.CoreV1().Pods(ns).Create(ctx, mk(), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err == nil && findContainer(p.Spec.Containers, "added") != nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	p := createPod(t, env, ns, mk())
	added := findContainer(p.Spec.Containers, "added")
	if added == nil {
		t.Fatalf("the second webhook's container is missing: %v", p.Spec.Containers)
	}
	inj := p.Annotations[annInjected]
	if !strings.Contains(inj, "added=http") || !strings.Contains(inj, "app=http") {
		t.Errorf("%s = %q: want both app and added (lastcall reinvoked after the second webhook)", annInjected, inj)
	}
	for _, c := range p.Spec.Containers {
		if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil || c.Lifecycle.PreStop.Sleep.Seconds != 1 {
			t.Errorf("container %s: want a 1s native sleep preStop, got %+v", c.Name, c.Lifecycle)
		}
	}
	if g := ptr.Deref(p.Spec.TerminationGracePeriodSeconds, -1); g != 8 {
		t.Errorf("grace %d, want 8 (1s + 5s + 2s)", g)
	}
	if _, err := env.WaitForPodReady(ctx, ns, "app", 90*time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("second webhook called %d times; injected %q", h.calls, inj)
}
