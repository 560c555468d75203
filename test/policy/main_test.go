// Package policy runs lastcall's compiled admission policies (pkg/policy) on a real kube-apiserver (envtest,
// v1.37.2, built from source by hack/build-k8s.sh) and holds them to the engine's golden pods.
package policy

import (
	"fmt"
	"os"
	"testing"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

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
	return m.Run()
}
