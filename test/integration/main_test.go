// Package integration runs lastcall's webhook server, exactly as the binary wires it, against a real
// kube-apiserver and etcd (controller-runtime envtest; binaries built from source by hack/build-k8s.sh).
package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/lastcall-dev/lastcall/internal/server"
	"github.com/lastcall-dev/lastcall/internal/testenv"
	"github.com/lastcall-dev/lastcall/pkg/webhook"
)

var (
	cfg       *rest.Config
	k8s       client.Client
	probeAddr string
	// certDir and policyFile are what the suite's webhook server runs with; tests that start their own
	// server use them too.
	certDir, policyFile string
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if err := testenv.Available(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		if testenv.RequireReal() {
			return 1
		}
		return 0
	}
	fail := admissionregistrationv1.Fail
	none := admissionregistrationv1.SideEffectClassNone
	ifNeeded := admissionregistrationv1.IfNeededReinvocationPolicy
	path := webhook.Path
	env := testenv.Environment()
	env.WebhookInstallOptions = envtest.WebhookInstallOptions{
		MutatingWebhooks: []*admissionregistrationv1.MutatingWebhookConfiguration{{
			ObjectMeta: metav1.ObjectMeta{Name: "lastcall"},
			TypeMeta:   metav1.TypeMeta{Kind: "MutatingWebhookConfiguration", APIVersion: "admissionregistration.k8s.io/v1"},
			Webhooks: []admissionregistrationv1.MutatingWebhook{{
				Name: "pods.lastcall.dev",
				// Fail, unlike the chart's Ignore: here a webhook error must break the test, not pass silently.
				FailurePolicy: &fail, SideEffects: &none, ReinvocationPolicy: &ifNeeded,
				AdmissionReviewVersions: []string{"v1"},
				ClientConfig:            admissionregistrationv1.WebhookClientConfig{Service: &admissionregistrationv1.ServiceReference{Name: "lastcall", Namespace: "default", Path: &path}},
				NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
					Key: "lastcall.dev/inject", Operator: metav1.LabelSelectorOpIn, Values: []string{"enabled", "observe"}}}},
				ObjectSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
					Key: "lastcall.dev/inject", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"disabled"}}}},
				Rules: []admissionregistrationv1.RuleWithOperations{{
					Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
					Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
				}},
			}},
		}},
	}
	var err error
	cfg, err = env.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "envtest:", err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	k8s, err = testenv.Client(env)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wo := env.WebhookInstallOptions
	probeAddr, _ = testenv.FreeAddr()
	metricsAddr, _ := testenv.FreeAddr()
	policy := filepath.Join(os.TempDir(), fmt.Sprintf("lastcall-policy-%d.yaml", os.Getpid()))
	certDir, policyFile = wo.LocalServingCertDir, policy
	_ = os.WriteFile(policy, []byte("defaultProfile: http\n"), 0o600)
	defer os.Remove(policy)
	done := make(chan error, 1)
	go func() {
		done <- server.Run(ctx, cfg, server.Options{
			Config: policy, CertDir: wo.LocalServingCertDir, CertMode: "external", Port: wo.LocalServingPort,
			MetricsAddr: metricsAddr, ProbeAddr: probeAddr,
		}, logr.Discard())
	}()
	if err := testenv.WaitReady(probeAddr, done, 60*time.Second); err != nil {
		fmt.Fprintln(os.Stderr, "webhook server:", err)
		return 1
	}
	return m.Run()
}
