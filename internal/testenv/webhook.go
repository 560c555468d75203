package testenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/lastcall-dev/lastcall/internal/server"
	"github.com/lastcall-dev/lastcall/pkg/webhook"
)

// WebhookInstall is lastcall's pod webhook as envtest installs it in front of the in-process server, for the
// namespaces ns selects and the pods obj selects (nil: all). Its failurePolicy is Fail, unlike the chart's
// Ignore: in a test a webhook error must break the test, not pass silently.
func WebhookInstall(ns, obj *metav1.LabelSelector) envtest.WebhookInstallOptions {
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
				NamespaceSelector:       ns,
				ObjectSelector:          obj,
				Rules: []admissionregistrationv1.RuleWithOperations{{
					Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
					Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
				}},
			}},
		}},
	}
}

// Server is lastcall's webhook server running in-process, wired as the binary wires it.
type Server struct {
	ProbeAddr  string
	PolicyFile string // the policy file it runs with (removed by Stop)
	CertDir    string
}

// StartServer runs lastcall's webhook server behind env's WebhookInstallOptions with the given policy file
// content, until ctx ends, and returns once it is ready.
func StartServer(ctx context.Context, cfg *rest.Config, env *envtest.Environment, policy string) (*Server, error) {
	wo := env.WebhookInstallOptions
	probe, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	metrics, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	s := &Server{ProbeAddr: probe, CertDir: wo.LocalServingCertDir,
		PolicyFile: filepath.Join(os.TempDir(), fmt.Sprintf("lastcall-policy-%d.yaml", os.Getpid()))}
	if err := os.WriteFile(s.PolicyFile, []byte(policy), 0o600); err != nil {
		return nil, fmt.Errorf("writing the policy file: %w", err)
	}
	done := make(chan error, 1)
	go func() {
		done <- server.Run(ctx, cfg, server.Options{
			Config: s.PolicyFile, CertDir: wo.LocalServingCertDir, CertMode: "external", Port: wo.LocalServingPort,
			MetricsAddr: metrics, ProbeAddr: probe,
		}, logr.Discard())
	}()
	if err := WaitReady(probe, done, 60*time.Second); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// Stop removes what StartServer wrote; the server itself stops with its context.
func (s *Server) Stop() { _ = os.Remove(s.PolicyFile) }
