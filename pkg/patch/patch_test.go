package patch_test

import (
	"encoding/json"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	gomodjsonpatch "gomodules.xyz/jsonpatch/v2"
	corev1 "k8s.io/api/core/v1"

	"github.com/lastcall-dev/lastcall/internal/testcases"
	"github.com/lastcall-dev/lastcall/pkg/patch"
)

// libraryApply applies an encoded patch with evanphx/json-patch, creating missing parents on add as
// ApplyTree does.
func libraryApply(doc, p []byte) ([]byte, error) {
	dp, err := jsonpatch.DecodePatch(p)
	if err != nil {
		return nil, err
	}
	opts := jsonpatch.NewApplyOptions()
	opts.EnsurePathExistsOnAdd = true
	return dp.ApplyWithOptions(doc, opts)
}

func applyOps(t testing.TB, doc []byte, ops []patch.Operation) []byte {
	t.Helper()
	out, err := libraryApply(doc, patch.Encode(ops))
	if err != nil {
		t.Fatalf("apply %s: %v", patch.Encode(ops), err)
	}
	return out
}

// fullPatch diffs whole pods with gomodules' CreatePatch, a diff that knows nothing of the engine.
func fullPatch(t testing.TB, original, mutated *corev1.Pod) []patch.Operation {
	t.Helper()
	a, err := json.Marshal(original)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(mutated)
	if err != nil {
		t.Fatal(err)
	}
	ops, err := gomodjsonpatch.CreatePatch(a, b)
	if err != nil {
		t.Fatal(err)
	}
	return ops
}

// Pod diffs only the fields the engine writes; this holds the engine to that list: for every golden case the
// result equals a whole-pod diff.
func TestPatchCoversEngine(t *testing.T) {
	cases, err := testcases.Load("../mutate/testdata")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			res := c.Engine.Mutate(c.Pod, c.Namespace, c.Catalog)
			orig, _ := json.Marshal(c.Pod)
			fast, err := patch.Pod(c.Pod, res.Pod)
			if err != nil {
				t.Fatal(err)
			}
			a, b := applyOps(t, orig, fast), applyOps(t, orig, fullPatch(t, c.Pod, res.Pod))
			if !jsonpatch.Equal(a, b) {
				t.Fatalf("Patch misses a change the engine made:\nfast: %s\nfull: %s", a, b)
			}
			want, _ := json.Marshal(res.Pod)
			if !jsonpatch.Equal(a, want) {
				t.Fatalf("the patched pod is not the engine's:\npatched: %s\nengine:  %s", a, want)
			}
		})
	}
}

// Encode writes what encoding/json would, byte for byte apart from its own choices of spacing.
func TestEncodeIsJSON(t *testing.T) {
	ops := []patch.Operation{
		gomodjsonpatch.NewOperation("add", "/metadata/annotations/lastcall.dev~1injected", json.RawMessage(`"web=nginx"`)),
		gomodjsonpatch.NewOperation("remove", "/spec/volumes/2", nil),
		gomodjsonpatch.NewOperation("replace", `/spec/containers/0/name`, "a \"quoted\" <name>"),
		gomodjsonpatch.NewOperation("add", "/spec/terminationGracePeriodSeconds", json.RawMessage(`38`)),
	}
	got := patch.Encode(ops)
	want, err := json.Marshal(ops)
	if err != nil {
		t.Fatal(err)
	}
	if !jsonpatch.Equal(got, want) {
		t.Fatalf("Encode = %s\nwant     %s", got, want)
	}
	if !json.Valid(patch.Encode(nil)) {
		t.Fatal("an empty patch is not JSON")
	}
}
