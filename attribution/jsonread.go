package attribution

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"math/bits"
	"strconv"
	"unicode/utf8"
)

// A reader of the few JSON paths an event's touch fields come from
// (FieldsFromJSON): event stores call it at append for every page view,
// so it skips what it does not need without building values, several
// times faster than encoding/json. Keys match exactly; of repeated keys
// the last wins.

var errJSON = errors.New("attribution: invalid JSON")

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func skipSpace(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

// Bytes with each byte set to one value, for testing 8 bytes at once.
const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// special8 has the high bit set of the first of the 8 bytes in v (little
// endian) that is a quote or a backslash, and maybe of later bytes; it is
// 0 when there is none. (A byte b is zero iff (b - 1) & ^b has its high
// bit set, exactly for the first such byte of the word.)
func special8(v uint64) uint64 {
	quote := v ^ ('"' * ones)
	slash := v ^ ('\\' * ones)
	return ((quote-ones)&^quote | (slash-ones)&^slash) & highs
}

// skipString returns the index just past the string starting at b[i].
// Most of an event's bytes are in strings: they are skipped 8 bytes at a
// time.
func skipString(b []byte, i int) (int, error) {
	for i++; i < len(b); i++ {
		for i+8 <= len(b) {
			if m := special8(binary.LittleEndian.Uint64(b[i:])); m != 0 {
				i += bits.TrailingZeros64(m) >> 3
				break
			}
			i += 8
		}
		if i >= len(b) {
			break
		}
		switch b[i] {
		case '"':
			return i + 1, nil
		case '\\':
			i++
		}
	}
	return 0, errJSON
}

// skipValue returns the index just past the value starting at b[i].
func skipValue(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, errJSON
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				j, err := skipString(b, i)
				if err != nil {
					return 0, err
				}
				i = j - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1, nil
				}
			}
		}
		return 0, errJSON
	}
	j := i
	for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && !isSpace(b[j]) {
		j++
	}
	if j == i {
		return 0, errJSON
	}
	return j, nil
}

// members calls fn with each key of the object starting at b[i] and its
// value, b[vs:ve]; fn's error stops it. A value that is no object has no
// members.
func members(b []byte, fn func(key []byte, vs, ve int) error) error {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return nil
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return nil
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return errJSON
		}
		ke, err := skipString(b, i)
		if err != nil {
			return err
		}
		key := b[i+1 : ke-1]
		i = skipSpace(b, ke)
		if i >= len(b) || b[i] != ':' {
			return errJSON
		}
		vs := skipSpace(b, i+1)
		ve, err := skipValue(b, vs)
		if err != nil {
			return err
		}
		if err := fn(key, vs, ve); err != nil {
			return err
		}
		i = skipSpace(b, ve)
		if i >= len(b) {
			return errJSON
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case '}':
			return nil
		default:
			return errJSON
		}
	}
}

// keyIs says whether the raw key k (between its quotes) is name, an
// ASCII name without characters JSON escapes.
func keyIs(k []byte, name string) bool {
	if len(k) <= len(name) {
		// An escape writes a character of name in more than one byte.
		return string(k) == name
	}
	for _, c := range k {
		if c == '\\' {
			var s string
			return json.Unmarshal(append(append([]byte{'"'}, k...), '"'), &s) == nil && s == name
		}
	}
	return false
}

// scalar is a JSON value as text, the way json_extract_string gives it:
// a string unquoted, a number as Go formats its float64, true or false;
// "" for null, objects and arrays.
func scalar(v []byte) string {
	if len(v) == 0 {
		return ""
	}
	switch c := v[0]; {
	case c == '"':
		plain := true
		for _, c := range v[1 : len(v)-1] {
			if c == '\\' || c < 0x20 {
				plain = false
				break
			}
		}
		if plain && utf8.Valid(v) {
			return string(v[1 : len(v)-1])
		}
		var s string
		if json.Unmarshal(v, &s) != nil {
			return ""
		}
		return s
	case c == '-' || (c >= '0' && c <= '9'):
		f, err := strconv.ParseFloat(string(v), 64)
		if err != nil {
			return ""
		}
		return strconv.FormatFloat(f, 'f', -1, 64)
	case string(v) == "true", string(v) == "false":
		return string(v)
	}
	return ""
}

// readFields reads raw's touch fields (see FieldsFromJSON); ok is false
// for JSON it cannot read.
func readFields(raw []byte) (e rawFields, ok bool) {
	var r FieldsReader
	err := members(raw, func(k []byte, vs, ve int) error { return r.member(k, raw[vs:ve]) })
	return r.f, err == nil
}

// A FieldsReader reads an event's touch fields from the top-level members
// of its stored JSON for a caller that walks them itself, to read other
// members in the same pass (the DuckDB event store reads its value
// columns so): call Member with each member, in order, then Mark. Given
// the members of one valid JSON object, Mark is what MarkFromJSON gives
// for it.
type FieldsReader struct {
	f   rawFields
	err error
}

// Member reads one top-level member: its key as written between its
// quotes, and its value's bytes.
func (r *FieldsReader) Member(key, val []byte) {
	if r.err == nil {
		r.err = r.member(key, val)
	}
}

// Mark is [MarkFromJSON] of the event of type typ, from sourceID, whose
// JSON raw had the members read.
func (r *FieldsReader) Mark(typ, sourceID string, raw []byte) (Mark, bool) {
	if !MayTouch(typ, raw) {
		return Mark{}, false
	}
	f := Fields{SourceID: sourceID}
	if r.err == nil {
		f = fieldsOf(&r.f, sourceID)
	}
	f.Type = typ
	return MarkOf(&f)
}

// member reads the top-level member k (between its quotes): v.
func (r *FieldsReader) member(k, v []byte) error {
	e := &r.f
	switch {
	case keyIs(k, "type"):
		e.typ = scalar(v)
	case keyIs(k, "channel"):
		e.channel = scalar(v)
	case keyIs(k, "context"):
		e.medium, e.source, e.name, e.url, e.referrer, e.ctxChannel = "", "", "", "", "", ""
		return members(v, func(k []byte, vs, ve int) error {
			w := v[vs:ve]
			switch {
			case keyIs(k, "campaign"):
				e.medium, e.source, e.name = "", "", ""
				return members(w, func(k []byte, vs, ve int) error {
					switch {
					case keyIs(k, "name"):
						e.name = scalar(w[vs:ve])
					case keyIs(k, "source"):
						e.source = scalar(w[vs:ve])
					case keyIs(k, "medium"):
						e.medium = scalar(w[vs:ve])
					}
					return nil
				})
			case keyIs(k, "page"):
				e.url, e.referrer = "", ""
				return members(w, func(k []byte, vs, ve int) error {
					switch {
					case keyIs(k, "url"):
						e.url = scalar(w[vs:ve])
					case keyIs(k, "referrer"):
						e.referrer = scalar(w[vs:ve])
					}
					return nil
				})
			case keyIs(k, "channel"):
				e.ctxChannel = scalar(w)
			}
			return nil
		})
	case keyIs(k, "properties"):
		e.propURL, e.propReferrer, e.propChannel = "", "", ""
		return members(v, func(k []byte, vs, ve int) error {
			switch {
			case keyIs(k, "url"):
				e.propURL = scalar(v[vs:ve])
			case keyIs(k, "referrer"):
				e.propReferrer = scalar(v[vs:ve])
			case keyIs(k, "channel"):
				e.propChannel = scalar(v[vs:ve])
			}
			return nil
		})
	}
	return nil
}

// rawFields are the texts of the paths FieldsFromJSON reads.
type rawFields struct {
	typ, channel                       string
	medium, source, name               string // context.campaign
	url, referrer, ctxChannel          string // context.page, context.channel
	propURL, propReferrer, propChannel string
}
