package attribution

import (
	"encoding/json"
	"errors"
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

// skipString returns the index just past the string starting at b[i].
func skipString(b []byte, i int) (int, error) {
	for i++; i < len(b); i++ {
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

// keyIs says whether the raw key k (between its quotes) is name.
func keyIs(k []byte, name string) bool {
	if string(k) == name {
		return true
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
	err := members(raw, func(k []byte, vs, ve int) error {
		v := raw[vs:ve]
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
	})
	return e, err == nil
}

// rawFields are the texts of the paths FieldsFromJSON reads.
type rawFields struct {
	typ, channel                       string
	medium, source, name               string // context.campaign
	url, referrer, ctxChannel          string // context.page, context.channel
	propURL, propReferrer, propChannel string
}
