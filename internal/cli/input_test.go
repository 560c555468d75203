package cli

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestSplitInput(t *testing.T) {
	t.Parallel()
	type doc struct {
		Sep, Text string
		Line      int
		JSON      bool
	}
	for _, tc := range []struct {
		name, in string
		want     []doc
		tail     string
	}{
		{"single document", "a: 1\n", []doc{{"", "a: 1\n", 1, false}}, ""},
		{"empty input", "", []doc{{"", "", 1, false}}, ""},
		{"leading separator", "---\na: 1\n", []doc{{"---\n", "a: 1\n", 2, false}}, ""},
		{"comment before the first separator", "# hi\n---\na: 1\n", []doc{{"", "# hi\n", 1, false}, {"---\n", "a: 1\n", 3, false}}, ""},
		{"separator with a comment", "a: 1\n--- # two\nb: 2", []doc{{"", "a: 1\n", 1, false}, {"--- # two\n", "b: 2", 3, false}}, ""},
		{"content on the marker line", "a: 1\n--- {b: 2}\n", []doc{{"", "a: 1\n", 1, false}, {"--- ", "{b: 2}\n", 2, false}}, ""},
		{"trailing separator", "a: 1\n---\n", []doc{{"", "a: 1\n", 1, false}, {"---\n", "", 3, false}}, ""},
		{"block scalar with dashes", "a: |\n  ---\n  x\n---\nb: 1\n", []doc{{"", "a: |\n  ---\n  x\n", 1, false}, {"---\n", "b: 1\n", 5, false}}, ""},
		{"not a separator", "----\n---x\n", []doc{{"", "----\n---x\n", 1, false}}, ""},
		{"CRLF", "a: 1\r\n---\r\nb: 2\r\n", []doc{{"", "a: 1\r\n", 1, false}, {"---\r\n", "b: 2\r\n", 3, false}}, ""},
		{"JSON stream", " {\"a\":1}\n{\"b\":\n2}\n\n", []doc{{" ", `{"a":1}`, 1, true}, {"\n", "{\"b\":\n2}", 2, true}}, "\n\n"},
		{"YAML flow mapping is not JSON", "{a: 1}\n", []doc{{"", "{a: 1}\n", 1, false}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			docs, tail := splitInput([]byte(tc.in))
			var got []doc
			joined := ""
			for i, d := range docs {
				if d.index != i+1 {
					t.Errorf("document %d has index %d", i+1, d.index)
				}
				got = append(got, doc{string(d.sep), string(d.text), d.line, d.json})
				joined += string(d.sep) + string(d.text)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
			if string(tail) != tc.tail || joined+string(tail) != tc.in {
				t.Errorf("the pieces do not add up to the input: tail %q", tail)
			}
		})
	}
}

func TestLeadingComments(t *testing.T) {
	t.Parallel()
	got := string(leadingComments([]byte("# a\n\n  # b\nkind: Pod # c\n# d\n")))
	if got != "# a\n\n  # b\n" {
		t.Errorf("%q", got)
	}
}

func TestParseMinor(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]int{"v1.29": 29, "1.34": 34, "v1.30.2": 30, "v1.31.1-eks-1234": 31, " v1.28+k3s1 ": 28} {
		if got, err := parseMinor(in); err != nil || got != want {
			t.Errorf("parseMinor(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "latest", "v2.1", "1", "v1.x"} {
		if _, err := parseMinor(in); err == nil {
			t.Errorf("parseMinor(%q): want an error", in)
		}
	}
}

func TestHumanDuration(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{0: "0s", 5 * time.Second: "5s", 10 * time.Minute: "10m", 90 * time.Second: "1m30s",
		time.Hour: "1h", time.Hour + time.Second: "1h0m1s", 602 * time.Second: "10m2s", 1500 * time.Millisecond: "1.5s"} {
		if got := human(d); got != want {
			t.Errorf("human(%v) = %q, want %q", d, got, want)
		}
	}
}
