package chart_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/lastcall-dev/lastcall/pkg/policy"
)

// TestKustomizeParity checks that config/default installs what the chart installs with default values: the
// same webhook (selection, matchConditions, failure policy, service), the same RBAC rules, the same webhook
// container and volumes, and the same policy file. Metadata (labels, generated names) may differ.
func TestKustomizeParity(t *testing.T) {
	t.Parallel()
	chart := decodeAll(t, helmTemplate(t))
	kust := decodeAll(t, kustomize(t, "config/default"))

	t.Run("MutatingWebhookConfiguration webhooks", func(t *testing.T) {
		want := find(t, chart, "MutatingWebhookConfiguration", releaseName).Object["webhooks"]
		got := find(t, kust, "MutatingWebhookConfiguration", releaseName).Object["webhooks"]
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("webhooks (-chart +kustomize):\n%s", diff)
		}
	})
	for _, kind := range []string{"ClusterRole", "Role"} {
		t.Run(kind+" rules", func(t *testing.T) {
			want := rules(t, find(t, chart, kind, releaseName))
			got := rules(t, find(t, kust, kind, releaseName))
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("%s rules (-chart +kustomize):\n%s", kind, diff)
			}
		})
	}
	t.Run("Deployment pod spec", func(t *testing.T) {
		want := podSpec(t, find(t, chart, "Deployment", releaseName))
		got := podSpec(t, find(t, kust, "Deployment", releaseName))
		// The ConfigMap name differs: kustomize appends a content hash.
		for _, spec := range []map[string]any{want, got} {
			for _, v := range spec["volumes"].([]any) {
				if cm, ok := v.(map[string]any)["configMap"].(map[string]any); ok {
					cm["name"] = "<policy>"
				}
			}
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("pod spec (-chart +kustomize):\n%s", diff)
		}
	})
	t.Run("policy file", func(t *testing.T) {
		want := find(t, chart, "ConfigMap", releaseName+"-policy").Object["data"].(map[string]any)["policy.yaml"]
		var got any
		for _, o := range kust {
			if o.GetKind() == "ConfigMap" {
				got = o.Object["data"].(map[string]any)["policy.yaml"]
			}
		}
		if diff := cmp.Diff(yamlValue(t, want), yamlValue(t, got)); diff != "" {
			t.Errorf("policy.yaml (-chart +kustomize):\n%s", diff)
		}
	})
}

// TestRBACParity checks the chart's RBAC against config/rbac/role.yaml, which controller-gen generates from
// the markers in internal/rbac: the markers are the one source of the permissions.
func TestRBACParity(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile(filepath.Join(repoRoot(t), "config", "rbac", "role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	generated := decodeAll(t, string(raw))
	chart := decodeAll(t, helmTemplate(t))
	for _, kind := range []string{"ClusterRole", "Role"} {
		want := rules(t, find(t, generated, kind, releaseName))
		got := rules(t, find(t, chart, kind, releaseName))
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s: chart rules differ from the generated config/rbac/role.yaml (-generated +chart); change internal/rbac markers and charts/lastcall/templates/rbac.yaml together:\n%s", kind, diff)
		}
	}
}

// TestCertManagerParity checks the cert-manager overlay against the chart in certManager mode.
func TestCertManagerParity(t *testing.T) {
	t.Parallel()
	chart := decodeAll(t, helmTemplate(t, "--set", "certificates.mode=certManager"))
	kust := decodeAll(t, kustomize(t, "config/overlays/cert-manager"))
	cm := find(t, chart, "MutatingWebhookConfiguration", releaseName)
	km := find(t, kust, "MutatingWebhookConfiguration", releaseName)
	if diff := cmp.Diff(cm.GetAnnotations(), km.GetAnnotations()); diff != "" {
		t.Errorf("webhook configuration annotations (-chart +kustomize):\n%s", diff)
	}
	if diff := cmp.Diff(cm.Object["webhooks"], km.Object["webhooks"]); diff != "" {
		t.Errorf("webhooks (-chart +kustomize):\n%s", diff)
	}
	for _, kind := range []string{"ClusterRole", "Role"} {
		if diff := cmp.Diff(rules(t, find(t, chart, kind, releaseName)), rules(t, find(t, kust, kind, releaseName))); diff != "" {
			t.Errorf("%s rules (-chart +kustomize):\n%s", kind, diff)
		}
	}
	wantPod := podSpec(t, find(t, chart, "Deployment", releaseName))
	gotPod := podSpec(t, find(t, kust, "Deployment", releaseName))
	if diff := cmp.Diff(wantPod["containers"], gotPod["containers"]); diff != "" {
		t.Errorf("containers (-chart +kustomize):\n%s", diff)
	}
	for _, kind := range []string{"Issuer", "Certificate"} {
		for _, o := range chart {
			if o.GetKind() != kind {
				continue
			}
			k := find(t, kust, kind, o.GetName())
			if diff := cmp.Diff(o.Object["spec"], k.Object["spec"]); diff != "" {
				t.Errorf("%s %s spec (-chart +kustomize):\n%s", kind, o.GetName(), diff)
			}
		}
	}
}

// rules returns the RBAC rules in a canonical form: every list sorted, rules sorted.
func rules(t testing.TB, o *unstructured.Unstructured) []string {
	t.Helper()
	raw, _ := o.Object["rules"].([]any)
	out := make([]string, 0, len(raw))
	for _, r := range raw {
		rule := r.(map[string]any)
		for k, v := range rule {
			list := v.([]any)
			s := make([]string, len(list))
			for i, x := range list {
				s[i] = x.(string)
			}
			sort.Strings(s)
			rule[k] = s
		}
		b, err := json.Marshal(rule)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	sort.Strings(out)
	return out
}

func podSpec(t testing.TB, o *unstructured.Unstructured) map[string]any {
	t.Helper()
	spec, found, err := unstructured.NestedMap(o.Object, "spec", "template", "spec")
	if err != nil || !found {
		t.Fatalf("%s %s: no pod spec (%v)", o.GetKind(), o.GetName(), err)
	}
	return spec
}

func yamlValue(t testing.TB, v any) any {
	t.Helper()
	s, ok := v.(string)
	if !ok {
		t.Fatalf("want a string, got %T", v)
	}
	objs := decodeAll(t, s)
	if len(objs) != 1 {
		t.Fatalf("want one YAML document, got %d", len(objs))
	}
	return objs[0].Object
}

// TestCRDParity checks the chart's CRD template against config/crd/bases (hack/generate.sh derives one from
// the other; this catches a hand edit of either).
func TestCRDParity(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile(filepath.Join(repoRoot(t), "config", "crd", "bases", "lastcall.dev_shutdownprofiles.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	want := find(t, decodeAll(t, string(raw)), "CustomResourceDefinition", "shutdownprofiles.lastcall.dev")
	got := find(t, decodeAll(t, helmTemplate(t)), "CustomResourceDefinition", "shutdownprofiles.lastcall.dev")
	if diff := cmp.Diff(want.Object["spec"], got.Object["spec"]); diff != "" {
		t.Errorf("chart CRD spec differs from config/crd/bases (-config +chart); run make generate:\n%s", diff)
	}
}

// policyControllerArgs install policy mode with the policy controller (config/policy-controller's twin).
var policyControllerArgs = []string{"--set", "mode=policy", "--set", "policyController.enabled=true", "--kube-version", "1.37.2"}

// TestPolicyControllerKustomizeParity checks that config/policy-controller installs what the chart installs in
// policy mode with the policy controller: the same RBAC rules, the same pod spec, the same policy file and the
// same metrics Service, and neither renders the pre-rendered policies (the controller applies its own).
func TestPolicyControllerKustomizeParity(t *testing.T) {
	t.Parallel()
	chart := decodeAll(t, helmTemplate(t, policyControllerArgs...))
	kust := decodeAll(t, kustomize(t, "config/policy-controller"))
	name := releaseName + "-policy-controller"
	for _, kind := range []string{"ClusterRole", "Role"} {
		want := rules(t, find(t, chart, kind, name))
		got := rules(t, find(t, kust, kind, name))
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s rules (-chart +kustomize):\n%s", kind, diff)
		}
	}
	want := podSpec(t, find(t, chart, "Deployment", name))
	got := podSpec(t, find(t, kust, "Deployment", name))
	for _, spec := range []map[string]any{want, got} {
		for _, v := range spec["volumes"].([]any) {
			if cm, ok := v.(map[string]any)["configMap"].(map[string]any); ok {
				cm["name"] = "<policy>"
			}
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("pod spec (-chart +kustomize):\n%s", diff)
	}
	metrics := releaseName + "-metrics"
	if diff := cmp.Diff(find(t, chart, "Service", metrics).Object["spec"], find(t, kust, "Service", metrics).Object["spec"]); diff != "" {
		t.Errorf("Service %s spec (-chart +kustomize):\n%s", metrics, diff)
	}
	wantPolicy := find(t, chart, "ConfigMap", releaseName+"-policy").Object["data"].(map[string]any)["policy.yaml"]
	gotPolicy := find(t, kust, "ConfigMap", "").Object["data"].(map[string]any)["policy.yaml"]
	if diff := cmp.Diff(yamlValue(t, wantPolicy), yamlValue(t, gotPolicy)); diff != "" {
		t.Errorf("policy.yaml (-chart +kustomize):\n%s", diff)
	}
	for _, objs := range [][]*unstructured.Unstructured{chart, kust} {
		for _, o := range objs {
			if strings.HasSuffix(o.GetKind(), "AdmissionPolicy") || strings.HasSuffix(o.GetKind(), "AdmissionPolicyBinding") {
				t.Errorf("%s %s is rendered: with the controller, it applies the policies itself", o.GetKind(), o.GetName())
			}
		}
	}
}

// TestPolicyControllerRBACParity checks the chart's policy-controller RBAC against
// config/policy-controller/role.yaml, which controller-gen generates from internal/rbac/policyctl.
func TestPolicyControllerRBACParity(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile(filepath.Join(repoRoot(t), "config", "policy-controller", "role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	generated := decodeAll(t, string(raw))
	chart := decodeAll(t, helmTemplate(t, policyControllerArgs...))
	name := releaseName + "-policy-controller"
	for _, kind := range []string{"ClusterRole", "Role"} {
		want := rules(t, find(t, generated, kind, name))
		got := rules(t, find(t, chart, kind, name))
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s: chart rules differ from the generated config/policy-controller/role.yaml (-generated +chart); change internal/rbac/policyctl markers and charts/lastcall/templates/policy-controller.yaml together:\n%s", kind, diff)
		}
	}
	// The names it may write are exactly those a render can have, and the retired ones it deletes.
	want := append(append(policy.MutatingNames(releaseName+"-rendered"), policy.RetiredNames(releaseName+"-rendered")...), policy.ValidatingNames(releaseName+"-rendered")...)
	sort.Strings(want)
	var got []string
	for _, r := range find(t, chart, "ClusterRole", name).Object["rules"].([]any) {
		// rules() above turned each list into a sorted []string.
		rule := r.(map[string]any)
		if g, _ := rule["apiGroups"].([]string); len(g) == 1 && g[0] == "admissionregistration.k8s.io" {
			names, _ := rule["resourceNames"].([]string)
			got = append(got, names...)
		}
	}
	sort.Strings(got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("the ClusterRole's admission policy names differ from policy.MutatingNames + ValidatingNames (-want +got):\n%s", diff)
	}
}
