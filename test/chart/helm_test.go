package chart_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestHelmLint(t *testing.T) {
	t.Parallel()
	helm := tool(t, "helm")
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"default values", nil},
		{"HA values", []string{"-f", filepath.Join(chartDir(t), "values-ha.yaml")}},
		{"cert-manager certificates in all-namespaces mode", []string{"--set", "certificates.mode=certManager", "--set", "webhook.namespaceSelector.mode=all"}},
		{"an existing Secret", []string{"--set", "certificates.mode=secret", "--set", "certificates.secretName=tls", "--set", "certificates.caBundle=Q0E="}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			args := append([]string{"lint", "--strict", chartDir(t), "--namespace", releaseNamespace}, tc.args...)
			if out, err := run(t, helm, args...); err != nil {
				t.Fatalf("helm lint: %v\n%s", err, out)
			}
		})
	}
}

// TestGolden renders the chart and compares with testdata/<name>.golden.yaml. Regenerate with
// UPDATE_GOLDEN=1 go test ./test/chart -run TestGolden, then review the diff.
func TestGolden(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"default", nil},
		{"ha", []string{"-f", filepath.Join(chartDir(t), "values-ha.yaml")}},
		{"certmanager-all-namespaces", []string{"--set", "certificates.mode=certManager", "--set", "webhook.namespaceSelector.mode=all", "--set", "webhook.namespaceSelector.excludeNamespaces={monitoring}", "--set", "metrics.serviceMonitor.enabled=true"}},
		{"existing-secret", []string{"--set", "certificates.mode=secret", "--set", "certificates.secretName=lastcall-tls", "--set", "certificates.caBundle=Q0E="}},
		{"policy-controller", policyControllerArgs},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := helmTemplate(t, tc.args...)
			path := filepath.Join("testdata", tc.name+".golden.yaml")
			if os.Getenv("UPDATE_GOLDEN") == "1" {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (create it with UPDATE_GOLDEN=1)", err)
			}
			// Compare line by line, so the diff shows whole YAML lines with their neighbours' count.
			if diff := cmp.Diff(strings.Split(string(want), "\n"), strings.Split(got, "\n")); diff != "" {
				t.Errorf("helm template differs from %s (-want +got); if intended, regenerate with UPDATE_GOLDEN=1:\n%s", path, diff)
			}
		})
	}
}

// TestSchemaRejects checks that values.schema.json refuses bad values with a message naming the key, so a typo
// fails at install time instead of being ignored.
func TestSchemaRejects(t *testing.T) {
	t.Parallel()
	helm := tool(t, "helm")
	for _, tc := range []struct {
		name string
		set  string
		want string
	}{
		{"an unknown failurePolicy", "webhook.failurePolicy=Bogus", "/webhook/failurePolicy"},
		{"an unknown top-level key", "replicas=3", "'replicas' not allowed"},
		{"a misspelled policy key", "policy.checkmode=warn", "'checkmode' not allowed"},
		{"an unknown certificate mode", "certificates.mode=vault", "/certificates/mode"},
		{"an unknown namespace selector mode", "webhook.namespaceSelector.mode=some", "/webhook/namespaceSelector/mode"},
		{"an unknown check mode", "policy.checkMode=strict", "/policy/checkMode"},
		{"an unknown existingPreStop", "policy.existingPreStop=merge", "/policy/existingPreStop"},
		{"a bad maxGracePeriod", "policy.maxGracePeriod=10 minutes", "/policy/maxGracePeriod"},
		{"an unknown preStopSleep", "policy.capabilities.preStopSleep=maybe", "/policy/capabilities/preStopSleep"},
		{"a webhook timeout above the API limit", "webhook.timeoutSeconds=31", "/webhook/timeoutSeconds"},
		{"zero replicas", "replicaCount=0", "/replicaCount"},
		{"secret mode without a Secret", "certificates.mode=secret", "/certificates/secretName"},
		{"a default profile that is not a DNS label", "policy.defaultProfile=My_Profile", "/policy/defaultProfile"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out, err := run(t, helm, "template", releaseName, chartDir(t), "--set", tc.set)
			if err == nil {
				t.Fatalf("helm template --set %s: accepted, want an error mentioning %q\n%s", tc.set, tc.want, out)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("helm template --set %s: error does not mention %q:\n%v", tc.set, tc.want, err)
			}
		})
	}
}

// TestTemplateGuards checks the checks the templates make themselves.
func TestTemplateGuards(t *testing.T) {
	t.Parallel()
	helm := tool(t, "helm")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"a PodDisruptionBudget that blocks every drain", []string{"--set", "replicaCount=1"}, "podDisruptionBudget.minAvailable (1) must be lower than replicaCount (1)"},
		{"the policy controller without policy mode", []string{"--set", "policyController.enabled=true"}, "policyController.enabled needs mode=policy"},
		{"a ServiceMonitor without the metrics Service", []string{"--set", "metrics.serviceMonitor.enabled=true", "--set", "metrics.service.enabled=false"}, "metrics.serviceMonitor.enabled needs metrics.service.enabled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			args := append([]string{"template", releaseName, chartDir(t)}, tc.args...)
			_, err := run(t, helm, args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("helm template %v: got %v, want an error containing %q", tc.args, err, tc.want)
			}
		})
	}
}

// TestRenderedSettings pins the values that matter most for safety, so a golden regenerated in a hurry cannot
// silently change them.
func TestRenderedSettings(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name          string
		args          []string
		failurePolicy string
		replicas      int64
		minAvailable  int64
	}{
		{"default values", nil, "Ignore", 2, 1},
		{"HA values", []string{"-f", filepath.Join(chartDir(t), "values-ha.yaml")}, "Fail", 3, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			objs := decodeAll(t, helmTemplate(t, tc.args...))
			mwc := find(t, objs, "MutatingWebhookConfiguration", releaseName)
			hooks, _ := mwc.Object["webhooks"].([]any)
			if len(hooks) != 1 {
				t.Fatalf("want 1 webhook, got %d", len(hooks))
			}
			h := hooks[0].(map[string]any)
			for k, want := range map[string]any{
				"name": "pods.lastcall.dev", "failurePolicy": tc.failurePolicy, "timeoutSeconds": float64(5),
				"sideEffects": "None", "reinvocationPolicy": "IfNeeded", "matchPolicy": "Equivalent",
			} {
				if got := normalizeNumber(h[k]); got != want {
					t.Errorf("webhook %s = %v, want %v", k, got, want)
				}
			}
			excluded := h["namespaceSelector"].(map[string]any)["matchExpressions"].([]any)[0].(map[string]any)
			if diff := cmp.Diff(map[string]any{
				"key": "kubernetes.io/metadata.name", "operator": "NotIn",
				"values": []any{"kube-system", "kube-public", "kube-node-lease", releaseNamespace},
			}, excluded); diff != "" {
				t.Errorf("namespace exclusions (-want +got):\n%s", diff)
			}
			dep := find(t, objs, "Deployment", releaseName)
			if got := normalizeNumber(dep.Object["spec"].(map[string]any)["replicas"]); got != float64(tc.replicas) {
				t.Errorf("replicas = %v, want %d", got, tc.replicas)
			}
			pdb := find(t, objs, "PodDisruptionBudget", releaseName)
			if got := normalizeNumber(pdb.Object["spec"].(map[string]any)["minAvailable"]); got != float64(tc.minAvailable) {
				t.Errorf("minAvailable = %v, want %d", got, tc.minAvailable)
			}
		})
	}
}

// normalizeNumber makes YAML integers (int64 from sigs.k8s.io/yaml) comparable with float64 literals.
func normalizeNumber(v any) any {
	switch n := v.(type) {
	case int64:
		return float64(n)
	case int:
		return float64(n)
	}
	return v
}

func TestCRDToggles(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		args       []string
		wantCRD    bool
		wantPolicy string
	}{
		{"installed and kept by default", nil, true, "keep"},
		{"installed, removed on uninstall", []string{"--set", "crds.keep=false"}, true, ""},
		{"left to another tool", []string{"--set", "crds.install=false"}, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var crd map[string]any
			for _, o := range decodeAll(t, helmTemplate(t, tc.args...)) {
				if o.GetKind() == "CustomResourceDefinition" {
					crd = o.Object
					if got := o.GetAnnotations()["helm.sh/resource-policy"]; got != tc.wantPolicy {
						t.Errorf("helm.sh/resource-policy = %q, want %q", got, tc.wantPolicy)
					}
				}
			}
			if (crd != nil) != tc.wantCRD {
				t.Errorf("CRD rendered = %v, want %v", crd != nil, tc.wantCRD)
			}
		})
	}
}
