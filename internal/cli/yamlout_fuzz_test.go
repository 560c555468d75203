package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"sigs.k8s.io/yaml"
)

// FuzzFastYAML holds fastYAML to the library it imitates: for any JSON object it accepts, its output is
// byte for byte what sigs.k8s.io/yaml.JSONToYAML writes, and reads back as the same object. (When fastYAML
// refuses a tree, the CLI writes it with the library itself.)
func FuzzFastYAML(f *testing.F) {
	goldens, _ := filepath.Glob("../../pkg/mutate/testdata/*.yaml")
	for _, g := range goldens {
		data, err := os.ReadFile(g)
		if err != nil {
			f.Fatal(err)
		}
		for _, doc := range bytes.Split(data, []byte("\n---\n")) {
			if js, err := yaml.YAMLToJSON(doc); err == nil {
				f.Add(js)
			}
		}
	}
	for _, d := range docsOf(string(benchInput(f, 10))) {
		if js, err := yaml.YAMLToJSON(d.text); err == nil {
			f.Add(js)
		}
	}
	f.Add([]byte(`{"a":"yes","b":"1.5","c":"0x1F","d":"- x","e":"a: b","f":"~","g":"","h":[],"i":{},"j":null,"k":[[1],[{}]]}`))
	f.Add([]byte(`{"ports":[{"containerPort":8080}],"n":18446744073709551615,"m":-9223372036854775808,"s":"08:30"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if !json.Valid(data) {
			return
		}
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		var obj map[string]any
		if dec.Decode(&obj) != nil || obj == nil {
			return
		}
		want, err := yaml.JSONToYAML(data)
		if err != nil {
			return // not something the library writes either (duplicate keys, ...)
		}
		got, ok := fastYAML(yamlValue(obj).(map[string]any))
		if !ok {
			return
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("fastYAML differs from sigs.k8s.io/yaml for %s:\nfast:\n%s\nlibrary:\n%s", data, got, want)
		}
		back, err := yaml.YAMLToJSON(got)
		if err != nil {
			t.Fatalf("fastYAML wrote YAML that does not parse: %v\n%s", err, got)
		}
		var a, b any
		if json.Unmarshal(back, &a) != nil || json.Unmarshal(data, &b) != nil {
			t.Fatalf("round trip of %s gave %s", data, back)
		}
		if ja, jb := mustMarshal(t, a), mustMarshal(t, b); !bytes.Equal(ja, jb) {
			t.Fatalf("fastYAML changed the value: %s became %s", jb, ja)
		}
	})
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
