package layering

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/lastcall-dev/lastcall/"

// deps lists the packages pattern links (not its tests), as `go list -deps` does.
func deps(t *testing.T, pattern string) []string {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", pattern)
	cmd.Dir = "../.."
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps %s: %v\n%s", pattern, err, out)
	}
	return strings.Fields(string(out))
}

func TestPkgDoesNotImportInternal(t *testing.T) {
	for _, d := range deps(t, "./pkg/...") {
		if strings.HasPrefix(d, module+"internal/") {
			t.Errorf("./pkg/... links %s: pkg/ must not import internal/", d)
		}
	}
}

func TestCLIDependencies(t *testing.T) {
	forbidden := []string{"sigs.k8s.io/controller-runtime", "k8s.io/client-go", "github.com/prometheus/"}
	all := deps(t, "./cmd/lastcall")
	for _, d := range all {
		for _, f := range forbidden {
			if strings.HasPrefix(d, f) {
				t.Errorf("the CLI links %s (forbidden: %s); see the package doc", d, f)
			}
		}
	}
	if len(all) == 0 {
		t.Fatal("go list found no dependencies of ./cmd/lastcall")
	}
}

func TestShimDependencies(t *testing.T) {
	allowed := []string{module + "pkg/shim", module + "pkg/version", module + "cmd/lastcall-shim", "golang.org/x/sys/"}
	for _, d := range deps(t, "./cmd/lastcall-shim") {
		ok := false
		for _, a := range allowed {
			ok = ok || d == a || (strings.HasSuffix(a, "/") && strings.HasPrefix(d, a))
		}
		if !ok {
			t.Errorf("the shim links %s; it may link only %v and the standard library", d, allowed)
		}
	}
}
