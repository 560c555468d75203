package policy_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/lastcall-dev/lastcall/pkg/mutate"
	"github.com/lastcall-dev/lastcall/pkg/policy"
	"github.com/lastcall-dev/lastcall/pkg/profiles"
)

// FuzzPolicyMatchesEngine holds the compiled policies to the engine on any pod: run through the API
// server's own admission CEL (both passes of the mutating chain, then the warnings on the mutated pod), a
// pod comes out as the engine makes it, with the engine's warnings, unless the policy says it falls back to
// the webhook (then the pod is unchanged). The golden pods seed it; the parity test on a real API server
// covers the goldens themselves with defaulting and storage.
func FuzzPolicyMatchesEngine(f *testing.F) {
	files, err := filepath.Glob("../mutate/testdata/*.yaml")
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range files {
		if strings.HasSuffix(name, ".injected.yaml") {
			continue
		}
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		docs := strings.SplitN(string(data), "\n---\n", 2)
		if len(docs) != 2 {
			continue
		}
		var pod corev1.Pod
		if err := yaml.Unmarshal([]byte(docs[1]), &pod); err != nil {
			f.Fatalf("%s: %v", name, err)
		}
		raw, _ := json.Marshal(&pod)
		f.Add(raw, "")
		f.Add(raw, "haproxy")
	}
	o := policy.Options{Policy: mutate.DefaultPolicy(), Capabilities: mutate.Capabilities{PreStopSleep: true}, Version: "fuzz"}
	ps, err := policy.Compile(o)
	if err != nil {
		f.Fatal(err)
	}
	ev := newEvaluator(f, ps)
	engine := mutate.New(mutate.Options{Policy: o.Policy, Capabilities: o.Capabilities, Version: o.Version})
	cat := profiles.Builtins()
	f.Fuzz(func(t *testing.T, raw []byte, nsDefault string) {
		var pod corev1.Pod
		if err := json.Unmarshal(raw, &pod); err != nil || !admissible(&pod) || !quotable(nsDefault) {
			return
		}
		// Admission always sees a v1 Pod (the API server decoded it as one), whatever kind the input names.
		pod.APIVersion, pod.Kind = "v1", "Pod"
		pod.Namespace = "fuzz"
		ns := mutate.Namespace{Name: "fuzz", Labels: map[string]string{mutate.LabelInject: "enabled"}}
		if nsDefault != "" {
			ns.Annotations = map[string]string{mutate.AnnotationDefaultProfile: nsDefault}
		}
		nsObj := &corev1.Namespace{}
		nsObj.Name, nsObj.Labels, nsObj.Annotations = ns.Name, ns.Labels, ns.Annotations

		res := engine.Mutate(&pod, ns, cat)
		first := ev.mutate(t, &pod, nsObj)
		second := ev.mutate(t, first, nsObj)
		if d := cmp.Diff(first, second, cmpopts.EquateEmpty()); d != "" {
			t.Fatalf("the second pass of the mutating chain changed the pod (-first +second):\n%s", d)
		}
		warnings := ev.warnings(t, first, nsObj)
		for _, w := range warnings {
			if strings.Contains(w, "policy mode cannot handle this pod") {
				if d := cmp.Diff(&pod, first, cmpopts.EquateEmpty()); d != "" {
					t.Fatalf("a pod the policy leaves to the webhook was changed (-in +out):\n%s", d)
				}
				return
			}
		}
		if d := cmp.Diff(res.Pod, first, cmpopts.EquateEmpty()); d != "" {
			t.Fatalf("pod (-engine +policy):\n%s", d)
		}
		if res.Skip != nil {
			return // bad annotations of skipped pods are not reported by the policy (Limitations)
		}
		if want, got := expectedWarnings(res.AllWarnings()), strings.Join(warnings, "; "); want != got {
			t.Fatalf("warnings:\nengine %s\npolicy %s", want, got)
		}
	})
}

// expectedWarnings is the engine's warnings without the ones the policy cannot give (Limitations): what the
// validating policy cannot see on the mutated pod, and bad annotations of containers lastcall skips.
func expectedWarnings(ws []string) string {
	var out []string
	for _, w := range ws {
		if strings.Contains(w, "raised from 0") || strings.Contains(w, "replaced its preStop hook") || strings.Contains(w, "; ignored: ") {
			continue
		}
		out = append(out, w)
	}
	return strings.Join(out, "; ")
}

// quotable: Go's %q writes s as the policy's quoting does (quotes and backslashes escaped only). Other
// strings appear differently in warnings, a documented difference (Limitations); the API server's JSON
// decoding already replaces invalid UTF-8.
func quotable(s string) bool {
	return strconv.Quote(s) == `"`+strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s)+`"`
}

// admissible keeps the inputs the API server would store (what it rejects never reaches a policy) whose
// strings quotable can compare.
func admissible(p *corev1.Pod) bool {
	for _, v := range p.Annotations {
		if !quotable(v) {
			return false
		}
	}
	for _, list := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
		for _, c := range list {
			for _, w := range append(append([]string{c.Image}, c.Command...), c.Args...) {
				if !quotable(w) {
					return false
				}
			}
		}
	}
	if len(p.Spec.Containers) == 0 || len(p.Spec.Containers) > 8 || len(p.Spec.InitContainers) > 8 {
		return false
	}
	seen := map[string]bool{}
	for _, list := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
		for _, c := range list {
			if c.Name == "" || len(c.Name) > 63 || strings.ContainsAny(c.Name, ",=/ ") || seen[c.Name] {
				return false
			}
			seen[c.Name] = true
		}
	}
	return true
}
