package webhook_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/google/go-cmp/cmp"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/lastcall-dev/lastcall/internal/testcases"
	"github.com/lastcall-dev/lastcall/pkg/mutate"
	"github.com/lastcall-dev/lastcall/pkg/profiles"
	"github.com/lastcall-dev/lastcall/pkg/webhook"
)

// FuzzAdmission feeds arbitrary bytes as the pod of an AdmissionReview. The handler must never panic (its
// recover would hide one, so the fuzz checks the metric-free path directly), must always allow, and any patch
// must apply to the request's object as the API server serializes it.
func FuzzAdmission(f *testing.F) {
	cases, err := testcases.Load("../mutate/testdata")
	if err != nil {
		f.Fatal(err)
	}
	for _, c := range cases {
		raw, _ := json.Marshal(c.Pod)
		f.Add(raw)
	}
	f.Add([]byte(`{"spec":{"containers":[{"name":"a","lifecycle":{"preStop":{}}}]}}`))
	f.Add([]byte(`null`))
	h := benchHandler()
	f.Fuzz(func(t *testing.T, raw []byte) {
		req := admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
			UID: "u", Kind: podKind(), Operation: admissionv1.Create, Namespace: "shop"}}
		req.Object.Raw = raw
		resp := h.Handle(context.Background(), req)
		if !resp.Allowed {
			t.Fatalf("denied: %v", resp.Result)
		}
		for _, w := range resp.Warnings {
			if w == "lastcall: internal error; pod admitted without graceful-shutdown injection" {
				t.Fatalf("the handler panicked on %q", raw)
			}
		}
		if len(resp.Patch) == 0 {
			return
		}
		// The API server always sends a complete serialization (metadata included), so apply the patch to that.
		var in corev1.Pod
		if err := json.Unmarshal(raw, &in); err != nil {
			t.Fatalf("patched an object that is not a pod: %v", err)
		}
		complete, _ := json.Marshal(&in)
		p, err := jsonpatch.DecodePatch(resp.Patch)
		if err != nil {
			t.Fatalf("invalid patch %s: %v", resp.Patch, err)
		}
		out, err := p.Apply(complete)
		if err != nil {
			t.Fatalf("patch %s does not apply: %v", resp.Patch, err)
		}
		var pod corev1.Pod
		if err := json.Unmarshal(out, &pod); err != nil {
			t.Fatalf("patched object is not a pod: %v", err)
		}
		checkRawRequest(t, h, complete)
	})
}

// unknownKey is a field no API type has: what a newer API server sends (a field added after our k8s.io/api).
const unknownKey = "x-lastcall-fuzz-unknown"

// checkRawRequest sends the pod with an unknown field in every object at every level and requires that the
// returned patch, applied to that raw JSON, gives the engine's typed result plus exactly those unknown fields:
// a patch computed on typed objects must never remove or move what it cannot see.
func checkRawRequest(t *testing.T, h *webhook.Handler, complete []byte) {
	t.Helper()
	var tree any
	if err := json.Unmarshal(complete, &tree); err != nil {
		t.Fatal(err)
	}
	n := 0
	var plant func(v any)
	plant = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, c := range x {
				// Maps keyed by user data (labels, annotations, resource lists) are not objects of the API.
				if k != "labels" && k != "annotations" && k != "limits" && k != "requests" && k != "nodeSelector" && k != "capacity" {
					plant(c)
				}
			}
			n++
			x[unknownKey] = fmt.Sprintf("u%d", n)
		case []any:
			for _, c := range x {
				plant(c)
			}
		}
	}
	plant(tree)
	raw, _ := json.Marshal(tree)
	req := admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID: "u", Kind: podKind(), Operation: admissionv1.Create, Namespace: "shop"}}
	req.Object.Raw = raw
	resp := h.Handle(context.Background(), req)
	got := raw
	if len(resp.Patch) > 0 {
		p, err := jsonpatch.DecodePatch(resp.Patch)
		if err != nil {
			t.Fatalf("invalid patch %s: %v", resp.Patch, err)
		}
		if got, err = p.Apply(raw); err != nil {
			t.Fatalf("patch %s does not apply to the raw request: %v", resp.Patch, err)
		}
	}
	var gotTree any
	if err := json.Unmarshal(got, &gotTree); err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	var strip func(v any)
	strip = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if u, ok := x[unknownKey].(string); ok {
				seen[u]++
				delete(x, unknownKey)
			}
			for _, c := range x {
				strip(c)
			}
		case []any:
			for _, c := range x {
				strip(c)
			}
		}
	}
	strip(gotTree)
	for i := 1; i <= n; i++ {
		if u := fmt.Sprintf("u%d", i); seen[u] != 1 {
			t.Fatalf("unknown field %s appears %d times after the patch, want once:\nraw %s\npatch %s", u, seen[u], raw, resp.Patch)
		}
	}
	var pod corev1.Pod
	_ = json.Unmarshal(complete, &pod)
	res := h.Engine.Mutate(&pod, mutate.Namespace{Name: "shop", Labels: map[string]string{mutate.LabelInject: "enabled"}}, profiles.Builtins())
	if res.Skip != nil || len(resp.Patch) == 0 {
		res.Pod = &pod // no patch: the typed result is the input
	}
	typed, _ := json.Marshal(res.Pod)
	var want any
	_ = json.Unmarshal(typed, &want)
	if d := cmp.Diff(want, gotTree); d != "" {
		t.Fatalf("the patch applied to the raw request differs from the typed result (-typed +raw, unknown fields removed):\n%s", d)
	}
}
