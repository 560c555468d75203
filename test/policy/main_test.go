// Package policy runs lastcall's compiled admission policies (pkg/policy) on a real kube-apiserver (envtest,
// v1.37.2, built from source by hack/build-k8s.sh) and holds them to the engine's golden pods.
package policy

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
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/lastcall-dev/lastcall/internal/server"
	"github.com/lastcall-dev/lastcall/internal/testenv"
	"github.com/lastcall-dev/lastcall/pkg/webhook"
)

var (
	cfg *rest.Config
	k8s client.Client
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	if err := testenv.Available(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		if testenv.RequireReal() {
			return 1
		}
		return 0
	}
	env := testenv.Environment()
	if latencyRun {
		env.WebhookInstallOptions = webhookInstall()
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
	if latencyRun {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		if err := startWebhook(ctx, env); err != nil {
			fmt.Fprintln(os.Stderr, "webhook server:", err)
			return 1
		}
	}
	return m.Run()
}

// webhookLabel selects the namespaces the in-process webhook serves in the latency measurement.
const webhookLabel = "policy-test.lastcall.dev/webhook"

func webhookInstall() envtest.WebhookInstallOptions {
	fail := admissionregistrationv1.Fail
	none := admissionregistrationv1.SideEffectClassNone
	ifNeeded := admissionregistrationv1.IfNeededReinvocationPolicy
	path := webhook.Path
	return envtest.WebhookInstallOptions{
		MutatingWebhooks: []*admissionregistrationv1.MutatingWebhookConfiguration{{
			ObjectMeta: metav1.ObjectMeta{Name: "lastcall"},
			TypeMeta:   metav1.TypeMeta{Kind: "MutatingWebhookConfiguration", APIVersion: "admissionregistration.k8s.io/v1"},
			Webhooks: []admissionregistrationv1.MutatingWebhook{{
				Name: "pods.lastcall.dev", FailurePolicy: &fail, SideEffects: &none, ReinvocationPolicy: &ifNeeded,
				AdmissionReviewVersions: []string{"v1"},
				ClientConfig:            admissionregistrationv1.WebhookClientConfig{Service: &admissionregistrationv1.ServiceReference{Name: "lastcall", Namespace: "default", Path: &path}},
				NamespaceSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{webhookLabel: "yes"}},
				Rules: []admissionregistrationv1.RuleWithOperations{{
					Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
					Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
				}},
			}},
		}},
	}
}

// startWebhook runs lastcall's webhook server as the binary wires it.
func startWebhook(ctx context.Context, env *envtest.Environment) error {
	wo := env.WebhookInstallOptions
	probe, _ := testenv.FreeAddr()
	metrics, _ := testenv.FreeAddr()
	file := filepath.Join(os.TempDir(), fmt.Sprintf("lastcall-policy-latency-%d.yaml", os.Getpid()))
	if err := os.WriteFile(file, []byte("defaultProfile: http\n"), 0o600); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() {
		done <- server.Run(ctx, cfg, server.Options{Config: file, CertDir: wo.LocalServingCertDir, CertMode: "external", Port: wo.LocalServingPort,
			MetricsAddr: metrics, ProbeAddr: probe}, logr.Discard())
	}()
	return testenv.WaitReady(probe, done, 60*time.Second)
}
