package webhook_test

import (
	"context"
	"encoding/json"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/lastcall-dev/lastcall/internal/testcases"
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
	})
}
