package patch_test

import (
	"encoding/json"
	"testing"

	"github.com/lastcall-dev/lastcall/internal/testcases"
	"github.com/lastcall-dev/lastcall/pkg/patch"
)

// typicalOps is the patch of the README's pod (nginx in front of php-fpm): the shim and check init containers,
// the volume, both hooks, the grace period and the record.
func typicalOps(b *testing.B) []patch.Operation {
	b.Helper()
	cases, err := testcases.Load("../mutate/testdata")
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range cases {
		if c.Name == "nginx-php-fpm" {
			res := c.Engine.Mutate(c.Pod, c.Namespace, c.Catalog)
			ops, err := patch.Pod(c.Pod, res.Pod)
			if err != nil {
				b.Fatal(err)
			}
			return ops
		}
	}
	b.Fatal("no golden case nginx-php-fpm")
	return nil
}

// BenchmarkEncode is the hand-written JSONPatch encoding the webhook uses; BenchmarkEncodeWithEncodingJSON is
// what json.Marshal of the same operations costs (it re-validates and compacts every raw value). Together
// they say what Encode buys per admission.
func BenchmarkEncode(b *testing.B) {
	ops := typicalOps(b)
	b.ReportAllocs()
	for b.Loop() {
		_ = patch.Encode(ops)
	}
}

func BenchmarkEncodeWithEncodingJSON(b *testing.B) {
	ops := typicalOps(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := json.Marshal(ops); err != nil {
			b.Fatal(err)
		}
	}
}
