package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/lastcall-dev/lastcall/internal/testcases"
	"github.com/lastcall-dev/lastcall/pkg/mutate"
	"github.com/lastcall-dev/lastcall/pkg/policy"
)

// knownDifferences lists the golden cases whose policy-mode result differs from the webhook's, each with the
// reason. The test fails when a listed case starts matching, so the list stays honest.
var knownDifferences = map[string]string{
	// A ValidatingAdmissionPolicy sees the pod after the mutation, when the user's hook has become lastcall's
	// and the user's 0 is gone.
	"existing-prestop-replaced": "no 'replaced its preStop hook' warning: the validating policy sees the mutated pod",
	"grace-zero":                "no 'raised from 0' warning: the validating policy sees the mutated pod",
	// Engine rules not compiled (yet): the policy leaves these pods unchanged and warns that the webhook is
	// needed (Limitations), so they differ from the golden by design, never silently.
	"apache2ctl-entrypoint":            "falls back: apache2ctl/apachectl entrypoints need the shim's --target name:... (not compiled)",
	"celery-time-limits":               "falls back: drain timeouts from command-line flags are not compiled",
	"gunicorn-graceful-timeout":        "falls back: drain timeouts from command-line flags are not compiled",
	"user-stop-signal":                 "falls back: a user's lifecycle.stopSignal as the signal override is not compiled",
	"sidekiq-bundle-exec":              "falls back: drain timeouts from command-line flags are not compiled (-t 25 equals the default, but any flag falls back)",
	"long-container-name":              "falls back: check names over 63 characters need the engine's FNV hash",
	"php-fpm-long-names-shared-prefix": "falls back: check names over 63 characters need the engine's FNV hash",
	// Warnings only: the stored pod is identical.
	"bad-annotation-container-off": "warnings: bad annotations of containers lastcall skips are not reported by the policy",
	"bad-annotation-opted-out":     "warnings: bad annotations of pods lastcall skips are not reported by the policy",
}

// setKey names the policy set compiled for a case's policy, catalog and capabilities.
func setKey(t *testing.T, c testcases.Case) (string, policy.Options) {
	t.Helper()
	o := policy.Options{Policy: c.Engine.Policy(), Catalog: c.Catalog, Capabilities: c.Engine.Capabilities(), Version: testcases.Version}
	ps, err := policy.Compile(o)
	if err != nil {
		t.Fatal(err)
	}
	data, err := ps.YAML()
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])[:10], o
}

// installSets creates every case's set first and then waits for all: the API server loads new policies
// asynchronously, and waiting for each in turn would add seconds per set.
func installSets(t *testing.T, cases []testcases.Case) map[string]string {
	t.Helper()
	byCase := map[string]string{}
	opts := map[string]policy.Options{}
	for _, c := range cases {
		key, o := setKey(t, c)
		byCase[c.Name] = key
		if _, ok := opts[key]; !ok {
			opts[key] = o
			createSet(t, key, o)
		}
	}
	for key, o := range opts {
		waitSet(t, key, o)
	}
	return byCase
}

func nsName(prefix, name string) string {
	n := prefix + name
	if len(n) > 63 {
		n = strings.TrimRight(n[:63], "-")
	}
	return n
}

// normal is a stored pod without the fields the server sets per object.
func normal(p *corev1.Pod) string {
	q := p.DeepCopy()
	q.Namespace, q.UID, q.ResourceVersion, q.Generation = "", "", "", 0
	q.CreationTimestamp = metav1.Time{}
	q.ManagedFields = nil
	data, _ := yaml.Marshal(q)
	return string(data)
}

// Every golden case created in a namespace served by the policies gives the same stored pod and the same
// warnings as the engine (the webhook), and the golden output created there again is left as it is
// (reinvocation and re-creation are safe).
func TestParityWithGoldens(t *testing.T) {
	cases, err := testcases.Load("../../pkg/mutate/testdata")
	if err != nil {
		t.Fatal(err)
	}
	setOf := installSets(t, cases)
	identical := 0
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			res := c.Engine.Mutate(c.Pod, c.Namespace, c.Catalog)
			denyMsg, denied := res.DenyMessage(c.Engine.Policy().Strict)
			// A case whose golden pod cannot be stored is still checked when the outcome is a denial.
			if c.Spec.EnvtestSkip != "" && !denied {
				t.Skip(c.Spec.EnvtestSkip)
			}
			set := setOf[c.Name]
			psa := map[string]string{}
			for k, v := range c.Namespace.Labels {
				if strings.HasPrefix(k, "pod-security.kubernetes.io/") {
					psa[k] = v
				}
			}
			goldenNS := nsName("g-", c.Name)
			namespace(t, goldenNS, psa, nil)
			labels := map[string]string{setLabel: set}
			for k, v := range c.Namespace.Labels {
				labels[k] = v
			}
			policyNS := nsName("p-", c.Name)
			namespace(t, policyNS, labels, c.Namespace.Annotations)

			var diffs []string
			in := c.Pod.DeepCopy()
			in.Namespace = policyNS
			got, warnings, err := create(in, true)
			switch {
			case denied:
				if err == nil || !strings.Contains(err.Error(), denyMsg) {
					diffs = append(diffs, "want denial "+denyMsg+", got error "+errString(err))
				}
			case err != nil:
				t.Fatalf("policy namespace: %v", err)
			default:
				golden := goldenPod(t, c)
				golden.Namespace = goldenNS
				want, _, err := create(golden, true)
				if err != nil {
					t.Fatalf("golden pod: %v", err)
				}
				if d := cmp.Diff(normal(want), normal(got)); d != "" {
					diffs = append(diffs, "stored pod (-webhook +policy):\n"+d)
				}
				if d := cmp.Diff(res.AllWarnings(), warnings, cmpopts.EquateEmpty()); d != "" {
					diffs = append(diffs, "warnings (-webhook +policy):\n"+d)
				}
				// The policy's own output, created again, is not changed (reinvocation, re-creation).
				again := golden.DeepCopy()
				again.Namespace = policyNS
				second, _, err := create(again, true)
				if err != nil {
					t.Fatalf("golden pod in the policy namespace: %v", err)
				}
				if d := cmp.Diff(normal(want), normal(second)); d != "" {
					diffs = append(diffs, "golden output changed by a second pass (-golden +policy):\n"+d)
				}
			}
			reason, known := knownDifferences[c.Name]
			switch {
			case known && len(diffs) == 0:
				t.Errorf("listed in knownDifferences (%s) but now identical: remove it from the list", reason)
			case known:
				t.Logf("known difference (%s):\n%s", reason, strings.Join(diffs, "\n"))
			case len(diffs) > 0:
				t.Errorf("policy mode differs from the engine:\n%s", strings.Join(diffs, "\n"))
			default:
				identical++
			}
		})
	}
	t.Logf("%d of %d golden cases identical in policy mode; %d known differences", identical, len(cases), len(knownDifferences))
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

func goldenPod(t *testing.T, c testcases.Case) *corev1.Pod {
	t.Helper()
	data, err := os.ReadFile(c.Golden)
	if err != nil {
		t.Fatal(err)
	}
	podYAML, _, _ := strings.Cut(string(data), "\n---\n")
	var pod corev1.Pod
	if err := yaml.UnmarshalStrict([]byte(podYAML), &pod); err != nil {
		t.Fatal(err)
	}
	return &pod
}

var _ = mutate.Prefix
