package event

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"

	"encoding/json"
	"unicode/utf8"
)

// RequestError is a fault of the whole request: nothing of it may be stored.
// Status is the HTTP status the collection API answers with.
type RequestError struct {
	Status  int
	Code    string
	Field   string
	Message string
}

func (e *RequestError) Error() string {
	if e.Field != "" {
		return e.Field + ": " + e.Message
	}
	return e.Message
}

// Request is a parsed collection request: the write key it carried in its
// body (if any), its valid events and the problems found in the others.
// Every event of the request is in exactly one of Events and Problems.
type Request struct {
	WriteKey string
	Events   []Event
	Problems []Problem
}

// Count is the number of events the request carried.
func (r *Request) Count() int { return len(r.Events) + len(r.Problems) }

// rawField is a top-level field's value as it appears in the body; nil
// when the field is absent.
type rawField = []byte

// wireEvent holds the top-level fields of one event that tandem lifts out or
// checks; everything else stays in the raw bytes untouched. Keys match
// exactly, as in the Segment spec.
type wireEvent struct {
	Type, UserID, AnonymousID, Event, Name, MessageID         rawField
	Timestamp, OriginalTimestamp, SentAt, GroupID, PreviousID rawField
	WriteKey, Properties, Traits, Context, Integrations       rawField
}

func (w *wireEvent) set(key, val []byte) {
	switch string(key) {
	case `"type"`:
		w.Type = val
	case `"userId"`:
		w.UserID = val
	case `"anonymousId"`:
		w.AnonymousID = val
	case `"event"`:
		w.Event = val
	case `"name"`:
		w.Name = val
	case `"messageId"`:
		w.MessageID = val
	case `"timestamp"`:
		w.Timestamp = val
	case `"originalTimestamp"`:
		w.OriginalTimestamp = val
	case `"sentAt"`:
		w.SentAt = val
	case `"groupId"`:
		w.GroupID = val
	case `"previousId"`:
		w.PreviousID = val
	case `"writeKey"`:
		w.WriteKey = val
	case `"properties"`:
		w.Properties = val
	case `"traits"`:
		w.Traits = val
	case `"context"`:
		w.Context = val
	case `"integrations"`:
		w.Integrations = val
	}
}

// ParseBatch parses a /v1/batch (or /v1/import) body received at receivedAt.
func ParseBatch(body []byte, receivedAt time.Time) (*Request, error) {
	return ParseBatchContext(body, receivedAt, nil)
}

// ParseBatchContext is [ParseBatch] with server-side context defaults: the
// members of the JSON object ctxDefaults (nil for none; e.g.
// {"ip":…,"userAgent":…}) are added to each valid event's context where
// neither the event's own context nor the batch's has them.
func ParseBatchContext(body []byte, receivedAt time.Time, ctxDefaults []byte) (*Request, error) {
	i := skipSpace(body, 0)
	if i >= len(body) || body[i] != '{' {
		return nil, &RequestError{Status: 400, Code: "invalid_body", Message: "body is not a JSON object"}
	}
	var batch, writeKey, sentAt, bctx, bintegrations rawField
	var items [][]byte
	var batchErr bool
	end, err := scanObject(body, i, 1, func(key, val []byte) {
		switch string(key) {
		case `"batch"`:
			batch = val
			items = items[:0]
			batchErr = false
			if val[0] == '[' {
				if _, err := scanArray(val, 0, 2, func(v []byte) { items = append(items, v) }); err != nil {
					batchErr = true
				}
			}
		case `"writeKey"`:
			writeKey = val
		case `"sentAt"`:
			sentAt = val
		case `"context"`:
			bctx = val
		case `"integrations"`:
			bintegrations = val
		}
	})
	if err != nil || batchErr || skipSpace(body, end) != len(body) {
		return nil, &RequestError{Status: 400, Code: "invalid_json", Message: "body is not valid JSON"}
	}
	wk, ok := jsonString(writeKey)
	if !ok {
		return nil, &RequestError{Status: 400, Code: "invalid_field", Field: "writeKey", Message: "must be a string"}
	}
	if isAbsent(batch) {
		return nil, &RequestError{Status: 400, Code: "missing_field", Field: "batch", Message: "batch is required"}
	}
	if batch[0] != '[' {
		return nil, &RequestError{Status: 400, Code: "invalid_field", Field: "batch", Message: "must be an array of events"}
	}
	if len(items) > MaxBatchEvents {
		return nil, &RequestError{Status: 413, Code: "too_many_events", Field: "batch",
			Message: fmt.Sprintf("%d events in one request, at most %d allowed", len(items), MaxBatchEvents)}
	}
	for _, f := range []struct {
		name string
		val  rawField
	}{{"context", bctx}, {"integrations", bintegrations}} {
		if !isAbsent(f.val) && f.val[0] != '{' {
			return nil, &RequestError{Status: 400, Code: "invalid_field", Field: f.name, Message: "must be a JSON object"}
		}
	}
	if isAbsent(bctx) || isEmptyObject(bctx) {
		bctx = nil
	}
	if isAbsent(bintegrations) || isEmptyObject(bintegrations) {
		bintegrations = nil
	}
	// The server's defaults rank below the batch's context, which ranks
	// below the event's: folded into the batch context, they cost nothing
	// more per event; without one, each event takes them directly.
	var evDefaults *defaultMembers
	if bctx != nil && ctxDefaults != nil {
		bctx = mergeObjects(bctx, ctxDefaults)
	} else {
		evDefaults = newDefaultMembers(ctxDefaults)
	}
	var batchSentAt time.Time
	if !isAbsent(sentAt) {
		t, ok := parseTime(sentAt)
		if !ok {
			return nil, &RequestError{Status: 400, Code: "invalid_field", Field: "sentAt", Message: "not an RFC 3339 time string"}
		}
		batchSentAt = t
	}
	req := &Request{WriteKey: wk, Events: make([]Event, 0, len(items))}
	ids := newIDSource(len(items))
	for i, raw := range items {
		prefix := "batch[" + strconv.Itoa(i) + "]"
		ev, p := parseEvent(raw, "", prefix, batchSentAt, receivedAt, ids, evDefaults)
		if p != nil {
			p.Index = i
			req.Problems = append(req.Problems, *p)
			continue
		}
		// A batch's context and integrations apply to each of its events;
		// the event's own keys win.
		if bctx != nil {
			ev.Raw = mergeMember(ev.Raw, "context", bctx)
		}
		if bintegrations != nil {
			ev.Raw = mergeMember(ev.Raw, "integrations", bintegrations)
		}
		req.Events = append(req.Events, ev)
	}
	return req, nil
}

// ParseSingle parses the body of a single-event endpoint (/v1/track and its
// siblings); typ is the endpoint's event type and wins over any "type" in
// the body.
func ParseSingle(typ string, body []byte, receivedAt time.Time) (*Request, error) {
	return ParseSingleContext(typ, body, receivedAt, nil)
}

// ParseSingleContext is [ParseSingle] with server-side context defaults
// (see [ParseBatchContext]).
func ParseSingleContext(typ string, body []byte, receivedAt time.Time, ctxDefaults []byte) (*Request, error) {
	body = trimSpace(body)
	if len(body) == 0 || body[0] != '{' {
		return nil, &RequestError{Status: 400, Code: "invalid_body", Message: "body is not a JSON object"}
	}
	if !validDocument(body) {
		return nil, &RequestError{Status: 400, Code: "invalid_json", Message: "body is not valid JSON"}
	}
	req := &Request{}
	ev, p := parseEvent(body, typ, "", time.Time{}, receivedAt, newIDSource(1), newDefaultMembers(ctxDefaults))
	if p != nil {
		req.Problems = append(req.Problems, *p)
	} else {
		req.Events = append(req.Events, ev)
	}
	// The write key may sit in the body even when the event is invalid.
	var wk rawField
	_, _ = scanObject(body, 0, 1, func(key, val []byte) {
		if string(key) == `"writeKey"` {
			wk = val
		}
	})
	s, ok := jsonString(wk)
	if !ok {
		return nil, &RequestError{Status: 400, Code: "invalid_field", Field: "writeKey", Message: "must be a string"}
	}
	req.WriteKey = s
	return req, nil
}

func trimSpace(b []byte) []byte {
	i := skipSpace(b, 0)
	j := len(b)
	for j > i && isSpace(b[j-1]) {
		j--
	}
	return b[i:j]
}

// ParseEvent validates one standalone event object, as received at
// receivedAt; its type is typ if not empty (as for a single-event
// endpoint), else its own "type" field. When the event has no messageId,
// defaultID is used, or a random one if defaultID is empty: a replay passes
// a stable id so that replaying twice stores one event.
func ParseEvent(typ string, raw []byte, receivedAt time.Time, defaultID string) (Event, *Problem) {
	ids := newIDSource(1)
	if defaultID != "" {
		ids.fixed = defaultID
	}
	return parseEvent(raw, typ, "", time.Time{}, receivedAt, ids, nil)
}

// parseEvent validates one event. forcedType, when set, is the endpoint's
// type. ctxDefaults, when not nil, are context members added to a valid
// event that lacks them. It returns either a valid event or a problem,
// never both.
func parseEvent(raw []byte, forcedType, prefix string, batchSentAt, receivedAt time.Time, ids *idSource, ctxDefaults *defaultMembers) (Event, *Problem) {
	field := func(name string) string {
		if prefix == "" {
			return name
		}
		if name == "" {
			return prefix
		}
		return prefix + "." + name
	}
	fail := func(code, name, msg string) (Event, *Problem) {
		return Event{}, &Problem{ReceivedAt: receivedAt, Code: code, Field: field(name), Message: msg, Raw: raw, Type: forcedType}
	}
	if len(raw) > MaxEventBytes {
		return fail("too_large", "", fmt.Sprintf("event is %d bytes, at most %d allowed", len(raw), MaxEventBytes))
	}
	if len(raw) == 0 || raw[0] != '{' {
		return fail("invalid_type", "", "event must be a JSON object")
	}
	if !utf8.Valid(raw) {
		return fail("invalid_encoding", "", "event is not valid UTF-8")
	}
	var w wireEvent
	// Within a request, raw is exactly one member of a validated body; on
	// its own (ParseEvent: an imported line) it may carry anything after
	// the object, which is refused rather than stored as part of it.
	end, err := scanObject(raw, 0, 1, w.set)
	if err != nil || len(bytes.TrimSpace(raw[end:])) != 0 {
		return fail("invalid_json", "", "event is not a valid JSON object")
	}
	ev := Event{ReceivedAt: receivedAt, Raw: raw}
	var ok bool
	strField := func(r json.RawMessage, name string, dst *string) *Problem {
		s, good := jsonString(r)
		if !good {
			_, p := fail("invalid_type", name, "must be a string")
			return p
		}
		*dst = s
		return nil
	}
	if forcedType != "" {
		ev.Type = forcedType
	} else {
		if isAbsent(w.Type) {
			return fail("missing_field", "type", "type is required")
		}
		if p := strField(w.Type, "type", &ev.Type); p != nil {
			return Event{}, p
		}
		if !knownType(ev.Type) {
			return fail("unknown_type", "type", fmt.Sprintf("unknown type %q: want identify, track, page, screen, group or alias", truncate(ev.Type, 40)))
		}
	}
	for _, f := range []struct {
		raw  rawField
		name string
		dst  *string
	}{
		{w.UserID, "userId", &ev.UserID},
		{w.AnonymousID, "anonymousId", &ev.AnonymousID},
		{w.MessageID, "messageId", &ev.MessageID},
		{w.GroupID, "groupId", &ev.GroupID},
		{w.PreviousID, "previousId", &ev.PreviousID},
		{w.WriteKey, "writeKey", new(string)},
	} {
		if p := strField(f.raw, f.name, f.dst); p != nil {
			return Event{}, p
		}
	}
	switch ev.Type {
	case "track":
		if p := strField(w.Event, "event", &ev.Name); p != nil {
			return Event{}, p
		}
		if ev.Name == "" {
			return fail("missing_field", "event", "track needs a non-empty event name")
		}
	case "page", "screen":
		if p := strField(w.Name, "name", &ev.Name); p != nil {
			return Event{}, p
		}
	case "group":
		if ev.GroupID == "" {
			return fail("missing_field", "groupId", "group needs a groupId")
		}
	case "alias":
		if ev.PreviousID == "" {
			return fail("missing_field", "previousId", "alias needs a previousId")
		}
	}
	if ev.UserID == "" && ev.AnonymousID == "" {
		return fail("missing_field", "userId", "userId or anonymousId is required")
	}
	for _, f := range []struct {
		raw  rawField
		name string
	}{{w.Properties, "properties"}, {w.Traits, "traits"}, {w.Context, "context"}, {w.Integrations, "integrations"}} {
		if !isAbsent(f.raw) && f.raw[0] != '{' {
			return fail("invalid_type", f.name, "must be a JSON object")
		}
	}
	if len(ev.MessageID) > 256 {
		return fail("invalid_field", "messageId", "longer than 256 characters")
	}
	var ts, ots time.Time
	for _, f := range []struct {
		raw  rawField
		name string
	}{{w.Timestamp, "timestamp"}, {w.OriginalTimestamp, "originalTimestamp"}, {w.SentAt, "sentAt"}} {
		if !isAbsent(f.raw) && f.raw[0] != '"' {
			return fail("invalid_type", f.name, "must be an RFC 3339 time string")
		}
	}
	if !isAbsent(w.Timestamp) {
		if ts, ok = parseTime(w.Timestamp); !ok {
			return fail("invalid_timestamp", "timestamp", "not an RFC 3339 time string")
		}
	}
	if !isAbsent(w.OriginalTimestamp) {
		if ots, ok = parseTime(w.OriginalTimestamp); !ok {
			return fail("invalid_timestamp", "originalTimestamp", "not an RFC 3339 time string")
		}
	}
	if !isAbsent(w.SentAt) {
		if ev.SentAt, ok = parseTime(w.SentAt); !ok {
			return fail("invalid_timestamp", "sentAt", "not an RFC 3339 time string")
		}
	} else {
		ev.SentAt = batchSentAt
	}
	// The client's clock reading of when the event happened.
	client := ts
	if client.IsZero() {
		client = ots
	}
	ev.OriginalTimestamp = client
	switch {
	case client.IsZero():
		ev.Timestamp = receivedAt
	case !ev.SentAt.IsZero():
		// The client's clock may be off; sentAt and receivedAt are the same
		// instant on two clocks, so shift the event time by their difference.
		ev.Timestamp = receivedAt.Add(-ev.SentAt.Sub(client))
	default:
		ev.Timestamp = client
	}
	if ev.MessageID == "" {
		ev.MessageID = ids.next()
	}
	if ctxDefaults != nil {
		ev.Raw = addDefaults(raw, w.Context, "context", ctxDefaults)
	}
	return ev, nil
}

func knownType(t string) bool {
	for _, k := range Types {
		if t == k {
			return true
		}
	}
	return false
}

// isAbsent reports whether a field was missing or JSON null.
func isAbsent(r rawField) bool {
	return len(r) == 0 || (len(r) == 4 && string(r) == "null")
}

// jsonString decodes a JSON string field; absent or null gives "", true.
func jsonString(r rawField) (string, bool) {
	if isAbsent(r) {
		return "", true
	}
	if r[0] != '"' {
		return "", false
	}
	// Fast path: no escapes.
	if bytes.IndexByte(r[1:len(r)-1], '\\') < 0 {
		return string(r[1 : len(r)-1]), true
	}
	var s string
	if err := json.Unmarshal(r, &s); err != nil {
		return "", false
	}
	return s, true
}

func parseTime(r rawField) (time.Time, bool) {
	s, ok := jsonString(r)
	if !ok || s == "" {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, false
	}
	return t.UTC(), true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// idSource hands out random UUIDv4 message ids, drawing the randomness for a
// whole request at once.
type idSource struct {
	buf   []byte
	fixed string // when set, the only id handed out
}

func newIDSource(n int) *idSource { return &idSource{} }

func (s *idSource) next() string {
	if s.fixed != "" {
		return s.fixed
	}
	if len(s.buf) < 16 {
		s.buf = make([]byte, 16*64)
		if _, err := rand.Read(s.buf); err != nil {
			panic("event: no randomness: " + err.Error())
		}
	}
	b := s.buf[:16]
	s.buf = s.buf[16:]
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var out [36]byte
	hex.Encode(out[0:8], b[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], b[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], b[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], b[8:10])
	out[23] = '-'
	hex.Encode(out[24:], b[10:16])
	return string(out[:])
}

// NewID returns a random UUIDv4 string.
func NewID() string { return newIDSource(1).next() }
