package cli

import (
	"strings"
	"testing"

	"github.com/lastcall-dev/lastcall/pkg/mutate"
)

const kindsPodSpec = "{containers: [{name: app, image: nginx:1.27}]}"

// docAt writes a document of kind k whose pod template (or, for a nil path, the pod spec) is at path.
func docAt(k Kind, apiVersion string, path []string) string {
	inner := "{metadata: {labels: {a: b}}, spec: " + kindsPodSpec + "}"
	if path == nil {
		return "apiVersion: " + apiVersion + "\nkind: " + k.Name + "\nmetadata: {name: x}\nspec: " + kindsPodSpec + "\n"
	}
	v := inner
	for i := len(path) - 1; i >= 1; i-- {
		v = "{" + path[i] + ": " + v + "}"
	}
	return "apiVersion: " + apiVersion + "\nkind: " + k.Name + "\nmetadata: {name: x}\n" + path[0] + ": " + v + "\n"
}

func apiVersionOf(k Kind) string {
	if k.Group == "" {
		return "v1"
	}
	return k.Group + "/v1"
}

func injectedAt(t *testing.T, out string, path []string) bool {
	t.Helper()
	var obj map[string]any
	mustYAML(t, []byte(out), &obj)
	pod := obj
	if path != nil {
		m, ok := dig(obj, path...).(map[string]any)
		if !ok {
			t.Fatalf("no template at %v in\n%s", path, out)
		}
		pod = m
	}
	md, _ := pod["metadata"].(map[string]any)
	ann, _ := md["annotations"].(map[string]any)
	return ann[mutate.AnnotationInjected] == "app=nginx"
}

// Every kind of the table is injected at its path (an Argo Rollout, a CloneSet, a KEDA ScaledJob's
// jobTargetRef, ...), except the ones it leaves alone on purpose, which are reported with the reason.
func TestInjectBuiltinKinds(t *testing.T) {
	t.Parallel()
	for k, tk := range builtinKinds {
		t.Run(k.String(), func(t *testing.T) {
			t.Parallel()
			in := docAt(k, apiVersionOf(k), tk.path)
			out, stderr, code := run(t, in, "inject")
			if code != ExitOK {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			if tk.skip != "" {
				if out != in || !strings.Contains(stderr, "not injected: "+k.String()+" holds containers") || !strings.Contains(stderr, tk.skip) {
					t.Fatalf("want the document unchanged and a note with the reason; stderr:\n%s\nout:\n%s", stderr, out)
				}
				return
			}
			if !injectedAt(t, out, tk.path) {
				t.Fatalf("not injected at %v:\n%s\nstderr: %s", tk.path, out, stderr)
			}
			if stderr != "" {
				t.Errorf("unexpected stderr: %s", stderr)
			}
		})
	}
}

func TestInjectArgoRollout(t *testing.T) {
	t.Parallel()
	in := `apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: shop}
spec:
  replicas: 3
  strategy: {canary: {steps: [{setWeight: 20}, {pause: {}}]}}
  selector: {matchLabels: {app: shop}}
  template:
    metadata: {labels: {app: shop}}
    spec:
      containers:
      - {name: app, image: nginx:1.27}
`
	out, stderr, code := run(t, in, "inject")
	if code != ExitOK || stderr != "" {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !injectedAt(t, out, []string{"spec", "template"}) {
		t.Fatalf("the Rollout was not injected:\n%s", out)
	}
	var obj map[string]any
	mustYAML(t, []byte(out), &obj)
	if steps := dig(obj, "spec", "strategy", "canary", "steps").([]any); len(steps) != 2 {
		t.Errorf("the Rollout's strategy changed: %v", steps)
	}
}

// A kind the table does not know is copied byte for byte and named on stderr with where its containers are
// and the flag that injects it; with the flag, it is injected. Documents without containers get no note.
func TestInjectUnknownKinds(t *testing.T) {
	t.Parallel()
	widget := `apiVersion: example.com/v1
kind: Widget
metadata: {name: w}
spec:
  runner:
    metadata: {labels: {app: w}}
    spec:
      containers:
      - {name: app, image: nginx:1.27}
`
	quiet := `apiVersion: v1
kind: Service
metadata: {name: s}
spec: {ports: [{port: 80}]}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: c}
data: {note: "no containers here, only the word containers"}
---
apiVersion: example.com/v1
kind: Gadget
metadata: {name: g}
spec: {containers: []}
`
	in := widget + "---\n" + quiet
	out, stderr, code := run(t, in, "inject")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if out != in {
		t.Fatalf("unknown kinds changed:\n%s", out)
	}
	want := "lastcall: note: document 1 Widget/w: not injected: Widget.example.com is not a kind lastcall knows; its containers (spec.runner.spec.containers) were left alone (to inject them: --pod-template Widget.example.com=spec.runner)\n"
	if stderr != want {
		t.Fatalf("stderr:\n%s\nwant:\n%s", stderr, want)
	}
	out, stderr, code = run(t, in, "inject", "--pod-template", "Widget.example.com=spec.runner")
	if code != ExitOK || stderr != "" {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !injectedAt(t, docsText(out)[0], []string{"spec", "runner"}) {
		t.Fatalf("--pod-template did not inject the Widget:\n%s", out)
	}
	if strings.Join(docsText(out)[1:], "---\n") != quiet {
		t.Errorf("the other documents changed:\n%s", out)
	}
}

func docsText(s string) []string {
	var out []string
	for _, d := range docsOf(s) {
		out = append(out, string(d.text))
	}
	return out
}

// Kinds are matched with their group: a Deployment of another API group is not apps' Deployment, while a
// fragment without apiVersion is taken to be the Kubernetes kind.
func TestInjectKindGroups(t *testing.T) {
	t.Parallel()
	other := docAt(Kind{"example.com", "Deployment"}, "example.com/v1", specTemplate)
	out, stderr, code := run(t, other, "inject")
	if code != ExitOK || out != other || !strings.Contains(stderr, "Deployment.example.com is not a kind lastcall knows") {
		t.Fatalf("a Deployment of another group: exit %d, stderr %q, out:\n%s", code, stderr, out)
	}
	bare := strings.Replace(docAt(Kind{"apps", "Deployment"}, "apps/v1", specTemplate), "apiVersion: apps/v1\n", "", 1)
	out, stderr, code = run(t, bare, "inject")
	if code != ExitOK || !injectedAt(t, out, specTemplate) {
		t.Fatalf("a Deployment without apiVersion: exit %d, stderr %q, out:\n%s", code, stderr, out)
	}
	// A flag for a kind lastcall leaves alone overrides the table.
	knative := docAt(Kind{"serving.knative.dev", "Service"}, "serving.knative.dev/v1", specTemplate)
	out, _, _ = run(t, knative, "inject", "--pod-template", "Service.serving.knative.dev=spec.template")
	if !injectedAt(t, out, specTemplate) {
		t.Fatalf("--pod-template did not override the Knative entry:\n%s", out)
	}
}

func TestPodTemplateFlagErrors(t *testing.T) {
	t.Parallel()
	for flagValue, want := range map[string]string{
		"Rollout.argoproj.io":         "want KIND[.GROUP]=PATH",
		"=spec.template":              "want KIND[.GROUP]=PATH",
		"rollout.argoproj.io=spec.x":  "upper-case",
		"Rollout.argoproj.io=":        "path to the pod template is empty",
		"Job.x.io=spec.tasks[0].tmpl": "list items are not supported",
		"Job.x.io=spec..template":     "object keys separated by dots",
	} {
		_, stderr, code := run(t, "", "inject", "--pod-template", flagValue)
		if code != ExitBadInput || !strings.Contains(stderr, "--pod-template") || !strings.Contains(stderr, want) {
			t.Errorf("--pod-template %q: exit %d, stderr %q; want exit 2 and %q", flagValue, code, stderr, want)
		}
	}
}

// explain shows a document left alone as a skipped pod, with the reason.
func TestExplainUnknownKind(t *testing.T) {
	t.Parallel()
	in := docAt(Kind{"example.com", "Widget"}, "example.com/v1", []string{"spec", "runner"})
	out, stderr, code := run(t, in, "explain")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(out, "skipped: Widget.example.com is not a kind lastcall knows") || !strings.Contains(out, "[kind-not-injected]") {
		t.Fatalf("explain:\n%s", out)
	}
}
