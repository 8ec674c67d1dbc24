package statestore

import (
	"strconv"
	"strings"
)

// RebindDollar rewrites the `?` placeholders of query as $1, $2, … (the
// PostgreSQL syntax). Question marks inside string literals ('…', E'…'),
// dollar-quoted strings ($tag$…$tag$), quoted identifiers ("…") and
// comments (-- … and /* … */) are not placeholders and are kept.
func RebindDollar(query string) string {
	if strings.IndexByte(query, '?') < 0 {
		return query
	}
	var b strings.Builder
	b.Grow(len(query) + 8)
	n := 0
	last := 0
	scanSQL(query, func(i int, c byte) {
		if c != '?' {
			return
		}
		n++
		b.WriteString(query[last:i])
		b.WriteByte('$')
		b.WriteString(strconv.Itoa(n))
		last = i + 1
	})
	b.WriteString(query[last:])
	return b.String()
}

// SplitStatements splits a script at its top-level semicolons (those outside
// literals, quoted identifiers and comments) and returns the non-empty
// statements, trimmed. Statements whose body itself contains semicolons
// (SQLite triggers) cannot be split this way and are not supported in
// migrations.
func SplitStatements(script string) []string {
	var out []string
	start := 0
	add := func(s string) {
		if s = strings.TrimSpace(s); s != "" && !onlyComments(s) {
			out = append(out, s)
		}
	}
	scanSQL(script, func(i int, c byte) {
		if c != ';' {
			return
		}
		add(script[start:i])
		start = i + 1
	})
	add(script[start:])
	return out
}

// onlyComments reports whether s holds nothing but comments and space.
func onlyComments(s string) bool {
	i := 0
	for i < len(s) {
		switch {
		case strings.HasPrefix(s[i:], "--"):
			j := strings.IndexByte(s[i:], '\n')
			if j < 0 {
				return true
			}
			i += j + 1
		case strings.HasPrefix(s[i:], "/*"):
			i = skipBlockComment(s, i)
		case s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r':
			i++
		default:
			return false
		}
	}
	return true
}

// scanSQL calls fn for each `?` and `;` of query that is outside string
// literals, dollar-quoted strings, quoted identifiers and comments.
func scanSQL(query string, fn func(i int, c byte)) {
	i := 0
	for i < len(query) {
		c := query[i]
		switch {
		case c == '?' || c == ';':
			fn(i, c)
			i++
		case c == '\'':
			// An E'…' string takes backslash escapes.
			escapes := i > 0 && (query[i-1] == 'E' || query[i-1] == 'e') &&
				(i < 2 || !isIdentByte(query[i-2]))
			i = skipQuoted(query, i, '\'', escapes)
		case c == '"' || c == '`':
			i = skipQuoted(query, i, c, false)
		case c == '-' && i+1 < len(query) && query[i+1] == '-':
			j := strings.IndexByte(query[i:], '\n')
			if j < 0 {
				return
			}
			i += j + 1
		case c == '/' && i+1 < len(query) && query[i+1] == '*':
			i = skipBlockComment(query, i)
		case c == '$' && (i == 0 || !isIdentByte(query[i-1])):
			i = skipDollarQuoted(query, i)
		default:
			i++
		}
	}
}

// skipQuoted returns the index after the quoted text opening at i. A
// doubled quote stands for itself; with escapes, a backslash escapes the
// next byte.
func skipQuoted(s string, i int, q byte, escapes bool) int {
	i++
	for i < len(s) {
		switch {
		case escapes && s[i] == '\\':
			i += 2
		case s[i] == q:
			if i+1 < len(s) && s[i+1] == q {
				i += 2
				continue
			}
			return i + 1
		default:
			i++
		}
	}
	return len(s)
}

// skipBlockComment returns the index after the (possibly nested, as in
// PostgreSQL) block comment opening at i.
func skipBlockComment(s string, i int) int {
	depth := 0
	for i < len(s) {
		switch {
		case strings.HasPrefix(s[i:], "/*"):
			depth++
			i += 2
		case strings.HasPrefix(s[i:], "*/"):
			depth--
			i += 2
			if depth == 0 {
				return i
			}
		default:
			i++
		}
	}
	return len(s)
}

// skipDollarQuoted returns the index after the dollar-quoted string opening
// at i, or i+1 when the $ does not open one (a $1 parameter, say).
func skipDollarQuoted(s string, i int) int {
	j := i + 1
	for j < len(s) && isIdentByte(s[j]) && !(j == i+1 && s[j] >= '0' && s[j] <= '9') {
		j++
	}
	if j >= len(s) || s[j] != '$' {
		return i + 1
	}
	tag := s[i : j+1]
	end := strings.Index(s[j+1:], tag)
	if end < 0 {
		return len(s)
	}
	return j + 1 + end + len(tag)
}

func isIdentByte(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c >= 0x80
}
