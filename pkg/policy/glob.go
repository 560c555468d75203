package policy

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// lit is a CEL string literal for a Go string. Go's quoting is a subset of CEL's escapes.
func lit(s string) string { return strconv.Quote(s) }

// quoteExpr is the CEL for Go's %q of a runtime string: quotes and backslashes escaped. Go also escapes
// control and non-printable characters; container names, images and programs that contain them differ in the
// warning text only (a documented difference).
func quoteExpr(e string) string {
	return `'"' + (` + e + `).replace('\\', '\\\\').replace('"', '\\"') + '"'`
}

// globExpr is CEL that is true when subject (a CEL string expression) matches the path.Match pattern. Plain
// names and prefix patterns compile to == and startsWith, which cost less than a regular expression.
func globExpr(subject, pattern string) (string, error) {
	meta := strings.IndexAny(pattern, `*?[\`)
	switch {
	case meta < 0:
		return subject + " == " + lit(pattern), nil
	case meta == len(pattern)-1 && pattern[meta] == '*':
		return subject + ".startsWith(" + lit(pattern[:meta]) + ")", nil
	}
	re, err := globRegexp(pattern)
	if err != nil {
		return "", err
	}
	return subject + ".matches(" + lit(re) + ")", nil
}

// globRegexp translates a path.Match pattern into an anchored RE2 expression with the same meaning.
func globRegexp(pattern string) (string, error) {
	var b strings.Builder
	b.WriteString("^")
	for i := 0; i < len(pattern); i++ {
		ch := pattern[i]
		switch ch {
		case '*':
			b.WriteString("[^/]*")
		case '?':
			b.WriteString("[^/]")
		case '\\':
			if i+1 >= len(pattern) {
				return "", fmt.Errorf("pattern %q: trailing backslash", pattern)
			}
			i++
			b.WriteString(regexp.QuoteMeta(pattern[i : i+1]))
		case '[':
			end, class, err := globClass(pattern, i+1)
			if err != nil {
				return "", err
			}
			b.WriteString(class)
			i = end
		default:
			b.WriteString(regexp.QuoteMeta(string([]byte{ch})))
		}
	}
	b.WriteString("$")
	if _, err := regexp.Compile(b.String()); err != nil {
		return "", fmt.Errorf("pattern %q: %w", pattern, err)
	}
	return b.String(), nil
}

// globClass translates a character class starting after '[' and returns the index of the closing ']'.
func globClass(p string, i int) (int, string, error) {
	var b strings.Builder
	b.WriteString("[")
	if i < len(p) && p[i] == '^' {
		b.WriteString("^/")
		i++
	}
	first := true
	for ; i < len(p); i++ {
		ch := p[i]
		switch {
		case ch == ']' && !first:
			b.WriteString("]")
			return i, b.String(), nil
		case ch == '\\':
			if i+1 >= len(p) {
				return 0, "", fmt.Errorf("pattern %q: trailing backslash", p)
			}
			i++
			b.WriteString(classChar(p[i]))
		case ch == '-' && !first && i+1 < len(p) && p[i+1] != ']':
			b.WriteString("-")
		default:
			b.WriteString(classChar(ch))
		}
		first = false
	}
	return 0, "", fmt.Errorf("pattern %q: unterminated character class", p)
}

// classChar is one byte of a character class as RE2 reads it literally: letters and digits as they are (in
// RE2 a backslash before them means something else, \x a hex escape, \d a class), UTF-8 bytes as they are,
// everything else escaped.
func classChar(ch byte) string {
	if (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch >= 0x80 {
		return string([]byte{ch})
	}
	return `\` + string([]byte{ch})
}
