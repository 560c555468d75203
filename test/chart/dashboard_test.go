package chart_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The Grafana dashboard is off by default; on, it is a ConfigMap the Grafana sidecar picks up, its JSON
// parses, and every lastcall metric it queries is one docs/metrics.md documents (the metric names are a
// contract: a renamed metric must break this test, not the dashboard silently).
func TestDashboard(t *testing.T) {
	t.Parallel()
	for _, o := range decodeAll(t, helmTemplate(t)) {
		if o.GetKind() == "ConfigMap" && strings.HasSuffix(o.GetName(), "-dashboard") {
			t.Fatal("the dashboard is rendered by default")
		}
	}
	cm := find(t, decodeAll(t, helmTemplate(t, "--set", "dashboard.enabled=true")), "ConfigMap", releaseName+"-dashboard")
	if cm.GetLabels()["grafana_dashboard"] != "1" {
		t.Fatalf("dashboard labels %v lack grafana_dashboard: \"1\"", cm.GetLabels())
	}
	data, _ := cm.Object["data"].(map[string]any)
	raw, _ := data["lastcall.json"].(string)
	var dash struct {
		UID    string `json:"uid"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal([]byte(raw), &dash); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	if dash.UID == "" || len(dash.Panels) < 5 {
		t.Fatalf("dashboard uid %q with %d panels", dash.UID, len(dash.Panels))
	}
	docs, err := os.ReadFile(filepath.Join(repoRoot(t), "docs", "metrics.md"))
	if err != nil {
		t.Fatal(err)
	}
	metric := regexp.MustCompile(`lastcall_[a-z_]+`)
	seen := map[string]bool{}
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			for _, m := range metric.FindAllString(tg.Expr, -1) {
				base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(m, "_bucket"), "_sum"), "_count")
				seen[base] = true
				if !strings.Contains(string(docs), "`"+base+"`") {
					t.Errorf("panel %q queries %s, which docs/metrics.md does not document", p.Title, base)
				}
			}
		}
	}
	for _, want := range []string{"lastcall_shutdowns_total", "lastcall_shutdown_duration_seconds", "lastcall_admissions_total"} {
		if !seen[want] {
			t.Errorf("the dashboard does not show %s", want)
		}
	}
}
