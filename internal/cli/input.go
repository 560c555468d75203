package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
)

// document is one YAML document or JSON value of the input, kept as the exact bytes it was read from so that
// documents lastcall does not change are written back byte for byte (comments, key order, quoting, and the
// separators between documents included).
type document struct {
	index int // 1-based, as messages count documents
	line  int // 1-based line of the document's first byte
	// sep is everything before the document that is not part of it: the "---" line (YAML) or the whitespace
	// between values (JSON).
	sep  []byte
	text []byte
	// json is true when the document is a JSON value; a changed JSON document is written back as JSON.
	json bool
}

// splitInput cuts the input into documents. A stream whose first value is a JSON object is read as a stream
// of JSON values (what `kubectl get -o json` and many generators write); everything else as multi-document
// YAML. The concatenation of every document's sep and text, plus tail, is exactly the input.
func splitInput(data []byte) (docs []document, tail []byte) {
	if trimmed := bytes.TrimLeft(data, " \t\r\n"); len(trimmed) > 0 && trimmed[0] == '{' {
		if docs, tail, ok := splitJSON(data); ok {
			return docs, tail
		}
	}
	return splitYAML(data), nil
}

// splitJSON reads consecutive JSON values. It reports !ok on any syntax error, so that YAML flow mappings
// (which also start with '{') and broken JSON go through the YAML parser, whose errors carry line numbers.
func splitJSON(data []byte) ([]document, []byte, bool) {
	dec := json.NewDecoder(bytes.NewReader(data))
	var docs []document
	prev := 0
	for {
		var raw json.RawMessage
		err := dec.Decode(&raw)
		if errors.Is(err, io.EOF) {
			return docs, data[prev:], true
		}
		if err != nil {
			return nil, nil, false
		}
		end := int(dec.InputOffset())
		start := end - len(raw)
		docs = append(docs, document{
			index: len(docs) + 1, line: 1 + bytes.Count(data[:start], []byte("\n")),
			sep: data[prev:start], text: data[start:end], json: true,
		})
		prev = end
	}
}

// splitYAML cuts at "---" lines. A "---" at the start of a line is always a document marker: inside a block
// scalar the content is indented, so it cannot start at column 0.
func splitYAML(data []byte) []document {
	var docs []document
	cur := document{line: 1}
	start, line := 0, 1
	flush := func(textEnd int) {
		cur.text = data[start:textEnd]
		// A file that starts with "---" has no document before it.
		if len(cur.sep) > 0 || len(cur.text) > 0 {
			cur.index = len(docs) + 1
			docs = append(docs, cur)
		}
	}
	for off := 0; off < len(data); line++ {
		end := bytes.IndexByte(data[off:], '\n')
		if end < 0 {
			end = len(data)
		} else {
			end += off + 1
		}
		if isSeparator(data[off:end]) {
			flush(off)
			sepEnd := off + separatorEnd(data[off:end])
			cur = document{sep: data[off:sepEnd], line: line + 1}
			if sepEnd < end {
				// "--- {a: 1}": content on the marker line belongs to the document.
				cur.line = line
			}
			start = sepEnd
		}
		off = end
	}
	flush(len(data))
	if len(docs) == 0 {
		docs = append(docs, document{index: 1, line: 1, text: data})
	}
	return docs
}

func isSeparator(l []byte) bool {
	if !bytes.HasPrefix(l, []byte("---")) {
		return false
	}
	return len(l) == 3 || l[3] == ' ' || l[3] == '\t' || l[3] == '\n' || l[3] == '\r'
}

// separatorEnd returns how much of a marker line is the marker: the whole line when only whitespace or a
// comment follows "---", else "---" and the blanks after it.
func separatorEnd(l []byte) int {
	rest := bytes.TrimLeft(l[3:], " \t")
	if len(rest) == 0 || rest[0] == '#' || rest[0] == '\n' || rest[0] == '\r' {
		return len(l)
	}
	return len(l) - len(rest)
}

// isJSONText reports whether a YAML document is really a JSON object (first significant byte '{'), so a
// changed one is written back as JSON.
func isJSONText(text []byte) bool {
	for _, l := range bytes.SplitAfter(text, []byte("\n")) {
		t := bytes.TrimLeft(l, " \t\r\n")
		if len(t) == 0 || t[0] == '#' {
			continue
		}
		return t[0] == '{'
	}
	return false
}

// leadingComments returns the comment and blank lines a document starts with. They survive a rewrite of the
// document (the YAML library drops comments it parsed), so a header such as "# Source: chart/templates/x.yaml"
// from `helm template` stays with its object.
func leadingComments(text []byte) []byte {
	n := 0
	for n < len(text) {
		end := bytes.IndexByte(text[n:], '\n')
		if end < 0 {
			break
		}
		l := bytes.TrimLeft(text[n:n+end], " \t\r")
		if len(l) > 0 && l[0] != '#' {
			break
		}
		n += end + 1
	}
	return text[:n]
}
