package cli

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
	goyaml "go.yaml.in/yaml/v2"
	"sigs.k8s.io/yaml"
)

// fastYAML writes the bytes the YAML library writes, whenever it accepts a tree; over the injected benchmark
// and multi-document inputs it must accept most injected documents (else it is no faster).
func TestFastYAMLMatchesLibrary(t *testing.T) {
	t.Parallel()
	input := string(benchInput(t, 200)) + "---\n" + readTestdata(t, "multi.yaml")
	out, _, code := run(t, input, "inject")
	if code != ExitOK {
		t.Fatalf("exit %d", code)
	}
	fast, total := 0, 0
	for _, d := range docsOf(out) {
		js, err := yaml.YAMLToJSON(d.text)
		if err != nil {
			t.Fatal(err)
		}
		dec := json.NewDecoder(bytes.NewReader(js))
		dec.UseNumber()
		var obj map[string]any
		if dec.Decode(&obj) != nil || obj == nil || !bytes.Contains(d.text, []byte("lastcall.dev/injected")) {
			continue
		}
		tree := yamlValue(obj).(map[string]any)
		total++
		got, ok := fastYAML(tree)
		if !ok {
			t.Logf("library: %.80q", d.text)
			continue
		}
		fast++
		want, err := goyaml.Marshal(tree)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(string(want), string(got)); d != "" {
			t.Fatalf("fastYAML differs from the library (-library +fast):\n%s", d)
		}
	}
	if fast*10 < total*6 {
		t.Errorf("fastYAML took only %d of %d documents", fast, total)
	}
}

func TestPlainSafe(t *testing.T) {
	t.Parallel()
	for s, want := range map[string]bool{
		"nginx": true, "nginx:1.27": true, "/lastcall/bin/lastcall-shim": true, "--delay": true, "-A": true, "5s": true,
		"1m30s": true, "100m": true, "0.5Gi": true, "64Mi": true, "app.kubernetes.io/name": true, "a b": true, "SIGQUIT": true,
		"": false, "yes": false, "on": false, "Null": false, "80": false, "1.5": false, "1e3": false, "0x1F": false,
		"2001-12-14": false, "1:20": false, "-": false, "-1": false, "a: b": false, "a #b": false, " a": false, "a:": false,
		"a\nb": false, "*x": false, ",x": false, "x,y": true, "web=nginx,php=php-fpm": true, "0 3 * * *": true, "1 2:3": false, "1.27.3": true, "10.0.0.1:8000": true, "1.2": false, "'q'": false, "a  b": false,
	} {
		if got := plainSafe(s); got != want {
			t.Errorf("plainSafe(%q) = %v, want %v", s, got, want)
		}
	}
}

// Keys come out in the library's order, which is not byte order.
func TestFastYAMLKeyOrder(t *testing.T) {
	t.Parallel()
	keys := []string{"a10", "a9", "a_b", "aB", "ab", "a", "x0", "x00", "x01", "x1", "v1.2", "v1.10", "b-c", "b.c", "b/c", "B", "Z", "k8s.io/x", "app.kubernetes.io/name", "app"}
	m := map[string]any{}
	for i, k := range keys {
		m[k] = map[string]any{k: int64(i), "list": []any{k, map[string]any{"z": true, "a_": nil}}}
	}
	got, ok := fastYAML(m)
	if !ok {
		t.Fatal("fastYAML refused plain keys")
	}
	want, err := goyaml.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(string(want), string(got)); d != "" {
		t.Errorf("(-library +fast):\n%s", d)
	}
}
