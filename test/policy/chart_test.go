package policy

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/lastcall-dev/lastcall/internal/testenv"
	"github.com/lastcall-dev/lastcall/pkg/mutate"
)

func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	bin := filepath.Join(os.Getenv("KUBEBUILDER_ASSETS"), "helm")
	if _, err := os.Stat(bin); err != nil {
		if testenv.RequireReal() {
			t.Fatalf("helm not in %s (make deps)", os.Getenv("KUBEBUILDER_ASSETS"))
		}
		t.Skip("helm not built (make deps)")
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+t.TempDir(), "HELM_CONFIG_HOME="+t.TempDir(), "HELM_DATA_HOME="+t.TempDir())
	err := cmd.Run()
	if err != nil {
		return stdout.String(), &helmError{err, stderr.String()}
	}
	return stdout.String(), nil
}

type helmError struct {
	err    error
	stderr string
}

func (e *helmError) Error() string { return e.err.Error() + ": " + e.stderr }

// The chart in mode=policy installs the admission policies and no webhook; the API server accepts them and
// they inject pods; on a cluster older than 1.36, or with policy values the pre-rendered policies were not
// compiled for, the chart fails with a message that says what to do.
func TestChartPolicyMode(t *testing.T) {
	chart := filepath.Join("..", "..", "charts", "lastcall")
	out, err := helm(t, "template", "lastcall", chart, "-n", "lastcall-system", "--set", "mode=policy", "--kube-version", "1.37.2")
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"Deployment", "MutatingWebhookConfiguration", "Service", "ConfigMap"} {
		if strings.Contains(out, "\nkind: "+kind+"\n") {
			t.Errorf("mode=policy renders a %s", kind)
		}
	}
	if strings.Contains(out, "@@") {
		t.Error("a placeholder is left in the rendering")
	}
	apply(t, []byte(out), &metav1.LabelSelector{MatchLabels: map[string]string{"chart-policy-mode": "yes"}})
	namespace(t, "chart-policy", map[string]string{"chart-policy-mode": "yes"}, nil)
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "chart-policy"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx:1.27"}}}}
	deadline := time.Now().Add(60 * time.Second)
	for {
		got, _, err := create(p, true)
		if err == nil && got.Annotations[mutate.AnnotationInjected] == "web=nginx" {
			if img := got.Spec.InitContainers[0].Image; img != "ghcr.io/lastcall-dev/lastcall-shim:v0.1.0-dev" {
				t.Errorf("shim image %q: want the chart's appVersion", img)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the chart's policies do not inject after 60s (%v)", err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--kube-version", "1.35.2"}, "needs Kubernetes >= 1.36"},
		{[]string{"--kube-version", "1.37.2", "--set", "policy.strict=true"}, "lastcall policy render --policy FILE"},
		{[]string{"--kube-version", "1.37.2", "--set", "webhook.namespaceSelector.excludeNamespaces={ci}"}, "--exclude-namespaces"},
	} {
		args := append([]string{"template", "lastcall", chart, "-n", "lastcall-system", "--set", "mode=policy"}, tc.args...)
		_, err := helm(t, args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("helm %s: error %v, want one that says %q", strings.Join(tc.args, " "), err, tc.want)
		}
	}
}
