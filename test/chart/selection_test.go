package chart_test

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
	"math/big"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// TestChartSelectsPods installs the chart's own webhook configuration into a real kube-apiserver, pointed at
// a recording HTTPS server, and checks which pod creations the apiserver sends to it: the namespaceSelector,
// objectSelector and matchConditions together, in both namespace modes.
func TestChartSelectsPods(t *testing.T) {
	c := newClient(t, apiserver(t))
	ctx := context.Background()
	rec := startRecorder(t)

	namespaces := map[string]map[string]string{
		"sel-enabled":     {"lastcall.dev/inject": "enabled"},
		"sel-observe":     {"lastcall.dev/inject": "observe"},
		"sel-plain":       nil,
		"sel-disabled":    {"lastcall.dev/inject": "disabled"},
		"sel-monitoring":  {"lastcall.dev/inject": "enabled"},
		releaseNamespace:  {"lastcall.dev/inject": "enabled"},
		"kube-system":     {"lastcall.dev/inject": "enabled"},
		"kube-public":     {"lastcall.dev/inject": "enabled"},
		"kube-node-lease": {"lastcall.dev/inject": "enabled"},
	}
	for name, labels := range namespaces {
		ns := &corev1.Namespace{}
		err := c.Get(ctx, client.ObjectKey{Name: name}, ns)
		if apierrors.IsNotFound(err) {
			ns.Name = name
			err = c.Create(ctx, ns)
		}
		if err != nil {
			t.Fatalf("namespace %s: %v", name, err)
		}
		if labels != nil {
			ns.Labels = mergeLabels(ns.Labels, labels)
			if err := c.Update(ctx, ns); err != nil {
				t.Fatalf("label namespace %s: %v", name, err)
			}
		}
	}

	type podCase struct {
		name, namespace string
		labels          map[string]string
		annotations     map[string]string
		windows         bool
		called          bool
	}
	common := func(ns string, called bool) []podCase {
		return []podCase{
			{name: "plain", namespace: ns, called: called},
			{name: "label-disabled", namespace: ns, labels: map[string]string{"lastcall.dev/inject": "disabled"}},
			{name: "annotation-false", namespace: ns, annotations: map[string]string{"lastcall.dev/inject": "false"}},
			{name: "annotation-disabled", namespace: ns, annotations: map[string]string{"lastcall.dev/inject": "disabled"}},
			{name: "annotation-true", namespace: ns, annotations: map[string]string{"lastcall.dev/inject": "true"}, called: called},
			{name: "windows", namespace: ns, windows: true},
			{name: "mirror", namespace: ns, annotations: map[string]string{"kubernetes.io/config.mirror": "abc"}},
		}
	}
	excluded := func() []podCase {
		var out []podCase
		for _, ns := range []string{releaseNamespace, "kube-system", "kube-public", "kube-node-lease"} {
			out = append(out, podCase{name: "plain", namespace: ns})
		}
		return out
	}

	for _, mode := range []struct {
		name  string
		args  []string
		cases []podCase
	}{
		{"opt-in namespaces (default)", nil, concatCases(
			common("sel-enabled", true),
			// Observe mode is selected too: the webhook labels those pods for the shutdown observer.
			common("sel-observe", true),
			[]podCase{{name: "plain", namespace: "sel-plain"}, {name: "plain", namespace: "sel-disabled"}},
			excluded(),
		)},
		{"all namespaces but excluded ones", []string{"--set", "webhook.namespaceSelector.mode=all", "--set", "webhook.namespaceSelector.excludeNamespaces={sel-monitoring}"}, concatCases(
			common("sel-plain", true),
			[]podCase{{name: "plain", namespace: "sel-enabled", called: true}, {name: "plain", namespace: "sel-observe", called: true}, {name: "plain", namespace: "sel-disabled"}, {name: "plain", namespace: "sel-monitoring"}},
			excluded(),
		)},
	} {
		t.Run(mode.name, func(t *testing.T) {
			mwc := find(t, decodeAll(t, helmTemplate(t, mode.args...)), "MutatingWebhookConfiguration", releaseName)
			mwc.SetName("selection-test")
			pointAt(t, mwc, rec)
			if err := c.Create(ctx, mwc); err != nil {
				t.Fatalf("install the chart's webhook configuration: %v", err)
			}
			t.Cleanup(func() { _ = c.Delete(ctx, mwc) })

			create := func(pc podCase) {
				t.Helper()
				pod := &corev1.Pod{
					ObjectMeta: metav1.ObjectMeta{Name: pc.name, Namespace: pc.namespace, Labels: pc.labels, Annotations: pc.annotations},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "nginx",
						// Restricted, because another test makes the release namespace enforce it.
						SecurityContext: &corev1.SecurityContext{
							AllowPrivilegeEscalation: ptrTo(false), RunAsNonRoot: ptrTo(true),
							Capabilities:   &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
							SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
						}}}},
				}
				if _, ok := pc.annotations["kubernetes.io/config.mirror"]; ok {
					pod.Spec.NodeName = "node-1" // the apiserver requires it of a mirror pod
				}
				if pc.windows {
					pod.Spec.OS = &corev1.PodOS{Name: corev1.Windows}
					pod.Spec.Containers[0].SecurityContext = nil // Linux-only fields
				}
				if err := c.Create(ctx, pod, client.DryRunAll); err != nil {
					t.Fatalf("dry-run create %s/%s: %v", pc.namespace, pc.name, err)
				}
			}
			// The apiserver loads webhook configurations asynchronously: wait until a pod that must be sent arrives.
			canary := mode.cases[0]
			deadline := time.Now().Add(30 * time.Second)
			for {
				rec.reset()
				create(canary)
				if rec.seen(canary.namespace + "/" + canary.name) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the apiserver never called the webhook for the canary pod")
				}
				time.Sleep(200 * time.Millisecond)
			}
			for _, pc := range mode.cases {
				rec.reset()
				create(pc)
				key := pc.namespace + "/" + pc.name
				if got := rec.seen(key); got != pc.called {
					t.Errorf("pod %s (labels %v, annotations %v, windows %v): webhook called = %v, want %v", key, pc.labels, pc.annotations, pc.windows, got, pc.called)
				}
			}
		})
	}
}

func ptrTo[T any](v T) *T { return &v }

func concatCases[T any](lists ...[]T) []T {
	var out []T
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}

func mergeLabels(a, b map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

// pointAt replaces the chart's Service reference by the recorder's URL and CA.
func pointAt(t testing.TB, mwc *unstructured.Unstructured, rec *recorder) {
	t.Helper()
	hooks, _ := mwc.Object["webhooks"].([]any)
	for _, h := range hooks {
		hook := h.(map[string]any)
		hook["clientConfig"] = map[string]any{"url": rec.url, "caBundle": rec.caBundle}
	}
}

// recorder is an HTTPS admission endpoint that allows everything and remembers which pods it saw.
type recorder struct {
	url      string
	caBundle []byte
	mu       sync.Mutex
	pods     map[string]bool
}

func (r *recorder) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pods = map[string]bool{}
}

func (r *recorder) seen(key string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pods[key]
}

func startRecorder(t testing.TB) *recorder {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{url: "https://" + ln.Addr().String() + "/mutate-v1-pod", caBundle: certPEM, pods: map[string]bool{}}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var review admissionv1.AdmissionReview
		if err := json.NewDecoder(req.Body).Decode(&review); err != nil || review.Request == nil {
			http.Error(w, "bad review", http.StatusBadRequest)
			return
		}
		rec.mu.Lock()
		rec.pods[review.Request.Namespace+"/"+review.Request.Name] = true
		rec.mu.Unlock()
		review.Response = &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: true}
		review.Request = nil
		_ = json.NewEncoder(w).Encode(&review)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return rec
}
