// Package testenv starts a real kube-apiserver and etcd (controller-runtime envtest, binaries built by
// hack/build-k8s.sh) with lastcall's CRD installed, for the suites that need an API server.
package testenv

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	goruntime "runtime"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/lastcall-dev/lastcall/api/v1alpha1"
)

// ErrNoAssets means KUBEBUILDER_ASSETS holds no kube-apiserver.
var ErrNoAssets = errors.New("KUBEBUILDER_ASSETS has no kube-apiserver: run hack/build-k8s.sh (make deps)")

// RequireReal is set by `make test`: a missing binary must fail the run instead of skipping it.
func RequireReal() bool { return os.Getenv("LASTCALL_REQUIRE_REAL") == "1" }

// Available reports whether the envtest binaries are there.
func Available() error {
	if _, err := os.Stat(filepath.Join(os.Getenv("KUBEBUILDER_ASSETS"), "kube-apiserver")); err != nil {
		return ErrNoAssets
	}
	return nil
}

// Skipper is the part of testing.TB that Check needs.
type Skipper interface {
	Helper()
	Fatal(args ...any)
	Skip(args ...any)
}

// Check fails (make test) or skips (plain go test) when the binaries are missing.
func Check(t Skipper) {
	t.Helper()
	if err := Available(); err != nil {
		if RequireReal() {
			t.Fatal(err)
		}
		t.Skip(err)
	}
}

// Environment returns an envtest environment with the ShutdownProfile CRD from config/crd/bases.
func Environment() *envtest.Environment {
	_, file, _, _ := goruntime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	return &envtest.Environment{CRDDirectoryPaths: []string{filepath.Join(root, "config", "crd", "bases")}, ErrorIfCRDPathMissing: true}
}

// Scheme knows the built-in types and lastcall's API.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(s)
	_ = v1alpha1.AddToScheme(s)
	return s
}

// Client returns a client for the environment.
func Client(env *envtest.Environment) (client.Client, error) {
	return client.New(env.Config, client.Options{Scheme: Scheme()})
}

// FreeAddr returns a free loopback address.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// WaitReady polls http://probe/readyz until it answers 200, done delivers (the server exited), or timeout.
func WaitReady(probe string, done <-chan error, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			return fmt.Errorf("webhook server exited: %w", err)
		default:
		}
		if resp, err := http.Get("http://" + probe + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("webhook not ready after %s", timeout)
}
