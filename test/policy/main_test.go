// Package policy runs lastcall's compiled admission policies (pkg/policy) on a real kube-apiserver (envtest,
// v1.37.2, built from source by hack/build-k8s.sh) and holds them to the engine's golden pods.
package policy

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/lastcall-dev/lastcall/internal/testenv"
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
	return testenv.WebhookInstall(&metav1.LabelSelector{MatchLabels: map[string]string{webhookLabel: "yes"}}, nil)
}

// startWebhook runs lastcall's webhook server as the binary wires it.
func startWebhook(ctx context.Context, env *envtest.Environment) error {
	// Its request logs would only interleave with the measurement; without a logger controller-runtime prints
	// a warning with a stack trace instead.
	ctrllog.SetLogger(logr.Discard())
	srv, err := testenv.StartServer(ctx, cfg, env, "defaultProfile: http\n")
	if err != nil {
		return err
	}
	go func() { <-ctx.Done(); srv.Stop() }()
	return nil
}
