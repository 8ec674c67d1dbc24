package imports

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"tandem/event"
)

// ref is a bound value: a fixed value or a cell slot.
type ref struct {
	slot     int // -1: not from the row
	fixed    string
	hasFixed bool
	typ      string
	required bool
	name     string // output key
	col      string // column name as written in the mapping, for errors
	kind     string // identifier type, for identifiers
}

func (r ref) set() bool { return r.slot >= 0 || r.hasFixed }

// plan is a mapping bound to one file's columns; it turns rows into
// events.
type plan struct {
	sourceID, importID string
	typ                string
	name               ref
	key                []ref
	ts                 ref
	tsSpec             TimeSpec
	user               ref
	idents             []ref
	traits             []ref
	props              []ref
	channel, dept      ref
	consent            []ref
	decimal            byte
	raw                bool // NDJSON without a mapping: rows are Segment events

	buf    []byte // scratch for one event's JSON
	tbuf   []byte // scratch for its traits
	parts  []byte
	idVals []string
}

// bindCSV binds m to a CSV header. A mapped column missing from the
// header is a *MappingError naming the mapping key.
func (m *Mapping) bindCSV(header []string) (*plan, error) {
	idx := map[string]int{}
	lower := map[string]int{}
	for i, h := range header {
		if _, dup := idx[h]; !dup {
			idx[h] = i
		}
		if _, dup := lower[strings.ToLower(h)]; !dup {
			lower[strings.ToLower(h)] = i
		}
	}
	return m.bind(func(path, col string) (int, error) {
		if i, ok := idx[col]; ok {
			return i, nil
		}
		if i, ok := lower[strings.ToLower(col)]; ok {
			return i, nil
		}
		shown := strings.Join(header, ", ")
		if len(shown) > 300 {
			shown = shown[:300] + "…"
		}
		return 0, merr(path, "column %s is not in the file's header (columns: %s)", quote(col), shown)
	})
}

// bindNDJSON binds m to NDJSON fields and returns the paths to extract,
// by slot.
func (m *Mapping) bindNDJSON() (*plan, []string, error) {
	var paths []string
	slots := map[string]int{}
	p, err := m.bind(func(path, col string) (int, error) {
		if i, ok := slots[col]; ok {
			return i, nil
		}
		for _, part := range strings.Split(col, ".") {
			if part == "" {
				return 0, merr(path, "field path %s has an empty part", quote(col))
			}
		}
		slots[col] = len(paths)
		paths = append(paths, col)
		return len(paths) - 1, nil
	})
	return p, paths, err
}

func (m *Mapping) bind(resolve func(path, col string) (int, error)) (*plan, error) {
	p := &plan{typ: m.Type, tsSpec: m.Timestamp, decimal: m.CSV.Decimal}
	one := func(path string, v Value, name string) (ref, error) {
		r := ref{slot: -1, fixed: v.Fixed, hasFixed: v.HasFixed, typ: v.Type, required: v.Required, name: name, col: v.Column}
		if v.Column != "" {
			i, err := resolve(path, v.Column)
			if err != nil {
				return r, err
			}
			r.slot = i
		}
		return r, nil
	}
	var err error
	if p.name, err = one("mapping.event", m.Event, "event"); err != nil {
		return nil, err
	}
	for i, k := range m.Key {
		r, err := one(fmt.Sprintf("mapping.key[%d]", i), Value{Column: k}, k)
		if err != nil {
			return nil, err
		}
		p.key = append(p.key, r)
	}
	if p.ts, err = one("mapping.timestamp.column", Value{Column: m.Timestamp.Column}, "timestamp"); err != nil {
		return nil, err
	}
	if p.user, err = one("mapping.user_id", m.UserID, "userId"); err != nil {
		return nil, err
	}
	if p.channel, err = one("mapping.channel", m.Channel, "channel"); err != nil {
		return nil, err
	}
	if p.dept, err = one("mapping.department", m.Department, "department"); err != nil {
		return nil, err
	}
	for _, list := range []struct {
		in  []Field
		out *[]ref
	}{{m.Identifiers, &p.idents}, {m.Traits, &p.traits}, {m.Properties, &p.props}, {m.Consent, &p.consent}} {
		for _, f := range list.in {
			r, err := one(f.path, f.Value, f.Name)
			if err != nil {
				return nil, err
			}
			r.kind = f.Name
			*list.out = append(*list.out, r)
		}
	}
	return p, nil
}

// messageID is the deterministic messageId of a row: the source, the
// event's type and name, and the row's key.
func messageID(sourceID, typ, name string, key []byte) string {
	h := sha256.New()
	h.Write([]byte(sourceID))
	h.Write([]byte{0})
	h.Write([]byte(typ))
	h.Write([]byte{0})
	h.Write([]byte(name))
	h.Write([]byte{0})
	h.Write(key)
	var sum [32]byte
	return "imp-" + hex.EncodeToString(h.Sum(sum[:0])[:16])
}

// rowMessageID is the stable id of a row that failed: its source and bytes.
func rowMessageID(sourceID string, raw []byte) string {
	return messageID(sourceID, "row", "", raw)
}

// fail makes a RowError for the row.
func (p *plan) fail(r *row, col, code, format string, args ...any) *RowError {
	return &RowError{Line: r.line, Column: col, Code: code, Message: fmt.Sprintf(format, args...),
		MessageID: rowMessageID(p.sourceID, r.raw)}
}

// value returns the trimmed text of a ref for a row and whether it is
// non-empty.
func (p *plan) value(r *row, f ref) (cell, bool) {
	if f.hasFixed {
		return cell{text: f.fixed, ok: true}, f.fixed != ""
	}
	if f.slot < 0 || f.slot >= len(r.cells) {
		return cell{}, false
	}
	c := r.cells[f.slot]
	if !c.ok {
		return c, false
	}
	c.text = strings.Trim(c.text, " \t")
	return c, c.text != ""
}

// convert turns a row into an event. The event's Raw aliases a buffer of
// p, valid until the next call.
func (p *plan) convert(r *row, receivedAt time.Time) (event.Event, *RowError) {
	if r.err != nil {
		e := *r.err
		e.MessageID = rowMessageID(p.sourceID, r.raw)
		return event.Event{}, &e
	}
	if p.raw {
		return p.convertRaw(r, receivedAt)
	}
	ev := event.Event{SourceID: p.sourceID, Type: p.typ, ReceivedAt: receivedAt}

	// Event name.
	if p.typ == "track" {
		c, ok := p.value(r, p.name)
		if !ok {
			return ev, p.fail(r, p.name.col, "missing_value", "the event name is empty")
		}
		ev.Name = c.text
	}

	// Event time.
	tc, ok := p.value(r, p.ts)
	if !ok {
		return ev, p.fail(r, p.ts.col, "missing_value", "the timestamp is empty")
	}
	ts, err := p.tsSpec.parse(tc.text)
	if err != nil {
		return ev, p.fail(r, p.ts.col, "invalid_timestamp", "%s", err.Error())
	}
	ev.Timestamp, ev.OriginalTimestamp = ts, ts

	// Identity.
	if c, ok := p.value(r, p.user); ok {
		ev.UserID = c.text
	} else if p.user.required {
		return ev, p.fail(r, p.user.col, "missing_value", "the user id is empty")
	}
	var firstType, firstValue string
	idVals := p.idVals[:0]
	for range p.idents {
		idVals = append(idVals, "")
	}
	p.idVals = idVals
	for i, f := range p.idents {
		c, ok := p.value(r, f)
		if !ok {
			if f.required {
				return ev, p.fail(r, f.col, "missing_value", "the %s is empty", f.kind)
			}
			continue
		}
		v, msg := normalizeIdentifier(f.kind, c.text)
		if msg != "" {
			return ev, p.fail(r, f.col, "invalid_identifier", "%s", msg)
		}
		idVals[i] = v
		if firstType == "" {
			firstType, firstValue = f.kind, v
		}
	}
	if ev.UserID == "" && firstType == "" {
		cols := make([]string, 0, len(p.idents)+1)
		if p.user.slot >= 0 {
			cols = append(cols, p.user.col)
		}
		for _, f := range p.idents {
			cols = append(cols, f.col)
		}
		return ev, p.fail(r, strings.Join(cols, ","), "missing_identifier", "no identifier: %s all empty", strings.Join(cols, ", "))
	}
	if ev.UserID == "" {
		ev.AnonymousID = firstType + ":" + firstValue
	}

	// Row key and messageId.
	p.parts = p.parts[:0]
	if len(p.key) > 0 {
		for _, k := range p.key {
			c, ok := p.value(r, k)
			if !ok {
				return ev, p.fail(r, k.col, "missing_value", "the row key column is empty")
			}
			p.parts = append(p.parts, c.text...)
			p.parts = append(p.parts, 0x1f)
		}
	} else {
		p.parts = append(p.parts, r.raw...)
	}
	ev.MessageID = messageID(p.sourceID, ev.Type, ev.Name, p.parts)

	// The event's JSON.
	b := p.buf[:0]
	b = append(b, `{"type":`...)
	b = appendJSONString(b, ev.Type)
	if ev.Type == "track" {
		b = append(b, `,"event":`...)
		b = appendJSONString(b, ev.Name)
	}
	b = append(b, `,"messageId":`...)
	b = appendJSONString(b, ev.MessageID)
	if ev.UserID != "" {
		b = append(b, `,"userId":`...)
		b = appendJSONString(b, ev.UserID)
	} else {
		b = append(b, `,"anonymousId":`...)
		b = appendJSONString(b, ev.AnonymousID)
	}
	b = append(b, `,"timestamp":"`...)
	b = ts.AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	if c, ok := p.value(r, p.channel); ok {
		b = append(b, `,"channel":`...)
		b = appendJSONString(b, c.text)
	}
	// traits: identifiers, then mapped traits.
	tb := append(p.tbuf[:0], '{')
	n := 0
	for i, f := range p.idents {
		if idVals[i] == "" {
			continue
		}
		if n > 0 {
			tb = append(tb, ',')
		}
		tb = appendJSONString(tb, f.kind)
		tb = append(tb, ':')
		tb = appendJSONString(tb, idVals[i])
		n++
	}
	var rerr *RowError
	if tb, _, rerr = p.appendFields(tb, r, p.traits, n); rerr != nil {
		return ev, rerr
	}
	tb = append(tb, '}')
	p.tbuf = tb
	if ev.Type == "identify" {
		b = append(b, `,"traits":`...)
		b = append(b, tb...)
	}
	if ev.Type == "track" {
		b = append(b, `,"properties":{`...)
		if b, _, rerr = p.appendFields(b, r, p.props, 0); rerr != nil {
			return ev, rerr
		}
		b = append(b, '}')
	}
	b = append(b, `,"context":{"traits":`...)
	b = append(b, tb...)
	if len(p.consent) > 0 {
		// Consent decisions; a row whose consent cells are all empty
		// decides nothing.
		mark := len(b)
		b = append(b, `,"consent":{"categoryPreferences":{`...)
		var n int
		if b, n, rerr = p.appendFields(b, r, p.consent, 0); rerr != nil {
			return ev, rerr
		}
		if n == 0 {
			b = b[:mark]
		} else {
			b = append(b, "}}"...)
		}
	}
	if c, ok := p.value(r, p.dept); ok {
		b = append(b, `,"department":`...)
		b = appendJSONString(b, c.text)
	}
	b = append(b, `,"import":{"id":`...)
	b = appendJSONString(b, p.importID)
	b = append(b, `,"line":`...)
	b = strconv.AppendInt(b, int64(r.line), 10)
	b = append(b, "}}}"...)
	p.buf = b
	if len(b) > event.MaxEventBytes {
		return ev, p.fail(r, "", "too_large", "the event would be %d bytes, at most %d allowed", len(b), event.MaxEventBytes)
	}
	ev.Raw = b
	return ev, nil
}

// appendFields appends "name":value pairs of fields (after n earlier ones).
func (p *plan) appendFields(b []byte, r *row, fields []ref, n int) ([]byte, int, *RowError) {
	for _, f := range fields {
		c, ok := p.value(r, f)
		if !ok {
			if f.required {
				return b, n, p.fail(r, f.col, "missing_value", "%s is required and empty", f.name)
			}
			continue
		}
		if n > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, f.name)
		b = append(b, ':')
		var msg string
		b, msg = appendTyped(b, c, f.typ, p.decimal, f.hasFixed)
		if msg != "" {
			code := "invalid_" + f.typ
			return b, n, p.fail(r, f.col, code, "%s", msg)
		}
		n++
	}
	return b, n, nil
}

// appendTyped appends a cell as JSON of the given type. An empty type
// keeps an NDJSON value as it is and makes CSV text a string; a fixed
// value without a type is a string.
func appendTyped(b []byte, c cell, typ string, decimal byte, fixed bool) ([]byte, string) {
	switch typ {
	case "":
		if c.json != nil && !fixed {
			return append(b, c.json...), ""
		}
		return appendJSONString(b, c.text), ""
	case "string":
		return appendJSONString(b, c.text), ""
	case "integer":
		v, err := strconv.ParseInt(c.text, 10, 64)
		if err != nil {
			return b, fmt.Sprintf("%s is not an integer", quote(c.text))
		}
		return strconv.AppendInt(b, v, 10), ""
	case "number":
		s := c.text
		if decimal == ',' && c.json == nil {
			s = strings.ReplaceAll(s, ".", "")
			s = strings.Replace(s, ",", ".", 1)
		}
		v, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsInf(v, 0) || math.IsNaN(v) {
			return b, fmt.Sprintf("%s is not a number", quote(c.text))
		}
		return appendNumber(b, v), ""
	case "boolean":
		switch strings.ToLower(c.text) {
		case "true", "yes", "y", "1", "t":
			return append(b, "true"...), ""
		case "false", "no", "n", "0", "f":
			return append(b, "false"...), ""
		}
		return b, fmt.Sprintf("%s is not a boolean (true/false, yes/no, 1/0)", quote(c.text))
	}
	return appendJSONString(b, c.text), ""
}

func appendNumber(b []byte, v float64) []byte {
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		return strconv.AppendInt(b, int64(v), 10)
	}
	if a := math.Abs(v); a >= 1e-6 && a < 1e21 {
		return strconv.AppendFloat(b, v, 'f', -1, 64)
	}
	return strconv.AppendFloat(b, v, 'e', -1, 64)
}

// normalizeIdentifier puts an identifier in the form identity matches on:
// e-mail addresses lower-case, phone numbers without punctuation. msg is
// set when the value cannot be such an identifier.
func normalizeIdentifier(kind, v string) (string, string) {
	switch kind {
	case "email":
		v = strings.ToLower(v)
		at := strings.IndexByte(v, '@')
		if at <= 0 || at == len(v)-1 || strings.ContainsAny(v, " \t,;<>") {
			return "", "not an e-mail address"
		}
		return v, ""
	case "phone":
		var b strings.Builder
		for i := 0; i < len(v); i++ {
			c := v[i]
			switch {
			case c >= '0' && c <= '9':
				b.WriteByte(c)
			case c == '+' && b.Len() == 0:
				b.WriteByte(c)
			case c == ' ' || c == '-' || c == '.' || c == '(' || c == ')' || c == '/':
			default:
				return "", "not a phone number (digits, an optional leading +, spaces, - . ( ) /)"
			}
		}
		s := b.String()
		digits := len(strings.TrimPrefix(s, "+"))
		if digits < 3 || digits > 20 {
			return "", "not a phone number (3 to 20 digits)"
		}
		return s, ""
	}
	return v, ""
}

// convertRaw takes an NDJSON line as a Segment event.
func (p *plan) convertRaw(r *row, receivedAt time.Time) (event.Event, *RowError) {
	ev, prob := event.ParseEvent("", r.raw, receivedAt, rowMessageID(p.sourceID, r.raw))
	if prob != nil {
		return ev, &RowError{Line: r.line, Column: prob.Field, Code: prob.Code, Message: prob.Message,
			MessageID: rowMessageID(p.sourceID, r.raw)}
	}
	ev.SourceID = p.sourceID
	return ev, nil
}

// parse reads a time as the spec says.
func (t *TimeSpec) parse(s string) (time.Time, error) {
	var tm time.Time
	var err error
	switch t.layout {
	case "rfc3339":
		tm, err = time.Parse(time.RFC3339Nano, s)
		if err != nil {
			for _, l := range []string{"2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05.999999999Z07:00",
				"2006-01-02 15:04:05.999999999", "2006-01-02T15:04", "2006-01-02 15:04", "2006-01-02"} {
				if tm, err = time.ParseInLocation(l, s, t.loc); err == nil {
					break
				}
			}
		}
		if err != nil {
			return tm, fmt.Errorf("%s is not an RFC 3339 time (e.g. 2024-05-01T08:15:00Z)", quote(s))
		}
	case "unix", "unix_ms":
		f, perr := strconv.ParseFloat(s, 64)
		if perr != nil || math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > 1e16 {
			return tm, fmt.Errorf("%s is not a %s time", quote(s), t.layout)
		}
		if t.layout == "unix_ms" {
			f /= 1000
		}
		sec, frac := math.Modf(f)
		tm = time.Unix(int64(sec), int64(math.Round(frac*1e9)))
	default:
		tm, err = time.ParseInLocation(t.layout, s, t.loc)
		if err != nil {
			return tm, fmt.Errorf("%s does not match the format %s", quote(s), quote(t.Format))
		}
	}
	if y := tm.Year(); y < 1900 || y > 2200 {
		return tm, fmt.Errorf("%s is out of range (years 1900 to 2200)", quote(s))
	}
	return tm.UTC(), nil
}

// appendJSONString appends s as a JSON string. s is valid UTF-8.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			const hexd = "0123456789abcdef"
			b = append(b, '\\', 'u', '0', '0', hexd[c>>4], hexd[c&0xf])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
