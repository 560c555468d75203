// Package integration runs lastcall's webhook server, exactly as the binary wires it, against a real
// kube-apiserver and etcd (controller-runtime envtest; binaries built from source by hack/build-k8s.sh).
package integration

import (
	"context"
	"fmt"
	"os"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/lastcall-dev/lastcall/internal/testenv"
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
	env := testenv.Environment()
	env.WebhookInstallOptions = testenv.WebhookInstall(
		&metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
			Key: "lastcall.dev/inject", Operator: metav1.LabelSelectorOpIn, Values: []string{"enabled", "observe"}}}},
		&metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
			Key: "lastcall.dev/inject", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"disabled"}}}})
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
	srv, err := testenv.StartServer(ctx, cfg, env, "defaultProfile: http\n")
	if err != nil {
		fmt.Fprintln(os.Stderr, "webhook server:", err)
		return 1
	}
	defer srv.Stop()
	probeAddr, certDir, policyFile = srv.ProbeAddr, srv.CertDir, srv.PolicyFile
	return m.Run()
}
