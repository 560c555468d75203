package webhook_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/go-logr/logr"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	"sigs.k8s.io/yaml"

	"github.com/lastcall-dev/lastcall/internal/testcases"
	"github.com/lastcall-dev/lastcall/pkg/mutate"
	"github.com/lastcall-dev/lastcall/pkg/profiles"
	"github.com/lastcall-dev/lastcall/pkg/webhook"
)

type namespaces map[string]mutate.Namespace

func (n namespaces) Namespace(name string) (mutate.Namespace, bool) { ns, ok := n[name]; return ns, ok }

func newServer(t *testing.T, h *webhook.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(&admission.Webhook{Handler: h})
	t.Cleanup(srv.Close)
	return srv
}

func review(op admissionv1.Operation, kind string, raw []byte, mod func(*admissionv1.AdmissionRequest)) []byte {
	req := &admissionv1.AdmissionRequest{
		UID: types.UID("uid-1"), Kind: metav1.GroupVersionKind{Version: "v1", Kind: kind},
		Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
		Namespace: "default", Operation: op, Object: runtime.RawExtension{Raw: raw},
	}
	if mod != nil {
		mod(req)
	}
	b, _ := json.Marshal(&admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"}, Request: req})
	return b
}

func post(t *testing.T, srv *httptest.Server, body []byte) *admissionv1.AdmissionResponse {
	t.Helper()
	resp, err := http.Post(srv.URL, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(data, &out); err != nil || out.Response == nil {
		t.Fatalf("bad AdmissionReview response %q: %v", data, err)
	}
	return out.Response
}

func applyPatch(t *testing.T, original []byte, r *admissionv1.AdmissionResponse) []byte {
	t.Helper()
	if len(r.Patch) == 0 {
		return original
	}
	p, err := jsonpatch.DecodePatch(r.Patch)
	if err != nil {
		t.Fatalf("decode patch: %v", err)
	}
	out, err := p.Apply(original)
	if err != nil {
		t.Fatalf("apply patch: %v", err)
	}
	return out
}

// Every golden case through the HTTP handler: the patch applied to the original JSON gives the golden pod.
func TestGoldenThroughHandler(t *testing.T) {
	cases, err := testcases.Load("../mutate/testdata")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			h := &webhook.Handler{Engine: c.Engine, Namespaces: namespaces{c.Namespace.Name: c.Namespace},
				Profiles: webhook.StaticCatalog{C: c.Catalog}, Log: logr.Discard()}
			srv := newServer(t, h)
			raw, _ := json.Marshal(c.Pod) // the fixture with its namespace filled in, as the API server sends it
			r := post(t, srv, review(admissionv1.Create, "Pod", raw, func(req *admissionv1.AdmissionRequest) { req.Namespace = c.Namespace.Name }))
			golden, err := os.ReadFile(c.Golden)
			if err != nil {
				t.Fatal(err)
			}
			wantPod, _, _ := strings.Cut(string(golden), "\n---\n")
			if c.Engine.Policy().Strict && strings.Contains(string(golden), "problems:") && !strings.Contains(string(golden), "namespace: true") {
				if r.Allowed || !strings.Contains(r.Result.Message, "lastcall.dev/") {
					t.Fatalf("strict mode with a bad annotation: want a denial naming the key, got allowed=%v %q", r.Allowed, r.Result.Message)
				}
				return
			}
			if !r.Allowed {
				t.Fatalf("denied: %v", r.Result)
			}
			var pod corev1.Pod
			if err := json.Unmarshal(applyPatch(t, raw, r), &pod); err != nil {
				t.Fatal(err)
			}
			got, _ := testcases.PodYAML(&pod)
			if d := cmp.Diff(wantPod+"\n", string(got)); d != "" {
				t.Errorf("patched pod differs from golden (-want +got):\n%s", d)
			}
			res := c.Engine.Mutate(c.Pod, c.Namespace, c.Catalog)
			if d := cmp.Diff(res.AllWarnings(), r.Warnings); d != "" {
				t.Errorf("warnings differ (-engine +response):\n%s", d)
			}
		})
	}
}

func defaultHandler(reg prometheus.Registerer) *webhook.Handler {
	return &webhook.Handler{
		Engine:     mutate.New(mutate.Options{Policy: mutate.DefaultPolicy(), Capabilities: mutate.Capabilities{PreStopSleep: true}, Version: "test"}),
		Namespaces: namespaces{}, Profiles: webhook.StaticCatalog{C: profiles.Builtins()}, Log: logr.Discard(),
		Metrics: webhook.NewMetrics(reg),
	}
}

const nginxPod = `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"default"},"spec":{"containers":[{"name":"web","image":"nginx:1.27"}]}}`

func TestAdmissionAnswers(t *testing.T) {
	tests := []struct {
		name        string
		body        []byte
		wantAllowed bool
		wantPatch   bool
		wantWarning string
		wantResult  string
	}{
		{"a CREATE of a pod is patched", review(admissionv1.Create, "Pod", []byte(nginxPod), nil), true, true, "", webhook.ResultInjected},
		{"a dry-run CREATE is patched too (sideEffects None)", review(admissionv1.Create, "Pod", []byte(nginxPod), func(r *admissionv1.AdmissionRequest) { t := true; r.DryRun = &t }), true, true, "", webhook.ResultInjected},
		{"an UPDATE is allowed unchanged", review(admissionv1.Update, "Pod", []byte(nginxPod), nil), true, false, "", webhook.ResultSkipped},
		{"a DELETE is allowed unchanged", review(admissionv1.Delete, "Pod", nil, nil), true, false, "", webhook.ResultSkipped},
		{"a non-pod is allowed unchanged", review(admissionv1.Create, "Deployment", []byte(`{"kind":"Deployment"}`), nil), true, false, "", webhook.ResultSkipped},
		{"a subresource is allowed unchanged", review(admissionv1.Create, "Pod", []byte(nginxPod), func(r *admissionv1.AdmissionRequest) { r.SubResource = "ephemeralcontainers" }), true, false, "", webhook.ResultSkipped},
		{"a malformed pod is allowed unchanged with a warning", review(admissionv1.Create, "Pod", []byte(`{"spec":{"containers":"nope"}}`), nil), true, false, "cannot decode the pod", webhook.ResultError},
		{"a bad annotation is admitted with a warning naming key and value", review(admissionv1.Create, "Pod", []byte(strings.Replace(nginxPod, `"namespace":"default"`, `"namespace":"default","annotations":{"lastcall.dev/drain-delay":"soon"}`, 1)), nil), true, true, `lastcall.dev/drain-delay="soon"`, webhook.ResultInjected},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			srv := newServer(t, defaultHandler(reg))
			r := post(t, srv, tt.body)
			if r.Allowed != tt.wantAllowed {
				t.Fatalf("allowed = %v, want %v (%v)", r.Allowed, tt.wantAllowed, r.Result)
			}
			if (len(r.Patch) > 0) != tt.wantPatch {
				t.Fatalf("patch = %s, want patch: %v", r.Patch, tt.wantPatch)
			}
			if tt.wantWarning != "" && !strings.Contains(strings.Join(r.Warnings, "\n"), tt.wantWarning) {
				t.Fatalf("warnings %q do not mention %q", r.Warnings, tt.wantWarning)
			}
			if tt.wantWarning == "" && len(r.Warnings) > 0 {
				t.Fatalf("unexpected warnings %q", r.Warnings)
			}
			if n := testutil.CollectAndCount(reg, "lastcall_admissions_total"); n != 1 {
				t.Fatalf("want one admissions series, got %d", n)
			}
			var found bool
			mfs, _ := reg.Gather()
			for _, mf := range mfs {
				for _, m := range mf.GetMetric() {
					for _, l := range m.GetLabel() {
						if l.GetName() == "result" && l.GetValue() == tt.wantResult {
							found = true
						}
					}
				}
			}
			if !found {
				t.Fatalf("no lastcall_admissions_total{result=%q}", tt.wantResult)
			}
		})
	}
}

func TestStrictModeDenies(t *testing.T) {
	policy, err := mutate.ParsePolicy([]byte("strict: true\n"))
	if err != nil {
		t.Fatal(err)
	}
	h := defaultHandler(prometheus.NewRegistry())
	h.Engine = mutate.New(mutate.Options{Policy: policy, Capabilities: mutate.Capabilities{PreStopSleep: true}})
	pod := strings.Replace(nginxPod, `"namespace":"default"`, `"namespace":"default","annotations":{"lastcall.dev/stop-signal":"SIGNOPE"}`, 1)
	r := post(t, newServer(t, h), review(admissionv1.Create, "Pod", []byte(pod), nil))
	if r.Allowed {
		t.Fatal("strict mode admitted a pod with a bad annotation")
	}
	for _, want := range []string{"lastcall.dev/stop-signal", "SIGNOPE", "SIGQUIT"} {
		if !strings.Contains(r.Result.Message, want) {
			t.Errorf("denial %q does not mention %q", r.Result.Message, want)
		}
	}
}

type panickyCatalog struct{}

func (panickyCatalog) Catalog() *profiles.Catalog { panic("boom") }

func TestPanicAdmitsUnchanged(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := defaultHandler(reg)
	h.Profiles = panickyCatalog{}
	r := post(t, newServer(t, h), review(admissionv1.Create, "Pod", []byte(nginxPod), nil))
	if !r.Allowed || len(r.Patch) != 0 || len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], "internal error") {
		t.Fatalf("want allowed, unpatched, one internal-error warning; got allowed=%v patch=%s warnings=%q", r.Allowed, r.Patch, r.Warnings)
	}
	if v := testutil.ToFloat64(mustCounter(t, reg, webhook.ResultError, "panic")); v != 1 {
		t.Fatalf("error/panic counter = %v, want 1", v)
	}
}

func mustCounter(t *testing.T, reg *prometheus.Registry, result, reason string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "lastcall_admissions_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["result"] == result && labels["reason"] == reason {
				return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "x"}, func() float64 { return m.GetCounter().GetValue() })
			}
		}
	}
	t.Fatalf("no lastcall_admissions_total{result=%q,reason=%q}", result, reason)
	return nil
}

// Fields our API types do not know must survive: the patch is a typed diff, so it never mentions them.
func TestUnknownFieldsKept(t *testing.T) {
	pod := `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"default"},"spec":{"futureField":{"a":1},"containers":[{"name":"web","image":"nginx:1.27","futureContainerField":"x"}]}}`
	r := post(t, newServer(t, defaultHandler(prometheus.NewRegistry())), review(admissionv1.Create, "Pod", []byte(pod), nil))
	out := applyPatch(t, []byte(pod), r)
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	spec := m["spec"].(map[string]any)
	if _, ok := spec["futureField"]; !ok {
		t.Errorf("spec.futureField was dropped: %s", out)
	}
	if c := spec["containers"].([]any)[0].(map[string]any); c["futureContainerField"] != "x" {
		t.Errorf("containers[0].futureContainerField was dropped: %s", out)
	}
	if _, ok := spec["initContainers"]; !ok {
		t.Errorf("no injection happened: %s", out)
	}
	_ = yaml.Marshal
	_ = context.Background
}

func podKind() metav1.GroupVersionKind { return metav1.GroupVersionKind{Version: "v1", Kind: "Pod"} }

// The shim's init container goes first; a user's init container must keep its own unknown fields rather than
// have them rewritten onto the shim (a positional diff would do that).
func TestUnknownFieldsStayOnTheirInitContainer(t *testing.T) {
	pod := `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"default"},"spec":{
"initContainers":[{"name":"migrate","image":"migrate:1","futureField":"keep-me"}],
"containers":[{"name":"web","image":"nginx:1.27"}],
"volumes":[{"name":"data","emptyDir":{},"futureVolumeField":1}]}}`
	r := post(t, newServer(t, defaultHandler(prometheus.NewRegistry())), review(admissionv1.Create, "Pod", []byte(pod), nil))
	out := applyPatch(t, []byte(pod), r)
	var m struct {
		Spec struct {
			InitContainers []map[string]any `json:"initContainers"`
			Volumes        []map[string]any `json:"volumes"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	inits := m.Spec.InitContainers
	if len(inits) != 2 || inits[0]["name"] != "lastcall-shim" || inits[1]["name"] != "migrate" {
		t.Fatalf("init containers: %v", inits)
	}
	if inits[1]["futureField"] != "keep-me" || inits[0]["futureField"] != nil {
		t.Fatalf("futureField moved: shim=%v migrate=%v", inits[0]["futureField"], inits[1]["futureField"])
	}
	if inits[1]["image"] != "migrate:1" {
		t.Fatalf("user init container changed: %v", inits[1])
	}
	if v := m.Spec.Volumes; len(v) != 2 || v[0]["futureVolumeField"] == nil {
		t.Fatalf("volumes: %v", v)
	}
}
