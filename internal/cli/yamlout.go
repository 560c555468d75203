package cli

import (
	"bytes"
	"sort"
	"strconv"
	"strings"
)

// fastYAML writes a generic JSON tree (maps, lists, strings, int64, uint64, bools, nils) as block YAML in the
// layout go.yaml.in/yaml/v2 uses (sorted keys, two-space indent, compact lists), which is what
// sigs.k8s.io/yaml and kubectl write. It exists for speed: the YAML library's emitter was half of inject's
// time. It handles only scalars it can write without quoting decisions (plain words, durations, image names,
// paths, flags) and reports !ok for anything else (floats, multi-line or punctuated strings, strings that
// would read back as another type, strings the library would fold at its line width), and the caller then
// uses the library. TestFastYAMLMatchesLibrary and FuzzFastYAML (against sigs.k8s.io/yaml) hold the two to
// the same bytes.
func fastYAML(v map[string]any) ([]byte, bool) {
	w := yamlWriter{b: make([]byte, 0, 4096)}
	if len(v) == 0 {
		return []byte("{}\n"), true
	}
	w.mapping(v, 0, false)
	return w.b, w.ok()
}

type yamlWriter struct {
	b   []byte
	bad bool
}

func (w *yamlWriter) ok() bool { return !w.bad }

// yamlBestWidth is the line width go.yaml.in/yaml/v2's emitter folds plain scalars at.
const yamlBestWidth = 80

// column is the current column of the output (0-based).
func (w *yamlWriter) column() int {
	return len(w.b) - (bytes.LastIndexByte(w.b, '\n') + 1)
}

func (w *yamlWriter) indent(n int) {
	for range n {
		w.b = append(w.b, ' ')
	}
}

// mapping writes the keys of m at column indent; with inline, the first key continues the current line (a
// list item's "- ").
func (w *yamlWriter) mapping(m map[string]any, indent int, inline bool) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return yamlKeyLess(keys[i], keys[j]) })
	for i, k := range keys {
		if w.bad {
			return
		}
		if i > 0 || !inline {
			w.indent(indent)
		}
		if !plainSafe(k) {
			w.bad = true
			return
		}
		w.b = append(w.b, k...)
		w.b = append(w.b, ':')
		w.value(m[k], indent)
	}
}

// yamlKeyLess is the YAML library's key order (go.yaml.in/yaml/v2 keyList.Less) for the ASCII keys
// plainSafe admits: numbers inside keys compare by value ("a9" before "a10") and any other character before
// a letter ("a_b" before "aB"), which byte order gets wrong.
func yamlKeyLess(a, b string) bool {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] == b[i] {
			continue
		}
		al, bl := isLetter(a[i]), isLetter(b[i])
		if al && bl {
			return a[i] < b[i]
		}
		if al || bl {
			return bl
		}
		var an, bn int64
		if a[i] == '0' || b[i] == '0' {
			for j := i - 1; j >= 0 && isDigit(a[j]); j-- {
				if a[j] != '0' {
					an, bn = 1, 1
					break
				}
			}
		}
		ai, bi := i, i
		for ; ai < len(a) && isDigit(a[ai]); ai++ {
			an = an*10 + int64(a[ai]-'0')
		}
		for ; bi < len(b) && isDigit(b[bi]); bi++ {
			bn = bn*10 + int64(b[bi]-'0')
		}
		if an != bn {
			return an < bn
		}
		if ai != bi {
			return ai < bi
		}
		return a[i] < b[i]
	}
	return len(a) < len(b)
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isDigit(c byte) bool  { return c >= '0' && c <= '9' }

// value writes what follows "key:".
func (w *yamlWriter) value(v any, indent int) {
	switch x := v.(type) {
	case map[string]any:
		if len(x) == 0 {
			w.b = append(w.b, " {}\n"...)
			return
		}
		w.b = append(w.b, '\n')
		w.mapping(x, indent+2, false)
	case []any:
		if len(x) == 0 {
			w.b = append(w.b, " []\n"...)
			return
		}
		w.b = append(w.b, '\n')
		w.sequence(x, indent, false)
	default:
		w.b = append(w.b, ' ')
		w.scalar(v)
		w.b = append(w.b, '\n')
	}
}

func (w *yamlWriter) sequence(l []any, indent int, inline bool) {
	for i, e := range l {
		if w.bad {
			return
		}
		if i > 0 || !inline {
			w.indent(indent)
		}
		w.b = append(w.b, "- "...)
		switch x := e.(type) {
		case map[string]any:
			if len(x) == 0 {
				w.b = append(w.b, "{}\n"...)
				continue
			}
			w.mapping(x, indent+2, true)
		case []any:
			if len(x) == 0 {
				w.b = append(w.b, "[]\n"...)
				continue
			}
			w.sequence(x, indent+2, true)
		default:
			w.scalar(e)
			w.b = append(w.b, '\n')
		}
	}
}

func (w *yamlWriter) scalar(v any) {
	switch x := v.(type) {
	case nil:
		w.b = append(w.b, "null"...)
	case bool:
		w.b = strconv.AppendBool(w.b, x)
	case int64:
		w.b = strconv.AppendInt(w.b, x, 10)
	case uint64:
		w.b = strconv.AppendUint(w.b, x, 10)
	case string:
		if x == "" {
			w.b = append(w.b, `""`...)
			return
		}
		if !plainSafe(x) {
			w.bad = true
			return
		}
		// The library folds a plain scalar at a space once the line is past 80 columns (its best width);
		// such a string is left to it rather than imitated.
		if strings.IndexByte(x, ' ') >= 0 && w.column()+len(x) > yamlBestWidth-1 {
			w.bad = true
			return
		}
		w.b = append(w.b, x...)
	default:
		w.bad = true
	}
}

// plainSafe reports whether s can be written as a plain scalar that reads back as the same string, by a rule
// much stricter than YAML's: only letters, digits and ._/:=@+- (plus inner single spaces, commas and
// asterisks), not starting
// with an indicator, no ": " or " #", and not a word YAML 1.1 reads as a bool or null. A string that starts
// with a digit must be a number followed by a unit ("5s", "100m", "64Mi", "1m30s"), never a number itself.
func plainSafe(s string) bool {
	if s == "" || s[0] == ' ' || s[len(s)-1] == ' ' || s[len(s)-1] == ':' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '.' || c == '_' || c == '/' || c == '=' || c == '@' || c == '+' || c == '-':
		case (c == ',' || c == '*') && i > 0:
		case c == ':':
			if i+1 < len(s) && s[i+1] == ' ' {
				return false
			}
		case c == ' ':
			if s[i+1] == ' ' || s[i+1] == '#' {
				return false
			}
		default:
			return false
		}
	}
	switch c := s[0]; {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		return !yaml11Word[s]
	case c == '/':
		return true
	case c == '-':
		// "--delay", "-A": a dash followed by a space or nothing is a list item; "-1" a number.
		return len(s) > 1 && (s[1] == '-' || s[1] >= 'a' && s[1] <= 'z' || s[1] >= 'A' && s[1] <= 'Z')
	case c >= '0' && c <= '9':
		// With a space and no colon it cannot be a number or a timestamp ("0 3 * * *").
		// Two dots make it an address or a version ("10.0.0.1:8000", "1.27.3"): no YAML number has two.
		return numberWithUnit(s) || (strings.IndexByte(s, ' ') > 0 && strings.IndexByte(s, ':') < 0) ||
			(strings.Count(s, ".") >= 2 && strings.IndexByte(s, ' ') < 0)
	}
	return false
}

// numberWithUnit accepts digits, an optional fraction, then a unit that starts with a letter other than the
// ones YAML numbers use (e, x, o, b), and contains no more dots or other punctuation: "5s", "1m30s", "64Mi".
func numberWithUnit(s string) bool {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i < len(s) && s[i] == '.' {
		i++
		j := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == j {
			return false
		}
	}
	if i == len(s) {
		return false
	}
	switch s[i] {
	case 'e', 'E', 'x', 'X', 'o', 'O', 'b', 'B':
		return false
	}
	for ; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// yaml11Word are the plain words YAML 1.1 (go.yaml.in/yaml/v2) reads as bools or null, and the float
// specials; they must be quoted.
var yaml11Word = map[string]bool{
	"y": true, "Y": true, "yes": true, "Yes": true, "YES": true, "n": true, "N": true, "no": true, "No": true, "NO": true,
	"true": true, "True": true, "TRUE": true, "false": true, "False": true, "FALSE": true,
	"on": true, "On": true, "ON": true, "off": true, "Off": true, "OFF": true,
	"null": true, "Null": true, "NULL": true,
}
