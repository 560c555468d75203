package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/lastcall-dev/lastcall/pkg/mutate"
)

func readTestdata(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func docsOf(s string) []document {
	docs, _ := splitInput([]byte(s))
	return docs
}

// A realistic `helm template` output: untouched documents (ConfigMaps, a Service, a comment-only document,
// a ConfigMap inside a List) come out byte for byte, separators and comments included; every pod template is
// injected; a second run changes nothing.
func TestInjectMultiDocument(t *testing.T) {
	t.Parallel()
	in := readTestdata(t, "multi.yaml")
	out, stderr, code := run(t, in, "inject", "-f", "-")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	inDocs, outDocs := docsOf(in), docsOf(out)
	if len(inDocs) != 9 || len(outDocs) != len(inDocs) {
		t.Fatalf("want 9 documents in and out, got %d and %d", len(inDocs), len(outDocs))
	}
	changed := map[int]bool{2: true, 4: true, 5: true, 6: true}
	for i := range inDocs {
		if string(inDocs[i].sep) != string(outDocs[i].sep) {
			t.Errorf("document %d: separator %q became %q", i+1, inDocs[i].sep, outDocs[i].sep)
		}
		same := string(inDocs[i].text) == string(outDocs[i].text)
		if changed[i] == same {
			t.Errorf("document %d: changed=%v, want %v:\n%s", i+1, !same, changed[i], outDocs[i].text)
		}
	}
	// Leading comments stay with a rewritten document.
	if !strings.HasPrefix(string(outDocs[2].text), "# Source: shop/templates/web.yaml\napiVersion: apps/v1\n") {
		t.Errorf("the rewritten Deployment lost its header comment:\n%.200s", outDocs[2].text)
	}

	var web appsv1.Deployment
	mustYAML(t, outDocs[2].text, &web)
	spec := web.Spec.Template.Spec
	if got := web.Spec.Template.Annotations[mutate.AnnotationInjected]; got != "web=nginx,php=php-fpm" {
		t.Errorf("web: injected annotation %q", got)
	}
	var inits []string
	for _, c := range spec.InitContainers {
		inits = append(inits, c.Name)
	}
	if d := cmp.Diff([]string{"lastcall-shim", "migrate", "lastcall-check-php"}, inits); d != "" {
		t.Errorf("init containers (-want +got):\n%s", d)
	}
	if spec.TerminationGracePeriodSeconds == nil || *spec.TerminationGracePeriodSeconds != 38 {
		t.Errorf("web: grace %v, want 38", spec.TerminationGracePeriodSeconds)
	}
	// The field our types do not know stays on the user's container (an index-wise patch would have moved it
	// onto lastcall-shim, which now comes first), and the user's spelling of a quantity is kept.
	var generic map[string]any
	mustYAML(t, outDocs[2].text, &generic)
	initList := dig(generic, "spec", "template", "spec", "initContainers").([]any)
	if m := initList[1].(map[string]any); m["name"] != "migrate" || m["futureField"] != "keep-me" {
		t.Errorf("migrate lost its unknown field: %v", m)
	}
	if _, ok := initList[0].(map[string]any)["futureField"]; ok {
		t.Errorf("lastcall-shim gained the user's unknown field: %v", initList[0])
	}
	if got := dig(generic, "spec", "template", "spec", "containers").([]any)[0].(map[string]any)["resources"]; !strings.Contains(string(mustJSON(t, got)), `"memory":"0.5Gi"`) {
		t.Errorf("web resources rewritten: %s", mustJSON(t, got))
	}

	var db appsv1.StatefulSet
	mustYAML(t, outDocs[4].text, &db)
	if g := db.Spec.Template.Spec.TerminationGracePeriodSeconds; g == nil || *g != 120 {
		t.Errorf("db: a longer grace period the user set must stay: %v", g)
	}
	if pre := db.Spec.Template.Spec.Containers[0].Lifecycle.PreStop; pre == nil || pre.Exec == nil || !strings.Contains(strings.Join(pre.Exec.Command, " "), "--signal SIGINT") {
		t.Errorf("db: want the shim's SIGINT preStop, got %+v", pre)
	}
	var cron batchv1.CronJob
	mustYAML(t, outDocs[5].text, &cron)
	tmpl := cron.Spec.JobTemplate.Spec.Template
	if tmpl.Annotations[mutate.AnnotationInjected] != "worker=celery" || *tmpl.Spec.TerminationGracePeriodSeconds != 602 {
		t.Errorf("cronjob template: %v, grace %v", tmpl.Annotations, tmpl.Spec.TerminationGracePeriodSeconds)
	}
	if tmpl.Namespace != "" {
		t.Errorf("the CLI wrote a namespace into the template: %q", tmpl.Namespace)
	}
	var list corev1.List
	mustYAML(t, outDocs[6].text, &list)
	var ds appsv1.DaemonSet
	mustYAML(t, list.Items[0].Raw, &ds)
	if got := ds.Spec.Template.Annotations[mutate.AnnotationInjected]; got != "agent=haproxy" {
		t.Errorf("list item 0: injected %q", got)
	}
	if d := cmp.Diff(`{"apiVersion":"v1","data":{"a":"b"},"kind":"ConfigMap","metadata":{"name":"inside-list"}}`, string(list.Items[1].Raw)); d != "" {
		t.Errorf("the ConfigMap inside the List changed:\n%s", d)
	}

	again, stderr, code := run(t, out, "inject")
	if code != ExitOK {
		t.Fatalf("second run: exit %d: %s", code, stderr)
	}
	if again != out {
		t.Errorf("inject is not idempotent:\n%s", cmp.Diff(out, again))
	}
}

func mustYAML(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func dig(m map[string]any, keys ...string) any {
	var v any = m
	for _, k := range keys {
		v = v.(map[string]any)[k]
	}
	return v
}

// JSON in, JSON out: a stream of JSON objects (and a `kubectl get -o json` List) keeps its format, untouched
// values stay byte for byte, and a second run is identical.
func TestInjectJSON(t *testing.T) {
	t.Parallel()
	in := `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"},"data":{"html":"<b>&</b>"}}
{
  "apiVersion": "v1",
  "kind": "List",
  "items": [
    {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "api", "namespace": "shop"},
     "spec": {"selector": {"matchLabels": {"app": "api"}}, "template": {"metadata": {"labels": {"app": "api"}},
       "spec": {"containers": [{"name": "api", "image": "registry.example.com/api:1", "command": ["gunicorn", "app:app"]}]}}}}
  ]
}
`
	out, stderr, code := run(t, in, "inject")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	docs := docsOf(out)
	if len(docs) != 2 || !docs[0].json || !docs[1].json {
		t.Fatalf("want two JSON documents, got %d:\n%s", len(docs), out)
	}
	if !strings.HasPrefix(out, `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"},"data":{"html":"<b>&</b>"}}`+"\n{\n  \"apiVersion\": \"v1\",\n") {
		t.Errorf("the ConfigMap changed or the List is not indented JSON:\n%.300s", out)
	}
	var list struct {
		Items []appsv1.Deployment `json:"items"`
	}
	if err := json.Unmarshal(docs[1].text, &list); err != nil {
		t.Fatalf("output List is not JSON: %v\n%s", err, docs[1].text)
	}
	c := list.Items[0].Spec.Template.Spec.Containers[0]
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil || c.Lifecycle.PreStop.Sleep.Seconds != 5 {
		t.Errorf("gunicorn: want a native 5s preStop sleep, got %+v", c.Lifecycle)
	}
	if g := list.Items[0].Spec.Template.Spec.TerminationGracePeriodSeconds; g == nil || *g != 37 {
		t.Errorf("gunicorn: grace %v, want 37 (5s + 30s + 2s)", g)
	}
	again, _, _ := run(t, out, "inject")
	if again != out {
		t.Errorf("JSON inject is not idempotent:\n%s", cmp.Diff(out, again))
	}
}

// The cluster version decides the rendering: 1.29 has no native preStop sleep, so the shim sleeps.
func TestInjectClusterVersion(t *testing.T) {
	t.Parallel()
	pod := "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - {name: app, image: registry.example.com/app:1}\n"
	for _, tc := range []struct {
		version, want string
	}{
		{"v1.29", `"exec":{"command":["/lastcall/bin/lastcall-shim","prestop","--delay","5s","--signal","none"]}`},
		{"1.29.4-gke.100", `"exec":{"command":["/lastcall/bin/lastcall-shim","prestop","--delay","5s","--signal","none"]}`},
		{"v1.30", `"sleep":{"seconds":5}`},
		{"", `"sleep":{"seconds":5}`},
	} {
		t.Run("cluster "+tc.version, func(t *testing.T) {
			args := []string{"inject"}
			if tc.version != "" {
				args = append(args, "--cluster-version", tc.version)
			}
			out, stderr, code := run(t, pod, args...)
			if code != ExitOK {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			var p corev1.Pod
			mustYAML(t, []byte(out), &p)
			if got := string(mustJSON(t, p.Spec.Containers[0].Lifecycle.PreStop)); !strings.Contains(got, tc.want) {
				t.Errorf("preStop %s, want %s", got, tc.want)
			}
		})
	}
}

// Namespace flags mimic the namespace: its default profile, its opt-in label, the selector mode, the
// namespaces the webhook never sees.
func TestInjectNamespaces(t *testing.T) {
	t.Parallel()
	pod := func(ns string) string {
		return "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: " + ns + "}\nspec:\n  containers:\n  - {name: app, image: registry.example.com/app:1}\n"
	}
	for _, tc := range []struct {
		name, input string
		args        []string
		injected    string // lastcall.dev/injected, "" when untouched
		stderr      string
	}{
		{"opted in by default", pod("shop"), nil, "app=http", ""},
		{"namespace default profile", pod("shop"), []string{"--namespace-annotations", "lastcall.dev/default-profile=sidekiq"}, "app=sidekiq", ""},
		{"labels without the opt-in label", pod("shop"), []string{"--namespace-labels", "team=a"}, "", "document 1 Pod/p: not injected: namespace shop is not opted in"},
		{"selector all", pod("shop"), []string{"--namespace-labels", "team=a", "--namespace-selector", "all"}, "app=http", ""},
		{"namespace opted out in all mode", pod("shop"), []string{"--namespace-labels", "lastcall.dev/inject=disabled", "--namespace-selector", "all"}, "", ""},
		{"kube-system is never injected", pod("kube-system"), nil, "", "namespace kube-system is always excluded"},
		{"--namespace for documents without one", "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - {name: app, image: registry.example.com/app:1}\n", []string{"--namespace", "kube-public"}, "", "namespace kube-public is always excluded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, stderr, code := run(t, tc.input, append([]string{"inject"}, tc.args...)...)
			if code != ExitOK {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			var p corev1.Pod
			mustYAML(t, []byte(out), &p)
			if got := p.Annotations[mutate.AnnotationInjected]; got != tc.injected {
				t.Errorf("injected %q, want %q", got, tc.injected)
			}
			if tc.injected == "" && out != tc.input {
				t.Errorf("an untouched pod changed:\n%s", out)
			}
			if !strings.Contains(stderr, tc.stderr) {
				t.Errorf("stderr %q lacks %q", stderr, tc.stderr)
			}
		})
	}
}

// Exit codes: 0 success (warnings on stderr), 1 findings with --strict or a denial by a strict policy,
// 2 bad input with a message that names the document and the field.
func TestExitCodes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - {name: app, image: nginx:1.27}\n"
	badAnnotation := "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  template:\n    metadata:\n      annotations: {lastcall.dev/drain-delay: forever}\n    spec:\n      containers:\n      - {name: app, image: nginx:1.27}\n"
	strictPolicy := write("strict.yaml", "strict: true\n")
	for _, tc := range []struct {
		name   string
		stdin  string
		args   []string
		code   int
		stderr string
		stdout bool // whether manifests are written
	}{
		{"success", good, []string{"inject"}, ExitOK, "", true},
		{"warnings without --strict", badAnnotation, []string{"inject"}, ExitOK,
			`lastcall: warning: document 1 Deployment/web: annotation lastcall.dev/drain-delay="forever": not a duration`, true},
		{"warnings with --strict", badAnnotation, []string{"inject", "--strict"}, ExitFindings, "lastcall: warning: document 1 Deployment/web: annotation lastcall.dev/drain-delay", true},
		{"explain --strict", badAnnotation, []string{"explain", "--strict"}, ExitFindings, "", true},
		{"strict policy denies", "---\n" + good + "---\n" + badAnnotation, []string{"inject", "--policy", strictPolicy}, ExitFindings,
			"lastcall: denied: document 2 Deployment/web: the webhook would refuse this pod: lastcall (strict mode): annotation lastcall.dev/drain-delay=\"forever\"", true},
		{"unparsable YAML", good + "---\napiVersion: v1\nkind: Pod\nmetadata: {name: [\n", []string{"inject"}, ExitBadInput,
			"lastcall: error: document 2 (line 8): not valid YAML: yaml: line 10: did not find expected node content", false},
		{"wrong field type", good + "---\n" + strings.Replace(badAnnotation, "spec:\n      containers", "spec:\n      terminationGracePeriodSeconds: soon\n      containers", 1), []string{"inject"}, ExitBadInput,
			"lastcall: error: document 2 Deployment/web (line 8): field spec.template.spec.terminationGracePeriodSeconds: got a JSON string, want int64", false},
		{"every bad document is reported", "kind: Pod\nspec: {containers: 3}\n---\nkind: Job\nmetadata: {name: j}\nspec: {template: {spec: {containers: [{name: 1}]}}}\n", []string{"inject"}, ExitBadInput,
			"lastcall: error: document 1 Pod (line 1): field spec.containers: got a JSON number, want []v1.Container\nlastcall: error: document 2 Job/j (line 4): field spec.template.spec.containers.name: got a JSON number, want string", false},
		{"unknown flag", good, []string{"inject", "--bogus"}, ExitBadInput, "flag provided but not defined: -bogus", false},
		{"unknown command", good, []string{"injekt"}, ExitBadInput, `unknown command "injekt"`, false},
		{"no command", good, nil, ExitBadInput, "Usage:", false},
		{"missing file", "", []string{"inject", "-f", filepath.Join(dir, "nope.yaml")}, ExitBadInput, "lastcall: error: -f: open", false},
		{"bad policy", good, []string{"inject", "--policy", write("bad-policy.yaml", "existingPreStop: maybe\n")}, ExitBadInput,
			`policy: existingPreStop "maybe": must be keep or replace`, false},
		{"policy typo", good, []string{"inject", "--policy", write("typo-policy.yaml", "maxGrace: 1m\n")}, ExitBadInput, `unknown field "maxGrace"`, false},
		{"bad cluster version", good, []string{"inject", "--cluster-version", "latest"}, ExitBadInput, `--cluster-version: "latest": want a Kubernetes version such as v1.29`, false},
		{"bad namespace labels", good, []string{"inject", "--namespace-labels", "team"}, ExitBadInput, `--namespace-labels: "team": want key=value`, false},
		{"bad selector", good, []string{"inject", "--namespace-selector", "some"}, ExitBadInput, `--namespace-selector "some"`, false},
		{"bad explain format", good, []string{"explain", "-o", "yaml"}, ExitBadInput, `-o "yaml": must be text or json`, false},
		{"stray argument", good, []string{"inject", "deploy.yaml"}, ExitBadInput, `unexpected argument "deploy.yaml" (use -f FILE)`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, stderr, code := run(t, tc.stdin, tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stderr:\n%s", code, tc.code, stderr)
			}
			if !strings.Contains(stderr, tc.stderr) {
				t.Errorf("stderr lacks %q:\n%s", tc.stderr, stderr)
			}
			if tc.stdout != (out != "") {
				t.Errorf("stdout written: %v, want %v:\n%s", out != "", tc.stdout, out)
			}
		})
	}
}

func TestInjectFromFileWithoutTrailingNewline(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "pod.yaml")
	in := "# header\napiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - {name: app, image: nginx:1.27}"
	if err := os.WriteFile(p, []byte(in), 0o644); err != nil {
		t.Fatal(err)
	}
	out, stderr, code := run(t, "", "inject", "-f", p)
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.HasPrefix(out, "# header\napiVersion: v1\nkind: Pod\nmetadata:\n  annotations:\n    lastcall.dev/injected: app=nginx\n") {
		t.Errorf("unexpected output:\n%s", out)
	}
	again, _, _ := run(t, out, "inject")
	if again != out {
		t.Errorf("not idempotent:\n%s", cmp.Diff(out, again))
	}
}

// Every supported kind has its template found and injected at the right place, and nothing else is added.
func TestInjectEveryKind(t *testing.T) {
	t.Parallel()
	podSpec := "{containers: [{name: app, image: nginx:1.27}]}"
	tmpl := "{metadata: {labels: {a: b}}, spec: " + podSpec + "}"
	for _, tc := range []struct {
		kind, apiVersion, spec string
		path                   []string
	}{
		{"Pod", "v1", "", nil},
		{"Deployment", "apps/v1", "spec: {template: " + tmpl + "}", []string{"spec", "template"}},
		{"StatefulSet", "apps/v1", "spec: {template: " + tmpl + "}", []string{"spec", "template"}},
		{"DaemonSet", "apps/v1", "spec: {template: " + tmpl + "}", []string{"spec", "template"}},
		{"ReplicaSet", "apps/v1", "spec: {template: " + tmpl + "}", []string{"spec", "template"}},
		{"ReplicationController", "v1", "spec: {template: " + tmpl + "}", []string{"spec", "template"}},
		{"Job", "batch/v1", "spec: {template: " + tmpl + "}", []string{"spec", "template"}},
		{"CronJob", "batch/v1", "spec: {schedule: '@daily', jobTemplate: {spec: {template: " + tmpl + "}}}", []string{"spec", "jobTemplate", "spec", "template"}},
		{"PodTemplate", "v1", "template: " + tmpl, []string{"template"}},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			in := "apiVersion: " + tc.apiVersion + "\nkind: " + tc.kind + "\nmetadata: {name: x}\n"
			if tc.path == nil {
				in += "spec: " + podSpec + "\n"
			} else {
				in += tc.spec + "\n"
			}
			out, stderr, code := run(t, in, "inject")
			if code != ExitOK {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			var obj map[string]any
			mustYAML(t, []byte(out), &obj)
			pod := obj
			if tc.path != nil {
				pod = dig(obj, tc.path...).(map[string]any)
			}
			if got := dig(pod, "metadata", "annotations").(map[string]any)[mutate.AnnotationInjected]; got != "app=nginx" {
				t.Errorf("injected %v", got)
			}
			if g := dig(pod, "spec", "terminationGracePeriodSeconds"); g != float64(32) {
				t.Errorf("grace %v, want 32", g)
			}
			if md := obj["metadata"].(map[string]any); len(md) != 1 && tc.path != nil {
				t.Errorf("the object's own metadata changed: %v", md)
			}
		})
	}
}

// The CLI applies the webhook's patch to the template as written: the engine's fields are added, and
// everything else stays as the user wrote it, fields our API types do not know at every level included; a
// template without metadata gains only the annotations, not the empty defaults our types write around them.
func TestInjectChangesOnlyWhatTheEngineWrites(t *testing.T) {
	t.Parallel()
	in := `apiVersion: batch/v1
kind: Job
metadata: {name: once}
spec:
  futureJobField: 1
  template:
    futureTemplateField: x
    spec:
      restartPolicy: Never
      futureSpecField: {a: b}
      containers:
      - name: web
        image: nginx:1.27
        futureField: keep
        resources: {limits: {cpu: 0.5, memory: 1.5Gi}}
      volumes:
      - name: data
        futureVolumeField: x
        emptyDir: {}
`
	out, stderr, code := run(t, in, "inject")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var before, after map[string]any
	mustYAML(t, []byte(in), &before)
	mustYAML(t, []byte(out), &after)
	tmpl := dig(after, "spec", "template").(map[string]any)
	meta, _ := tmpl["metadata"].(map[string]any)
	labels, _ := meta["labels"].(map[string]any)
	if len(meta) != 2 || meta["annotations"] == nil || len(labels) != 1 || labels[mutate.LabelManaged] != mutate.ManagedInject {
		t.Errorf("template metadata = %v, want only the annotations and the %s label", meta, mutate.LabelManaged)
	}
	spec := tmpl["spec"].(map[string]any)
	web := spec["containers"].([]any)[0].(map[string]any)
	if web["lifecycle"] == nil {
		t.Fatalf("web was not injected: %v", web)
	}
	// Take away what the engine writes; what is left is exactly the input.
	delete(tmpl, "metadata")
	delete(web, "lifecycle")
	delete(spec, "terminationGracePeriodSeconds")
	spec["volumes"] = spec["volumes"].([]any)[:1]
	web["volumeMounts"] = nil
	delete(web, "volumeMounts")
	delete(spec, "initContainers")
	if d := cmp.Diff(before, after); d != "" {
		t.Errorf("the CLI changed what the engine does not write (-input +output):\n%s", d)
	}
}
