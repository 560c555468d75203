//go:build e2e

package framework

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// DiagnosticsDir is _output/e2e-diagnostics/<test> in the clone.
func (e *Env) DiagnosticsDir(name string) string {
	return filepath.Join(e.Root, "_output", "e2e-diagnostics", strings.NewReplacer("/", "_", " ", "_").Replace(name))
}

// DumpOnFailure registers (when called before the test ends) or performs the failure dump. Namespace already
// does it for the namespaces it creates; call it in a test that works in other namespaces.
func (e *Env) DumpOnFailure(t testing.TB, namespaces ...string) {
	t.Helper()
	dir := e.DiagnosticsDir(t.Name())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := e.Dump(ctx, dir, namespaces...); err != nil {
		t.Logf("diagnostics incomplete: %v", err)
	}
	t.Logf("diagnostics: %s", dir)
}

// Dump writes into dir: every pod as YAML, `kubectl describe`, events (all namespaces), the logs of every
// container (current and previous) in the given namespaces (all when none given), nodes, and the cluster's
// component logs from the provider.
func (e *Env) Dump(ctx context.Context, dir string, namespaces ...string) error {
	if err := os.MkdirAll(filepath.Join(dir, "pods"), 0o755); err != nil {
		return err
	}
	var errs []string
	save := func(file string, args ...string) {
		out, err := e.Kubectl(ctx, args...)
		if err != nil {
			errs = append(errs, err.Error())
		}
		os.WriteFile(filepath.Join(dir, file), []byte(out), 0o644)
	}
	save("pods.yaml", "get", "pods", "-A", "-o", "yaml")
	save("describe-pods.txt", "describe", "pods", "-A")
	save("events.txt", "get", "events", "-A", "--sort-by=.lastTimestamp", "-o", "wide")
	save("nodes.yaml", "get", "nodes", "-o", "yaml")
	save("all.txt", "get", "all,mutatingwebhookconfigurations,validatingwebhookconfigurations", "-A", "-o", "wide")
	if e.Client != nil {
		if len(namespaces) > 0 {
			namespaces = append(namespaces, e.AlsoDump...)
		}
		if len(namespaces) == 0 {
			namespaces = []string{metav1.NamespaceAll}
		}
		for _, ns := range namespaces {
			pods, err := e.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				errs = append(errs, err.Error())
				continue
			}
			for _, p := range pods.Items {
				e.dumpPodLogs(ctx, dir, &p)
			}
		}
	}
	if e.Provider != nil {
		if err := e.Provider.DumpDiagnostics(ctx, dir); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

func (e *Env) dumpPodLogs(ctx context.Context, dir string, p *corev1.Pod) {
	var names []string
	for _, c := range p.Spec.InitContainers {
		names = append(names, c.Name)
	}
	for _, c := range p.Spec.Containers {
		names = append(names, c.Name)
	}
	for _, c := range names {
		for _, prev := range []bool{false, true} {
			b, err := e.Client.CoreV1().Pods(p.Namespace).GetLogs(p.Name, &corev1.PodLogOptions{Container: c, Previous: prev, Timestamps: true}).DoRaw(ctx)
			if err != nil || len(b) == 0 {
				continue
			}
			suffix := ""
			if prev {
				suffix = ".previous"
			}
			os.WriteFile(filepath.Join(dir, "pods", fmt.Sprintf("%s_%s_%s%s.log", p.Namespace, p.Name, c, suffix)), b, 0o644)
		}
	}
}

// dumpCluster is the TestMain-level dump (no test, maybe no client yet).
func (e *Env) dumpCluster(ctx context.Context, name string) {
	dir := e.DiagnosticsDir(name)
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if e.Client != nil {
		e.Dump(ctx, dir)
	} else if e.Provider != nil {
		os.MkdirAll(dir, 0o755)
		e.Provider.DumpDiagnostics(ctx, dir)
	}
	fmt.Fprintln(os.Stderr, "e2e: diagnostics:", dir)
}
