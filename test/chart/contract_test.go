package chart_test

import (
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/lastcall-dev/lastcall/pkg/mutate"
	"github.com/lastcall-dev/lastcall/pkg/profiles"
)

// TestPolicyParsesInTheWebhook feeds the policy file the chart renders to the webhook's own strict parser: a
// chart key the binary does not know would stop it from starting.
func TestPolicyParsesInTheWebhook(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		args  []string
		check func(t *testing.T, p mutate.Policy)
	}{
		{"default values", nil, func(t *testing.T, p mutate.Policy) {
			want := mutate.DefaultPolicy()
			// The chart's defaults are the webhook's defaults.
			if diff := cmp.Diff(want, p); diff != "" {
				t.Errorf("policy (-webhook defaults +chart):\n%s", diff)
			}
			if p.DefaultProfile != "http" || p.CheckMode != "warn" || p.ExistingPreStop != "keep" || p.Strict || p.Supervise {
				t.Errorf("unexpected defaults: %+v", p)
			}
			if p.MaxGracePeriod.Duration != 15*time.Minute {
				t.Errorf("maxGracePeriod = %s, want 15m", p.MaxGracePeriod.Duration)
			}
			if diff := cmp.Diff([]string{"istio-proxy", "linkerd-proxy"}, p.MeshProxies); diff != "" {
				t.Errorf("meshProxies (-want +got):\n%s", diff)
			}
		}},
		{"HA values", []string{"-f", filepath.Join(chartDir(t), "values-ha.yaml")}, nil},
		{"preStopSleep given as a boolean with --set", []string{"--set", "policy.capabilities.preStopSleep=true", "--set", "policy.capabilities.stopSignal=true"}, func(t *testing.T, p mutate.Policy) {
			if p.Capabilities.PreStopSleep != "true" || !p.Capabilities.StopSignal {
				t.Errorf("capabilities = %+v, want preStopSleep \"true\" and stopSignal true", p.Capabilities)
			}
		}},
		{"a custom shim image and tag", []string{"--set", "image.tag=v9.9.9"}, func(t *testing.T, p mutate.Policy) {
			if p.Shim.Image != "ghcr.io/lastcall-dev/lastcall-shim:v9.9.9" {
				t.Errorf("shim image = %q, want it to follow image.tag", p.Shim.Image)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			objs := decodeAll(t, helmTemplate(t, tc.args...))
			data := find(t, objs, "ConfigMap", releaseName+"-policy").Object["data"].(map[string]any)["policy.yaml"].(string)
			p, err := mutate.ParsePolicy([]byte(data))
			if err != nil {
				t.Fatalf("the webhook refuses the chart's policy: %v\n%s", err, data)
			}
			if tc.check != nil {
				tc.check(t, p)
			}
		})
	}

	t.Run("kustomize policy", func(t *testing.T) {
		t.Parallel()
		data, err := os.ReadFile(filepath.Join(repoRoot(t), "config", "manager", "policy.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := mutate.ParsePolicy(data); err != nil {
			t.Fatalf("the webhook refuses config/manager/policy.yaml: %v", err)
		}
	})
}

// TestCRDKnowsTheBuiltins checks the CEL rule that lets a ShutdownProfile named like a built-in omit
// stopSignal: its list of names must be the engine's built-in catalog.
func TestCRDKnowsTheBuiltins(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile(filepath.Join(repoRoot(t), "api", "v1alpha1", "shutdownprofile_types.go"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`rule="self\.metadata\.name in \[([^\]]*)\]`).FindSubmatch(raw)
	if m == nil {
		t.Fatal("no built-in name list in the ShutdownProfile markers")
	}
	var got []string
	for _, n := range strings.Split(string(m[1]), ",") {
		got = append(got, strings.Trim(strings.TrimSpace(n), "'"))
	}
	sort.Strings(got)
	want := profiles.Builtins().Names()
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("built-in names in the CRD rule (-pkg/profiles +CRD); update the marker in api/v1alpha1 and run make generate:\n%s", diff)
	}
}

// TestCRDMatchesTheEngineLimits checks the schema bounds against the engine's own limits.
func TestCRDMatchesTheEngineLimits(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile(filepath.Join(repoRoot(t), "api", "v1alpha1", "shutdownprofile_types.go"))
	if err != nil {
		t.Fatal(err)
	}
	src := string(raw)
	for _, want := range []string{
		"duration(self) <= duration('" + short(profiles.MaxDrainDelay) + "')",
		"duration(self) >= duration('" + short(profiles.MinDrainTimeout) + "')",
		"duration(self) <= duration('" + short(profiles.MaxDrainTimeout) + "')",
	} {
		if !strings.Contains(src, want) {
			t.Errorf("the ShutdownProfile markers have no %q (pkg/profiles limits changed?)", want)
		}
	}
	for _, c := range profiles.KnownChecks {
		if !regexp.MustCompile(`items:Enum=[^\n]*\b` + regexp.QuoteMeta(string(c)) + `\b`).MatchString(src) {
			t.Errorf("check %q is not in the checks enum", c)
		}
	}
}

// short formats 10m0s as 10m and 1h0m0s as 1h, the way the CEL rules spell them.
func short(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
