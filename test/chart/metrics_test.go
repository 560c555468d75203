package chart_test

import (
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// TestMetricsServiceSelectsTheServingPods checks, in both modes, that the metrics Service (<fullname>-metrics,
// the name `lastcall status` falls back to) selects the pods of exactly one Deployment, the one whose
// container serves the port named metrics (the webhook's, or in policy mode the policy controller's, whose
// observer records the shutdowns), and that the ServiceMonitor selects that Service. Without pods that serve
// metrics (policy mode without the controller) or with metrics.service.enabled=false there is neither.
func TestMetricsServiceSelectsTheServingPods(t *testing.T) {
	t.Parallel()
	monitor := []string{"--set", "metrics.serviceMonitor.enabled=true"}
	for _, tc := range []struct {
		name       string
		args       []string
		deployment string // "": no metrics Service, no ServiceMonitor
	}{
		{"webhook mode", monitor, releaseName},
		{"policy mode with the controller", append(append([]string{}, policyControllerArgs...), monitor...), releaseName + "-policy-controller"},
		{"policy mode without the controller", []string{"--set", "mode=policy", "--kube-version", "1.37.2"}, ""},
		{"policy mode, metrics.service.enabled=false", append(append([]string{}, policyControllerArgs...), "--set", "metrics.service.enabled=false"), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			objs := decodeAll(t, helmTemplate(t, tc.args...))
			var svcs, monitors []*unstructured.Unstructured
			for _, o := range objs {
				switch {
				case o.GetKind() == "Service" && o.GetName() == releaseName+"-metrics":
					svcs = append(svcs, o)
				case o.GetKind() == "ServiceMonitor":
					monitors = append(monitors, o)
				}
			}
			if tc.deployment == "" {
				if len(svcs)+len(monitors) != 0 {
					t.Fatalf("%d metrics Services and %d ServiceMonitors, want none", len(svcs), len(monitors))
				}
				return
			}
			svc := find(t, objs, "Service", releaseName+"-metrics")
			selector, _, _ := unstructured.NestedStringMap(svc.Object, "spec", "selector")
			if len(selector) == 0 {
				t.Fatalf("Service %s has no selector", svc.GetName())
			}
			var selected []string
			for _, o := range objs {
				if o.GetKind() != "Deployment" {
					continue
				}
				labels, _, _ := unstructured.NestedStringMap(o.Object, "spec", "template", "metadata", "labels")
				if subset(selector, labels) {
					selected = append(selected, o.GetName())
				}
			}
			if len(selected) != 1 || selected[0] != tc.deployment {
				t.Fatalf("Service %s (selector %v) selects the pods of Deployments %v, want only %s", svc.GetName(), selector, selected, tc.deployment)
			}
			ports, _, _ := unstructured.NestedSlice(svc.Object, "spec", "ports")
			if len(ports) != 1 || ports[0].(map[string]any)["targetPort"] != "metrics" {
				t.Fatalf("Service %s ports %v, want one to the port named metrics", svc.GetName(), ports)
			}
			served := false
			for _, c := range podSpec(t, find(t, objs, "Deployment", tc.deployment))["containers"].([]any) {
				cports, _, _ := unstructured.NestedSlice(c.(map[string]any), "ports")
				for _, p := range cports {
					if p.(map[string]any)["name"] == "metrics" {
						served = true
					}
				}
			}
			if !served {
				t.Errorf("Deployment %s has no container port named metrics", tc.deployment)
			}
			sm := find(t, objs, "ServiceMonitor", "")
			match, _, _ := unstructured.NestedStringMap(sm.Object, "spec", "selector", "matchLabels")
			if len(match) == 0 || !subset(match, svc.GetLabels()) {
				t.Errorf("ServiceMonitor selects %v, which Service %s (labels %v) does not carry", match, svc.GetName(), svc.GetLabels())
			}
		})
	}
}

// subset reports whether every key of sel is in labels with the same value.
func subset(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}
