package mutate_test

import (
	"bytes"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/lastcall-dev/lastcall/internal/testcases"
)

// UPDATE_GOLDEN=1 rewrites the expected outputs; review the diff before committing.
var update = os.Getenv("UPDATE_GOLDEN") == "1"

func TestGolden(t *testing.T) {
	cases, err := testcases.Load("testdata")
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) < 30 {
		t.Fatalf("want at least 30 golden cases, have %d", len(cases))
	}
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			t.Parallel()
			before, err := testcases.PodYAML(c.Pod)
			if err != nil {
				t.Fatal(err)
			}
			res := c.Engine.Mutate(c.Pod, c.Namespace, c.Catalog)
			got, err := testcases.Render(res)
			if err != nil {
				t.Fatal(err)
			}
			after, _ := testcases.PodYAML(c.Pod)
			if !bytes.Equal(before, after) {
				t.Fatalf("Mutate modified its input:\n%s", cmp.Diff(string(before), string(after)))
			}
			if update {
				if err := os.WriteFile(c.Golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(c.Golden)
			if err != nil {
				t.Fatalf("%v (run with UPDATE_GOLDEN=1 to create it)", err)
			}
			if d := cmp.Diff(string(want), string(got)); d != "" {
				t.Errorf("output differs from %s (-want +got):\n%s", c.Golden, d)
			}

			// Idempotency: a second pass (reinvocation, or the CLI run twice) changes nothing.
			again := c.Engine.Mutate(res.Pod, c.Namespace, c.Catalog)
			first, _ := testcases.PodYAML(res.Pod)
			second, _ := testcases.PodYAML(again.Pod)
			if !bytes.Equal(first, second) {
				t.Errorf("not idempotent (-first +second):\n%s", cmp.Diff(string(first), string(second)))
			}
		})
	}
}
