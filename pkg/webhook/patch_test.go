package webhook_test

import (
	"encoding/json"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	gomodjsonpatch "gomodules.xyz/jsonpatch/v2"

	"github.com/lastcall-dev/lastcall/internal/testcases"
	"github.com/lastcall-dev/lastcall/pkg/webhook"
)

func applyOps(t testing.TB, doc []byte, ops []gomodjsonpatch.JsonPatchOperation) []byte {
	t.Helper()
	raw, err := json.Marshal(ops)
	if err != nil {
		t.Fatal(err)
	}
	p, err := jsonpatch.DecodePatch(raw)
	if err != nil {
		t.Fatal(err)
	}
	out, err := p.Apply(doc)
	if err != nil {
		t.Fatalf("apply %s: %v", raw, err)
	}
	return out
}

// Patch diffs only the fields the engine writes; this holds the engine to that list: for every golden case the
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
			fast, err := webhook.Patch(c.Pod, res.Pod)
			if err != nil {
				t.Fatal(err)
			}
			full, err := webhook.FullPatch(c.Pod, res.Pod)
			if err != nil {
				t.Fatal(err)
			}
			a, b := applyOps(t, orig, fast), applyOps(t, orig, full)
			if !jsonpatch.Equal(a, b) {
				t.Fatalf("Patch misses a change the engine made:\nfast: %s\nfull: %s", a, b)
			}
		})
	}
}
