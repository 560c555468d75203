// Package chart tests the install artifacts: the Helm chart (lint, goldens, schema), the kustomize config
// (parity with the chart) and the ShutdownProfile CRD against a real kube-apiserver (envtest).
//
// Tools come from $LASTCALL_CACHE/bin (hack/build-k8s.sh builds them). Without them the tests skip, unless
// LASTCALL_REQUIRE_REAL=1 (make test sets it): then a missing tool fails the run.
package chart_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

const (
	// The default install the goldens and the parity test use: `helm install lastcall charts/lastcall -n lastcall-system`.
	releaseName      = "lastcall"
	releaseNamespace = "lastcall-system"
)

// repoRoot is the module root, found from this file's location so tests work from any directory.
func repoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the test source")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

func chartDir(t testing.TB) string { return filepath.Join(repoRoot(t), "charts", "lastcall") }

// cacheBin mirrors hack/lib.sh: $LASTCALL_CACHE, else $XDG_CACHE_HOME/lastcall, else ~/.cache/lastcall.
func cacheBin() string {
	if c := os.Getenv("LASTCALL_CACHE"); c != "" {
		return filepath.Join(c, "bin")
	}
	base := os.Getenv("XDG_CACHE_HOME")
	if base == "" {
		home, _ := os.UserHomeDir()
		base = filepath.Join(home, ".cache")
	}
	return filepath.Join(base, "lastcall", "bin")
}

func requireReal() bool { return os.Getenv("LASTCALL_REQUIRE_REAL") == "1" }

// missing skips the test, or fails it when LASTCALL_REQUIRE_REAL=1.
func missing(t testing.TB, what string) {
	t.Helper()
	msg := what + " (run `make deps`, or hack/build-k8s.sh all)"
	if requireReal() {
		t.Fatal("LASTCALL_REQUIRE_REAL=1 and " + msg)
	}
	t.Skip(msg)
}

// tool finds a binary in the cache, then on PATH.
func tool(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join(cacheBin(), name)
	if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
		return p
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	missing(t, name+" not found in "+cacheBin()+" or on PATH")
	return ""
}

// run runs a command and returns stdout; on failure the error carries stderr.
func run(t testing.TB, bin string, args ...string) (string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+t.TempDir(), "HELM_CONFIG_HOME="+t.TempDir(), "HELM_DATA_HOME="+t.TempDir())
	if err := cmd.Run(); err != nil {
		return stdout.String(), errors.New(strings.TrimSpace(err.Error() + ": " + stderr.String()))
	}
	return stdout.String(), nil
}

// helmTemplate renders the chart as the default install with the given extra helm arguments.
func helmTemplate(t testing.TB, args ...string) string {
	t.Helper()
	helm := tool(t, "helm")
	all := append([]string{"template", releaseName, chartDir(t), "--namespace", releaseNamespace}, args...)
	out, err := run(t, helm, all...)
	if err != nil {
		t.Fatalf("helm %s: %v", strings.Join(all, " "), err)
	}
	return out
}

func kustomize(t testing.TB, dir string) string {
	t.Helper()
	kubectl := tool(t, "kubectl")
	out, err := run(t, kubectl, "kustomize", filepath.Join(repoRoot(t), dir))
	if err != nil {
		t.Fatalf("kubectl kustomize %s: %v", dir, err)
	}
	return out
}

// decodeAll splits a multi-document YAML stream into objects, dropping empty documents.
func decodeAll(t testing.TB, stream string) []*unstructured.Unstructured {
	t.Helper()
	var out []*unstructured.Unstructured
	r := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(stream)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("split YAML: %v", err)
		}
		var m map[string]any
		if err := yaml.Unmarshal(doc, &m); err != nil {
			t.Fatalf("decode YAML document: %v\n%s", err, doc)
		}
		if len(m) == 0 {
			continue
		}
		out = append(out, &unstructured.Unstructured{Object: m})
	}
}

// find returns the one object of that kind (and name, when not empty).
func find(t testing.TB, objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	var hits []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind && (name == "" || o.GetName() == name) {
			hits = append(hits, o)
		}
	}
	if len(hits) != 1 {
		t.Fatalf("want exactly one %s %q, found %d", kind, name, len(hits))
	}
	return hits[0]
}
