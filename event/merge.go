package event

import (
	"bytes"
	"encoding/binary"
)

// mergeMember returns a copy of the JSON object obj whose member name holds
// the members of the object defaults, except those obj's own member name
// already has (a shallow merge: obj wins). obj and defaults must be valid
// JSON objects, and obj's member name, if present, an object or null.
//
// The copy is carved from a (nil: allocated on its own).
func mergeMember(a *arena, obj []byte, name string, defaults []byte) []byte {
	quoted := `"` + name + `"`
	var cur []byte // the member's current value, if any
	_, _ = scanObject(obj, 0, 1, func(key, val []byte) {
		if string(key) == quoted {
			cur = val
		}
	})
	if cur == nil {
		// Insert the member first: {"name":defaults, …rest}.
		out := a.take(len(obj) + len(defaults) + len(quoted) + 2)
		out = append(out, '{')
		out = append(out, quoted...)
		out = append(out, ':')
		out = append(out, defaults...)
		if !isEmptyObject(obj) {
			out = append(out, ',')
		}
		return a.keep(append(out, obj[1:]...))
	}
	merged := defaults
	if cur[0] == '{' {
		merged = mergeObjects(cur, defaults)
	}
	// Splice the merged value where the current one was.
	start := offset(obj, cur)
	out := a.take(len(obj) - len(cur) + len(merged))
	out = append(out, obj[:start]...)
	out = append(out, merged...)
	return a.keep(append(out, obj[start+len(cur):]...))
}

// An arena hands out the rewritten events of one request from shared
// blocks instead of one allocation each.
type arena struct {
	buf   []byte
	taken int // the room the last take gave
}

// newArena returns an arena whose first block holds size bytes.
func newArena(size int) *arena {
	return &arena{buf: make([]byte, 0, size)}
}

// take returns an empty slice with room for n bytes. The caller appends at
// most n bytes to it and passes the result to keep.
func (a *arena) take(n int) []byte {
	if a == nil {
		return make([]byte, 0, n)
	}
	if cap(a.buf)-len(a.buf) < n {
		a.buf = make([]byte, 0, max(n, 2*cap(a.buf), 4096))
	}
	a.taken = n
	l := len(a.buf)
	return a.buf[l : l : l+n]
}

// keep marks out, the slice from the last take, as used and returns it.
func (a *arena) keep(out []byte) []byte {
	// An append past the room taken moved out elsewhere (its capacity
	// grew): then the block has nothing to mark.
	if a != nil && cap(out) == a.taken {
		a.buf = a.buf[:len(a.buf)+len(out)]
	}
	return out[:len(out):len(out)]
}

// offset is the position of sub, a subslice of b, within b.
func offset(b, sub []byte) int {
	return cap(b) - cap(sub)
}

// mergeObjects returns own's members followed by those of defaults whose
// keys own lacks.
func mergeObjects(own, defaults []byte) []byte {
	keys := map[string]bool{}
	_, _ = scanObject(own, 0, 1, func(key, _ []byte) { keys[string(key)] = true })
	out := make([]byte, 0, len(own)+len(defaults))
	out = append(out, own[:len(trimSpace(own))-1]...) // own without its closing brace
	first := isEmptyObject(own)
	_, _ = scanObject(defaults, 0, 1, func(key, val []byte) {
		if keys[string(key)] {
			return
		}
		if !first {
			out = append(out, ',')
		}
		first = false
		out = append(out, key...)
		out = append(out, ':')
		out = append(out, val...)
	})
	return append(out, '}')
}

// sameKey reports whether two raw JSON keys decode to the same string.
func sameKey(a, b []byte) bool {
	if bytes.IndexByte(b, '\\') < 0 && bytes.IndexByte(a, '\\') < 0 {
		return bytes.Equal(a, b)
	}
	sa, oka := jsonString(a)
	sb, okb := jsonString(b)
	return oka && okb && sa == sb
}

// isEmptyObject reports whether the object b has no members.
func isEmptyObject(b []byte) bool {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return false
	}
	i = skipSpace(b, i+1)
	return i < len(b) && b[i] == '}'
}

// defaultMembers are the members of a defaults object, split once per
// request.
type defaultMembers struct {
	raw        []byte
	keys, vals [][]byte
}

// newDefaultMembers splits the JSON object raw; nil for nil.
func newDefaultMembers(raw []byte) *defaultMembers {
	if raw == nil {
		return nil
	}
	d := &defaultMembers{raw: raw}
	_, _ = scanObject(raw, 0, 1, func(key, val []byte) {
		d.keys = append(d.keys, key)
		d.vals = append(d.vals, val)
	})
	return d
}

// addDefaults adds to obj's member name (an object, null or absent) the
// members of d it lacks, for a caller that has scanned obj already: cur is
// obj's member as found (nil when absent); escapes is false when obj is
// known to hold no backslash. When nothing is missing, obj itself is
// returned, not a copy.
func addDefaults(a *arena, obj, cur []byte, name string, d *defaultMembers, escapes bool) []byte {
	e, ok := planDefaults(obj, cur, name, d, escapes)
	if !ok { // null
		return mergeMember(a, obj, name, d.raw)
	}
	if e.n == 0 {
		return obj
	}
	return a.keep(e.appendTo(a.take(e.n)))
}

// appendWithDefaults appends to dst, as [appendBytes] would, the bytes
// addDefaults returns for obj, without building them elsewhere first:
// the entry of an event takes its context defaults on the way into the
// log chunk. a is for the rare case that needs a copy anyway.
func appendWithDefaults(dst []byte, a *arena, obj, cur []byte, name string, d *defaultMembers, escapes bool) []byte {
	e, ok := planDefaults(obj, cur, name, d, escapes)
	switch {
	case !ok:
		return appendBytes(dst, mergeMember(a, obj, name, d.raw))
	case e.n == 0:
		return appendBytes(dst, obj)
	}
	dst = binary.AppendUvarint(dst, uint64(e.n))
	return e.appendTo(dst)
}

// A defaultsEdit is how addDefaults changes an object: the length of the
// result (0 for no change) and what goes where.
type defaultsEdit struct {
	obj, cur []byte
	name     string
	d        *defaultMembers
	present  uint64 // the members of d that cur has already, by index
	n        int
}

// planDefaults works out addDefaults's edit; ok is false for a member
// that is null, which takes [mergeMember].
func planDefaults(obj, cur []byte, name string, d *defaultMembers, escapes bool) (defaultsEdit, bool) {
	e := defaultsEdit{obj: obj, cur: cur, name: name, d: d}
	if cur == nil {
		// Insert the member first: {"name":defaults, …rest}.
		e.n = 1 + len(name) + 3 + len(d.raw) + len(obj) - (skipSpace(obj, 0) + 1)
		if !isEmptyObject(obj) {
			e.n++
		}
		return e, true
	}
	if isAbsent(cur) { // null
		return e, false
	}
	if cur[0] != '{' || len(d.keys) > 64 {
		return e, true
	}
	// A key whose quoted form occurs nowhere in the context is missing
	// from it: most contexts hold none of the defaults, and a search of
	// the bytes spares them a walk of the whole object. A key written
	// with escapes ("\u0069p") is compared decoded.
	escaped := escapes && bytes.IndexByte(cur, '\\') >= 0
	for _, k := range d.keys {
		if escaped || bytes.Contains(cur, k) {
			_, _ = scanObject(cur, 0, 1, func(key, _ []byte) {
				for i, k := range d.keys {
					if bytes.Equal(k, key) || (escaped && sameKey(k, key)) {
						e.present |= 1 << i
					}
				}
			})
			break
		}
	}
	if e.present == 1<<len(d.keys)-1 {
		return e, true
	}
	e.n = len(obj) - len(cur) + len(trimSpace(cur)) // the braces stay
	first := isEmptyObject(cur)
	for i, k := range d.keys {
		if e.present&(1<<i) != 0 {
			continue
		}
		if !first {
			e.n++
		}
		first = false
		e.n += len(k) + 1 + len(d.vals[i])
	}
	return e, true
}

// appendTo appends the edited object, e.n bytes, to out.
func (e *defaultsEdit) appendTo(out []byte) []byte {
	obj, cur, d := e.obj, e.cur, e.d
	if cur == nil {
		out = append(out, '{', '"')
		out = append(out, e.name...)
		out = append(out, '"', ':')
		out = append(out, d.raw...)
		if !isEmptyObject(obj) {
			out = append(out, ',')
		}
		return append(out, obj[skipSpace(obj, 0)+1:]...)
	}
	start := offset(obj, cur)
	inner := trimSpace(cur)
	inner = inner[:len(inner)-1] // without its closing brace
	first := isEmptyObject(cur)
	out = append(out, obj[:start]...)
	out = append(out, inner...)
	for i, k := range d.keys {
		if e.present&(1<<i) != 0 {
			continue
		}
		if !first {
			out = append(out, ',')
		}
		first = false
		out = append(out, k...)
		out = append(out, ':')
		out = append(out, d.vals[i]...)
	}
	out = append(out, '}')
	return append(out, obj[start+len(cur):]...)
}
