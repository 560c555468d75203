package policy

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"
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
	if !utf8.ValidString(pattern) {
		// path.Match compares such bytes as bytes; CEL strings are Unicode, and so is every string the API
		// server stores (it could never match there either). Refused rather than read as other runes.
		return "", fmt.Errorf("pattern %q: not valid UTF-8", pattern)
	}
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

// globClass translates a character class starting after '[' and returns the index of the closing ']'. It
// reads the class as path.Match does: runes, each possibly escaped by a backslash, and lo-hi ranges; a
// negated class matches any rune outside it, '/' included (unlike '?' and '*'); a reversed range (z-a)
// holds no rune, so it is left out rather than handed to RE2, which refuses it. Every rune is written as
// \x{...}, which RE2 reads literally inside a class whatever the rune.
func globClass(p string, i int) (int, string, error) {
	negated := i < len(p) && p[i] == '^'
	if negated {
		i++
	}
	var ranges strings.Builder
	for n := 0; ; n++ {
		if i >= len(p) {
			return 0, "", fmt.Errorf("pattern %q: unterminated character class", p)
		}
		if p[i] == ']' && n > 0 {
			break
		}
		lo, next, err := classRune(p, i)
		if err != nil {
			return 0, "", err
		}
		hi := lo
		if next < len(p) && p[next] == '-' {
			if hi, next, err = classRune(p, next+1); err != nil {
				return 0, "", err
			}
		}
		i = next
		if lo <= hi {
			fmt.Fprintf(&ranges, `\x{%x}`, lo)
			if hi != lo {
				fmt.Fprintf(&ranges, `-\x{%x}`, hi)
			}
		}
	}
	switch {
	case ranges.Len() > 0 && negated:
		return i, "[^" + ranges.String() + "]", nil
	case ranges.Len() > 0:
		return i, "[" + ranges.String() + "]", nil
	case negated: // nothing excluded: any rune
		return i, `[\x{0}-\x{10ffff}]`, nil
	default: // nothing included: no rune
		return i, `[^\x{0}-\x{10ffff}]`, nil
	}
}

// classRune reads one rune of a character class at p[i], a backslash escaping the next, as path.Match's
// getEsc does, and returns the index after it. '-' and ']' unescaped cannot start a range end.
func classRune(p string, i int) (rune, int, error) {
	if i >= len(p) || p[i] == '-' || p[i] == ']' {
		return 0, 0, fmt.Errorf("pattern %q: bad character class", p)
	}
	if p[i] == '\\' {
		i++
		if i >= len(p) {
			return 0, 0, fmt.Errorf("pattern %q: trailing backslash", p)
		}
	}
	r, n := utf8.DecodeRuneInString(p[i:])
	return r, i + n, nil
}
