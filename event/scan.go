package event

import (
	"encoding/binary"
	"errors"
)

// A small, allocation-free JSON scanner. Collection validates every byte of
// every request and lifts a dozen top-level fields out of each event; doing
// that in one pass without building values is several times faster than a
// general decoder, and ingest throughput is bound by it.

var errSyntax = errors.New("event: invalid JSON")

// maxDepth bounds nesting so hostile input cannot exhaust the stack; it is
// the same bound encoding/json applies.
const maxDepth = 10000

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func skipSpace(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

// scanValue checks the JSON value starting at b[i] (no leading space) and
// returns the index just past it.
func scanValue(b []byte, i, depth int) (int, error) {
	if i >= len(b) {
		return 0, errSyntax
	}
	switch c := b[i]; {
	case c == '{':
		return scanObject(b, i, depth+1, nil)
	case c == '[':
		return scanArray(b, i, depth+1, nil)
	case c == '"':
		return scanString(b, i)
	case c == 't':
		return scanLiteral(b, i, "true")
	case c == 'f':
		return scanLiteral(b, i, "false")
	case c == 'n':
		return scanLiteral(b, i, "null")
	case c == '-' || (c >= '0' && c <= '9'):
		return scanNumber(b, i)
	}
	return 0, errSyntax
}

func scanLiteral(b []byte, i int, lit string) (int, error) {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return 0, errSyntax
	}
	return i + len(lit), nil
}

func scanNumber(b []byte, i int) (int, error) {
	if b[i] == '-' {
		i++
	}
	if i >= len(b) {
		return 0, errSyntax
	}
	switch {
	case b[i] == '0':
		i++
	case b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		return 0, errSyntax
	}
	if i < len(b) && b[i] == '.' {
		i++
		start := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == start {
			return 0, errSyntax
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		start := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == start {
			return 0, errSyntax
		}
	}
	return i, nil
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

// Bytes with each byte set to one value, for testing 8 bytes at once.
const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// plain8 reports whether none of the 8 bytes in v ends a string or needs a
// look: no quote, no backslash, no control character.
func plain8(v uint64) bool {
	// A byte b is zero iff (b - 1) & ^b has its high bit set, exactly when
	// asked of the whole word as here; below 0x20 likewise with 0x20.
	quote := v ^ ('"' * ones)
	slash := v ^ ('\\' * ones)
	return ((quote-ones)&^quote|(slash-ones)&^slash|(v-0x20*ones)&^v)&highs == 0
}

// scanString checks the string starting at the quote b[i].
func scanString(b []byte, i int) (int, error) {
	i++
	for {
		for i+8 <= len(b) && plain8(binary.LittleEndian.Uint64(b[i:])) {
			i += 8
		}
		if i >= len(b) {
			break
		}
		c := b[i]
		switch {
		case c == '"':
			return i + 1, nil
		case c == '\\':
			if i+1 >= len(b) {
				return 0, errSyntax
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) || !isHex(b[i+5]) {
					return 0, errSyntax
				}
				i += 6
			default:
				return 0, errSyntax
			}
		case c < 0x20:
			return 0, errSyntax
		default:
			i++
		}
	}
	return 0, errSyntax
}

// scanObject checks the object starting at b[i]. For each member it calls
// member (if not nil) with the raw key (quotes included) and the value's
// span.
func scanObject(b []byte, i, depth int, member func(key, val []byte)) (int, error) {
	if depth > maxDepth {
		return 0, errSyntax
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1, nil
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return 0, errSyntax
		}
		kEnd, err := scanString(b, i)
		if err != nil {
			return 0, err
		}
		key := b[i:kEnd]
		i = skipSpace(b, kEnd)
		if i >= len(b) || b[i] != ':' {
			return 0, errSyntax
		}
		i = skipSpace(b, i+1)
		vStart := i
		if i, err = scanValue(b, i, depth); err != nil {
			return 0, err
		}
		if member != nil {
			member(key, b[vStart:i])
		}
		i = skipSpace(b, i)
		if i >= len(b) {
			return 0, errSyntax
		}
		if b[i] == '}' {
			return i + 1, nil
		}
		if b[i] != ',' {
			return 0, errSyntax
		}
		i = skipSpace(b, i+1)
	}
}

// scanArray checks the array starting at b[i], calling elem (if not nil)
// with each element's span.
func scanArray(b []byte, i, depth int, elem func(val []byte)) (int, error) {
	if depth > maxDepth {
		return 0, errSyntax
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == ']' {
		return i + 1, nil
	}
	for {
		start := i
		var err error
		if i, err = scanValue(b, i, depth); err != nil {
			return 0, err
		}
		if elem != nil {
			elem(b[start:i])
		}
		i = skipSpace(b, i)
		if i >= len(b) {
			return 0, errSyntax
		}
		if b[i] == ']' {
			return i + 1, nil
		}
		if b[i] != ',' {
			return 0, errSyntax
		}
		i = skipSpace(b, i+1)
	}
}

// validDocument reports whether b is exactly one JSON value with optional
// surrounding space.
func validDocument(b []byte) bool {
	i := skipSpace(b, 0)
	end, err := scanValue(b, i, 0)
	if err != nil {
		return false
	}
	return skipSpace(b, end) == len(b)
}

// Members calls fn with each member of the JSON object b, in order: its
// key as written (quotes and any escapes included) and its value's bytes.
// It is for readers of events already validated (the raw bytes of a
// stored or logged event) that need a few members without a decoder; it
// reports false, having called fn for the members before the fault, when
// b is not one valid JSON object.
func Members(b []byte, fn func(key, val []byte)) bool {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return false
	}
	end, err := scanObject(b, i, 1, fn)
	return err == nil && skipSpace(b, end) == len(b)
}

// Elements calls fn with each element of the JSON array b, in order; it
// reports false when b is not one valid JSON array.
func Elements(b []byte, fn func(val []byte)) bool {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '[' {
		return false
	}
	end, err := scanArray(b, i, 1, fn)
	return err == nil && skipSpace(b, end) == len(b)
}

// KeyIs reports whether the raw JSON key (quotes included) is name once
// decoded, ignoring case as Go's encoding/json does when it fills a
// struct field.
func KeyIs(key []byte, name string) bool { return keyIs(key, name) }

// String decodes the JSON string r (quotes included); ok is false when r
// is not a string.
func String(r []byte) (s string, ok bool) {
	if len(r) == 0 || r[0] != '"' {
		return "", false
	}
	return jsonString(r)
}
