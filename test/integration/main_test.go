// Package integration runs lastcall's webhook server, exactly as the binary wires it, against a real
// kube-apiserver and etcd (controller-runtime envtest; binaries built from source by hack/build-k8s.sh).
package integration

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/lastcall-dev/lastcall/api/v1alpha1"
	"github.com/lastcall-dev/lastcall/internal/server"
	"github.com/lastcall-dev/lastcall/pkg/webhook"
)

var (
	cfg       *rest.Config
	k8s       client.Client
	probeAddr string
)

// requireReal: make test sets LASTCALL_REQUIRE_REAL=1, so missing binaries fail the run instead of skipping it.
func requireReal() bool { return os.Getenv("LASTCALL_REQUIRE_REAL") == "1" }

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if _, err := os.Stat(filepath.Join(os.Getenv("KUBEBUILDER_ASSETS"), "kube-apiserver")); err != nil {
		if requireReal() {
			fmt.Fprintln(os.Stderr, "KUBEBUILDER_ASSETS has no kube-apiserver: run hack/build-k8s.sh (make deps)")
			return 1
		}
		fmt.Fprintln(os.Stderr, "skipping integration tests: no kube-apiserver in KUBEBUILDER_ASSETS")
		return 0
	}
	fail := admissionregistrationv1.Fail
	none := admissionregistrationv1.SideEffectClassNone
	ifNeeded := admissionregistrationv1.IfNeededReinvocationPolicy
	path := webhook.Path
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		WebhookInstallOptions: envtest.WebhookInstallOptions{
			MutatingWebhooks: []*admissionregistrationv1.MutatingWebhookConfiguration{{
				ObjectMeta: metav1.ObjectMeta{Name: "lastcall"},
				TypeMeta:   metav1.TypeMeta{Kind: "MutatingWebhookConfiguration", APIVersion: "admissionregistration.k8s.io/v1"},
				Webhooks: []admissionregistrationv1.MutatingWebhook{{
					Name: "pods.lastcall.dev",
					// Fail, unlike the chart's Ignore: here a webhook error must break the test, not pass silently.
					FailurePolicy: &fail, SideEffects: &none, ReinvocationPolicy: &ifNeeded,
					AdmissionReviewVersions: []string{"v1"},
					ClientConfig:            admissionregistrationv1.WebhookClientConfig{Service: &admissionregistrationv1.ServiceReference{Name: "lastcall", Namespace: "default", Path: &path}},
					NamespaceSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"lastcall.dev/inject": "enabled"}},
					ObjectSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
						Key: "lastcall.dev/inject", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"disabled"}}}},
					Rules: []admissionregistrationv1.RuleWithOperations{{
						Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
						Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
					}},
				}},
			}},
		},
	}
	var err error
	cfg, err = env.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "envtest:", err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = v1alpha1.AddToScheme(scheme)
	k8s, err = client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wo := env.WebhookInstallOptions
	probeAddr = freeAddr()
	policy := filepath.Join(os.TempDir(), fmt.Sprintf("lastcall-policy-%d.yaml", os.Getpid()))
	_ = os.WriteFile(policy, []byte("defaultProfile: http\n"), 0o600)
	defer os.Remove(policy)
	done := make(chan error, 1)
	go func() {
		done <- server.Run(ctx, cfg, server.Options{
			Config: policy, CertDir: wo.LocalServingCertDir, CertMode: "external", Port: wo.LocalServingPort,
			MetricsAddr: freeAddr(), ProbeAddr: probeAddr,
		}, logr.Discard())
	}()
	if err := waitReady(done); err != nil {
		fmt.Fprintln(os.Stderr, "webhook server:", err)
		return 1
	}
	return m.Run()
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func waitReady(done chan error) error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			return fmt.Errorf("exited: %w", err)
		default:
		}
		resp, err := http.Get("http://" + probeAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("not ready after 60s")
}
