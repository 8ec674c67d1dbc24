package event

import (
	"bytes"
	"encoding/json"
	"strings"
)

// EditContext returns the event object raw with each member name of its
// context passed through edit, which gets the member's JSON value and
// returns the new value and whether to keep the member. Every occurrence
// counts (a repeated context or member, a key written with escapes such
// as "\u0069p" or in another case, "IP"), so what a JSON decoder would
// read as context.name is never missed. raw itself is returned (not a copy) when nothing changes,
// and when raw is not a JSON object.
func EditContext(raw []byte, name string, edit func(val []byte) ([]byte, bool)) []byte {
	type span struct{ start, end int }
	var ctxs []span
	start := skipSpace(raw, 0)
	if start >= len(raw) || raw[start] != '{' {
		return raw
	}
	if _, err := scanObject(raw, start, 1, func(key, val []byte) {
		if keyIs(key, "context") && val[0] == '{' {
			o := offset(raw, val)
			ctxs = append(ctxs, span{o, o + len(val)})
		}
	}); err != nil {
		return raw
	}
	out := raw
	for i := len(ctxs) - 1; i >= 0; i-- { // from the end: earlier offsets stay valid
		c := ctxs[i]
		obj := out[c.start:c.end]
		// First only ask: most contexts need no change, and cost no copy.
		type edited struct {
			val  []byte
			keep bool
		}
		var edits map[int]edited // by member position
		pos := 0
		_, _ = scanObject(obj, 0, 2, func(key, val []byte) {
			if keyIs(key, name) {
				nv, keep := edit(val)
				if !keep || !bytes.Equal(nv, val) {
					if edits == nil {
						edits = map[int]edited{}
					}
					edits[pos] = edited{nv, keep}
				}
			}
			pos++
		})
		if edits == nil {
			continue
		}
		rebuilt := make([]byte, 0, len(obj))
		rebuilt = append(rebuilt, '{')
		first := true
		pos = 0
		_, _ = scanObject(obj, 0, 2, func(key, val []byte) {
			e, ok := edits[pos]
			pos++
			if ok {
				if !e.keep {
					return
				}
				val = e.val
			}
			if !first {
				rebuilt = append(rebuilt, ',')
			}
			first = false
			rebuilt = append(rebuilt, key...)
			rebuilt = append(rebuilt, ':')
			rebuilt = append(rebuilt, val...)
		})
		rebuilt = append(rebuilt, '}')
		next := make([]byte, 0, len(out)-len(obj)+len(rebuilt))
		next = append(next, out[:c.start]...)
		next = append(next, rebuilt...)
		out = append(next, out[c.end:]...)
	}
	return out
}

// keyIs reports whether the raw JSON key (quotes included) is name once
// decoded, ignoring case as Go's encoding/json does when it fills a
// struct field (so "Context" and "IP" are what a decoder reads as them).
func keyIs(key []byte, name string) bool {
	if bytes.IndexByte(key, '\\') < 0 {
		return strings.EqualFold(string(key[1:len(key)-1]), name)
	}
	var s string
	return json.Unmarshal(key, &s) == nil && strings.EqualFold(s, name)
}
