package duckdb

import (
	"bytes"

	"tandem/attribution"
	"tandem/event"
)

// The code of prepare and the readers it calls as it was before they were
// made cheaper (base 11fe318), kept as the oracle the new code must match
// byte for byte (TestPrepareMatchesOracle, FuzzPrepare). Not to be
// changed with the code it checks.

func oraclePrepare(events []event.Event) []*pending {
	out := make([]*pending, 0, len(events))
	all := make([]pending, len(events))
	nv := len(valueColumns)
	vals := make([]optString, len(events)*nv)
	seen := make(map[key]struct{}, len(events))
	var buf []byte
	for i := range events {
		e := &events[i]
		p := &all[i]
		*p = pending{e: e, idx: i, src: validUTF8(e.SourceID), msg: validUTF8(e.MessageID)}
		k := key{p.src, p.msg}
		if _, dup := seen[k]; dup {
			continue
		}
		seen[k] = struct{}{}
		p.hash, buf = keyHash(buf, p.src, p.msg)
		p.raw = rawString(e.Raw)
		p.vals = vals[i*nv : (i+1)*nv : (i+1)*nv]
		p.touch = oracleFactsOf(e, p.vals)
		out = append(out, p)
	}
	return out
}

func oracleFactsOf(e *event.Event, vals []optString) touchRow {
	clear(vals)
	touch := oracleMayTouch(e.Type, e.Raw)
	if !oracleMayHaveValues(e.Raw) {
		if !touch {
			return touchRow{}
		}
		return oracleTouchOf(e)
	}
	var (
		r     attribution.FieldsReader
		props []byte
	)
	if !event.Members(e.Raw, func(key, val []byte) {
		if touch {
			r.Member(key[1:len(key)-1], val)
		}
		if keyEquals(key, "properties") {
			props = val
		}
	}) {
		oracleValuesOf(vals, e.Raw)
		if !touch {
			return touchRow{}
		}
		return oracleTouchOf(e)
	}
	oraclePropValues(vals, props)
	if !touch {
		return touchRow{}
	}
	m, ok := r.Mark(e.Type, e.SourceID, e.Raw)
	return touchRowOf(&m, ok)
}

// oracleMarkFromJSON is attribution.MarkFromJSON as it was.
func oracleMarkFromJSON(typ, sourceID string, raw []byte) (attribution.Mark, bool) {
	if !oracleMayTouch(typ, raw) {
		return attribution.Mark{}, false
	}
	f := attribution.FieldsFromJSON(raw, sourceID)
	f.Type = typ
	return attribution.MarkOf(&f)
}

func oracleTouchOf(e *event.Event) touchRow {
	m, ok := oracleMarkFromJSON(e.Type, e.SourceID, e.Raw)
	return touchRowOf(&m, ok)
}

func oracleMayTouch(typ string, raw []byte) bool {
	switch typ {
	case "page":
		return true
	case "screen", "track":
		for i := 0; ; i++ {
			j := bytes.IndexByte(raw[i:], 'c')
			if j < 0 {
				return false
			}
			i += j
			for _, c := range []string{"channel", "campaign"} {
				if bytes.HasPrefix(raw[i:], []byte(c)) {
					return true
				}
			}
		}
	}
	return false
}

func oracleValuesOf(dst []optString, raw []byte) {
	clear(dst)
	if !oracleMayHaveValues(raw) {
		return
	}
	var props []byte
	if !event.Members(raw, func(key, val []byte) {
		if keyEquals(key, "properties") {
			props = val
		}
	}) {
		return
	}
	oraclePropValues(dst, props)
}

func oracleMayHaveValues(raw []byte) bool {
	return bytes.Contains(raw, []byte(`"revenue"`)) || bytes.Contains(raw, []byte(`"value"`))
}

func oraclePropValues(dst []optString, props []byte) {
	if len(props) == 0 || props[0] != '{' {
		return
	}
	event.Members(props, func(key, val []byte) {
		for i, p := range []string{"revenue", "value"} {
			if !keyEquals(key, p) {
				continue
			}
			switch {
			case len(val) == 0:
				dst[i] = optString{}
			case val[0] == '"':
				s, ok := event.String(val)
				dst[i] = optString{validUTF8(s), ok}
			case val[0] == '-' || (val[0] >= '0' && val[0] <= '9'):
				dst[i] = optString{string(val), true}
			default:
				dst[i] = optString{}
			}
		}
	})
}
