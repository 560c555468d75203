package patch_test

import (
	"bytes"
	"encoding/json"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"

	"github.com/lastcall-dev/lastcall/internal/testcases"
	"github.com/lastcall-dev/lastcall/pkg/patch"
)

func decodeTree(t testing.TB, doc []byte) map[string]any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

func parseOps(t testing.TB, p string) []patch.Operation {
	t.Helper()
	var raw []struct {
		Op    string          `json:"op"`
		Path  string          `json:"path"`
		Value json.RawMessage `json:"value"`
	}
	if err := json.Unmarshal([]byte(p), &raw); err != nil {
		t.Fatal(err)
	}
	ops := make([]patch.Operation, len(raw))
	for i, r := range raw {
		ops[i] = patch.Operation{Operation: r.Op, Path: r.Path}
		if r.Value != nil {
			ops[i].Value = r.Value
		}
	}
	return ops
}

// sameAsLibrary applies ops to doc both ways and fails unless both fail or both give the same document.
func sameAsLibrary(t *testing.T, doc []byte, ops []patch.Operation) {
	t.Helper()
	want, libErr := libraryApply(doc, patch.Encode(ops))
	tree := decodeTree(t, doc)
	err := patch.ApplyTree(tree, ops)
	if (err != nil) != (libErr != nil) {
		t.Fatalf("ApplyTree error %v, library error %v (patch %s)", err, libErr, patch.Encode(ops))
	}
	if err != nil {
		return
	}
	got, _ := json.Marshal(tree)
	if !jsonpatch.Equal(got, want) {
		t.Fatalf("patch %s on %s:\nApplyTree %s\nlibrary   %s", patch.Encode(ops), doc, got, want)
	}
}

// The CLI's in-memory apply gives what a JSONPatch library gives from the webhook's encoded patch: for every
// golden case, on the pod as written (not as our types re-encode it).
func TestApplyTreeMatchesLibrary(t *testing.T) {
	cases, err := testcases.Load("../mutate/testdata")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			res := c.Engine.Mutate(c.Pod, c.Namespace, c.Catalog)
			ops, err := patch.Pod(c.Pod, res.Pod)
			if err != nil {
				t.Fatal(err)
			}
			sameAsLibrary(t, c.PodJSON, ops)
		})
	}
}

func TestApplyTreeEdgeCases(t *testing.T) {
	for _, tc := range []struct{ name, doc, ops string }{
		{"parents created on add", `{"spec":{"containers":[{"name":"web"}]}}`,
			`[{"op":"add","path":"/metadata/annotations","value":{"a":"b"}},{"op":"add","path":"/spec/containers/0/resources/limits","value":{"cpu":"1"}}]`},
		{"insert in front and append", `{"l":[{"name":"a"},{"name":"b"}]}`,
			`[{"op":"add","path":"/l/0","value":{"name":"new"}},{"op":"add","path":"/l/3","value":{"name":"end"}},{"op":"add","path":"/l/-","value":1}]`},
		{"remove from the end, then replace", `{"l":[1,2,3],"m":{"k":"v"}}`,
			`[{"op":"remove","path":"/l/2"},{"op":"remove","path":"/l/1"},{"op":"replace","path":"/m/k","value":12345678901234567890}]`},
		{"escaped keys", `{"metadata":{"annotations":{"a/b":"1","c~d":"2"}}}`,
			`[{"op":"replace","path":"/metadata/annotations/a~1b","value":"x"},{"op":"remove","path":"/metadata/annotations/c~0d"},{"op":"add","path":"/metadata/annotations/lastcall.dev~1injected","value":"web=nginx"}]`},
		{"replace of a missing field fails", `{"spec":{}}`, `[{"op":"replace","path":"/spec/nope","value":1}]`},
		{"remove of a missing field fails", `{"spec":{}}`, `[{"op":"remove","path":"/spec/nope"}]`},
		{"an index out of range fails", `{"l":[1]}`, `[{"op":"add","path":"/l/2","value":1}]`},
		{"a path through a scalar fails", `{"s":"x"}`, `[{"op":"add","path":"/s/t","value":1}]`},
	} {
		t.Run(tc.name, func(t *testing.T) { sameAsLibrary(t, []byte(tc.doc), parseOps(t, tc.ops)) })
	}
}
