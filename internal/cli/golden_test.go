package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/lastcall-dev/lastcall/internal/testcases"
	"github.com/lastcall-dev/lastcall/pkg/mutate"
	"github.com/lastcall-dev/lastcall/pkg/version"
)

const goldenDir = "../../pkg/mutate/testdata"

func TestMain(m *testing.M) {
	// Goldens are rendered with a fixed version so they do not change per release; the CLI writes
	// version.Version into lastcall.dev/version.
	version.Version = testcases.Version
	os.Exit(m.Run())
}

// run calls the CLI in-process.
func run(t testing.TB, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var o, e bytes.Buffer
	code = Run(args, strings.NewReader(stdin), &o, &e)
	return o.String(), e.String(), code
}

// caseFlags turns a fixture's world (policy, capabilities, ShutdownProfiles, namespace) into files and flags,
// so the golden cases exercise the same command line a user types.
func caseFlags(t *testing.T, c testcases.Case) []string {
	t.Helper()
	dir := t.TempDir()
	policy := map[string]any{}
	for k, v := range c.Spec.Policy {
		policy[k] = v
	}
	caps := mutate.Capabilities{PreStopSleep: true}
	if c.Spec.Capabilities != nil {
		caps = *c.Spec.Capabilities
	}
	policy["capabilities"] = map[string]any{"preStopSleep": fmt.Sprint(caps.PreStopSleep), "stopSignal": caps.StopSignal}
	writeYAML(t, filepath.Join(dir, "policy.yaml"), policy)
	args := []string{"--policy", filepath.Join(dir, "policy.yaml"), "--namespace", c.Namespace.Name}
	if len(c.Profiles) > 0 {
		pdir := filepath.Join(dir, "profiles")
		if err := os.Mkdir(pdir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, p := range c.Profiles {
			writeYAML(t, filepath.Join(pdir, p.Name+".yaml"), p)
		}
		args = append(args, "--profiles", pdir)
	}
	if c.Namespace.Labels != nil {
		args = append(args, "--namespace-labels", kv(c.Namespace.Labels))
	}
	if c.Namespace.Annotations != nil {
		args = append(args, "--namespace-annotations", kv(c.Namespace.Annotations))
	}
	return args
}

func kv(m map[string]string) string {
	var parts []string
	for k, v := range m {
		parts = append(parts, k+"="+v)
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

func writeYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// fixturePod is the Pod document of a fixture, as the user would have it in a file.
func fixturePod(t *testing.T, c testcases.Case) string {
	t.Helper()
	data, err := os.ReadFile(strings.TrimSuffix(c.Golden, ".injected.yaml") + ".yaml")
	if err != nil {
		t.Fatal(err)
	}
	docs := strings.Split(string(data), "\n---\n")
	return docs[len(docs)-1]
}

// Every golden case through the command line gives exactly the golden Pod: the CLI, the engine and the
// webhook are held to the same expected output. A second run leaves the output byte for byte unchanged.
func TestGoldenCasesThroughCLI(t *testing.T) {
	cases, err := testcases.Load(goldenDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) < 40 {
		t.Fatalf("found only %d golden cases in %s", len(cases), goldenDir)
	}
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			golden, err := os.ReadFile(c.Golden)
			if err != nil {
				t.Fatal(err)
			}
			wantPod, wantReport, ok := strings.Cut(string(golden), "\n---\n")
			if !ok {
				t.Fatalf("%s: no report document", c.Golden)
			}
			input := fixturePod(t, c)
			args := append([]string{"inject"}, caseFlags(t, c)...)
			out, stderr, code := run(t, input, args...)

			ref := c.Engine.Mutate(c.Pod, c.Namespace, c.Catalog)
			if msg, deny := ref.DenyMessage(c.Engine.Policy().Strict); deny {
				// The webhook refuses this pod; the CLI leaves it as it is, says why and fails.
				if code != ExitFindings || !strings.Contains(stderr, msg) {
					t.Fatalf("strict policy: want exit 1 and the denial %q, got %d, stderr:\n%s", msg, code, stderr)
				}
				if out != input {
					t.Fatalf("a denied pod must be written unchanged:\n%s", out)
				}
				return
			}
			if code != ExitOK {
				t.Fatalf("exit %d, stderr:\n%s", code, stderr)
			}
			got := &corev1.Pod{}
			if err := yaml.UnmarshalStrict([]byte(out), got); err != nil {
				t.Fatalf("output is not a Pod: %v\n%s", err, out)
			}
			// The fixture loader puts the pod in its namespace; the CLI never writes a namespace into a manifest.
			if got.Namespace == "" {
				got.Namespace = c.Namespace.Name
			}
			gotYAML, err := testcases.PodYAML(got)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(wantPod+"\n", string(gotYAML)); d != "" {
				t.Errorf("CLI pod differs from golden %s (-want +got):\n%s", c.Golden, d)
			}
			// Every warning of the engine reaches stderr, prefixed with the document.
			for _, w := range ref.AllWarnings() {
				want := "lastcall: warning: document 1 Pod/" + c.Pod.Name + ": " + strings.TrimPrefix(w, "lastcall: ")
				if !strings.Contains(stderr, want) {
					t.Errorf("stderr lacks %q:\n%s", want, stderr)
				}
			}
			again, _, code := run(t, out, args...)
			if code != ExitOK || again != out {
				t.Errorf("second run changed the output (exit %d):\n%s", code, cmp.Diff(out, again))
			}

			// explain -o json reports the golden decisions.
			exOut, stderr, code := run(t, input, append([]string{"explain", "-o", "json"}, args[1:]...)...)
			if code != ExitOK {
				t.Fatalf("explain exit %d: %s", code, stderr)
			}
			var ex Explanation
			if err := json.Unmarshal([]byte(exOut), &ex); err != nil || len(ex.Pods) != 1 {
				t.Fatalf("explain -o json: %v\n%s", err, exOut)
			}
			var report struct {
				Report struct {
					Containers []mutate.Decision `json:"containers"`
				} `json:"report"`
			}
			if err := yaml.Unmarshal([]byte(wantReport), &report); err != nil {
				t.Fatal(err)
			}
			var gotDecisions, wantDecisions []string
			for _, d := range report.Report.Containers {
				wantDecisions = append(wantDecisions, fmt.Sprintf("%s profile=%q source=%q rendering=%q after=%q", d.Container, d.Profile, d.ProfileSource, d.Rendering, d.OrderedAfter))
			}
			for _, d := range ex.Pods[0].Containers {
				gotDecisions = append(gotDecisions, fmt.Sprintf("%s profile=%q source=%q rendering=%q after=%q", d.Container, d.Profile, d.ProfileSource, d.Rendering, d.OrderedAfter))
			}
			if d := cmp.Diff(wantDecisions, gotDecisions); d != "" {
				t.Errorf("explain decisions differ from the golden report (-want +got):\n%s", d)
			}
		})
	}
}
