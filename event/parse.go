package event

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"sync"
	"time"
	"unsafe"

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
// Every event of the request is in exactly one of Events (or, from
// [EncodeBatch], the entries counted by Encoded) and Problems.
type Request struct {
	WriteKey string
	Events   []Event
	Problems []Problem
	// Encoded counts the valid events [EncodeBatch] encoded as log
	// entries instead of listing them in Events.
	Encoded int
}

// Count is the number of events the request carried.
func (r *Request) Count() int { return len(r.Events) + r.Encoded + len(r.Problems) }

// Valid is the number of valid events, listed or encoded.
func (r *Request) Valid() int { return len(r.Events) + r.Encoded }

// rawField is a top-level field's value as it appears in the body; nil
// when the field is absent.
type rawField = []byte

// wireEvent holds the top-level fields of one event that tandem lifts out or
// checks; everything else stays in the raw bytes untouched. Keys match
// exactly, as in the Segment spec.
type wireEvent [numWireFields]rawField

// wireField numbers the fields of a [wireEvent].
type wireField uint8

const (
	fType wireField = iota
	fUserID
	fAnonymousID
	fEvent
	fName
	fMessageID
	fTimestamp
	fOriginalTimestamp
	fSentAt
	fGroupID
	fPreviousID
	fWriteKey
	fProperties
	fTraits
	fContext
	fIntegrations
	numWireFields
)

// wireFieldOf is the field a raw key (quotes included) names.
func wireFieldOf(key []byte) (wireField, bool) {
	switch string(key) {
	case `"type"`:
		return fType, true
	case `"userId"`:
		return fUserID, true
	case `"anonymousId"`:
		return fAnonymousID, true
	case `"event"`:
		return fEvent, true
	case `"name"`:
		return fName, true
	case `"messageId"`:
		return fMessageID, true
	case `"timestamp"`:
		return fTimestamp, true
	case `"originalTimestamp"`:
		return fOriginalTimestamp, true
	case `"sentAt"`:
		return fSentAt, true
	case `"groupId"`:
		return fGroupID, true
	case `"previousId"`:
		return fPreviousID, true
	case `"writeKey"`:
		return fWriteKey, true
	case `"properties"`:
		return fProperties, true
	case `"traits"`:
		return fTraits, true
	case `"context"`:
		return fContext, true
	case `"integrations"`:
		return fIntegrations, true
	}
	return 0, false
}

func (w *wireEvent) set(key, val []byte) {
	if f, ok := wireFieldOf(key); ok {
		w[f] = val
	}
}

// span is a part of a body as offset and length: the batch keeps its
// events' fields so, free of pointers, for the garbage collector to skip.
type span struct{ off, n uint32 }

func spanOf(b, sub []byte) span { return span{uint32(offset(b, sub)), uint32(len(sub))} }

// in is the span's bytes in b; nil for an empty span (an absent field).
// Its capacity runs to the end of b, as a scanned subslice's does, which
// [offset] relies on.
func (s span) in(b []byte) []byte {
	if s.n == 0 {
		return nil
	}
	return b[s.off : s.off+s.n]
}

// wireSpans is a [wireEvent] as spans of the body.
type wireSpans [numWireFields]span

// resolve returns the wire event whose fields the spans mark in b.
func (ws *wireSpans) resolve(b []byte) wireEvent {
	var w wireEvent
	for f, sp := range ws {
		w[f] = sp.in(b)
	}
	return w
}

// ParseBatch parses a /v1/batch (or /v1/import) body received at receivedAt.
func ParseBatch(body []byte, receivedAt time.Time) (*Request, error) {
	return ParseBatchContext(body, receivedAt, nil, "")
}

// ParseBatchContext is [ParseBatch] with server-side context defaults: the
// members of the JSON object ctxDefaults (nil for none; e.g.
// {"ip":…,"userAgent":…}) are added to each valid event's context where
// neither the event's own context nor the batch's has them.
//
// ipPolicy, when not empty, is the IP policy ([IPTruncate], [IPDrop],
// [IPKeep]) of the source, known before the body was read: each valid
// event comes out as [MinimiseEvent] leaves it. Most need no edit, and
// the parse tells them from what it scanned (their own context has no
// address to change, nor have the batch's context and the defaults) with
// no search of the whole event. Empty leaves the events' addresses as
// sent, for the caller to minimise once it knows the source.
func ParseBatchContext(body []byte, receivedAt time.Time, ctxDefaults []byte, ipPolicy string) (*Request, error) {
	return parseBatch(body, receivedAt, ctxDefaults, ipPolicy, nil)
}

// EncodeBatch is [ParseBatchContext] for a source known before the body is
// read, for the event log: instead of listing the valid events in
// Request.Events it appends their log entries (as [AppendEntries] encodes
// them, with sourceID) to dst as it validates them, and counts them in
// Request.Encoded; no event outlives its entry, so the events rewritten
// with the defaults share one small buffer rather than one the size of
// the body. Problems are returned as by ParseBatchContext, not encoded.
// On an error, dst is returned as given.
func EncodeBatch(dst []byte, sourceID string, body []byte, receivedAt time.Time, ctxDefaults []byte, ipPolicy string) (*Request, []byte, error) {
	enc := &encoding{dst: dst, source: sourceID}
	req, err := parseBatch(body, receivedAt, ctxDefaults, ipPolicy, enc)
	if err != nil {
		return nil, dst, err
	}
	return req, enc.dst, nil
}

// encoding is where [EncodeBatch] puts the entries of a batch's events.
type encoding struct {
	dst     []byte
	source  string
	sourced bool // the source entry is in dst
}

// start appends the kind of an event's compact entry to dst, after the
// source entry for the first.
func (enc *encoding) start(dst []byte) []byte {
	if !enc.sourced {
		dst = appendSource(dst, enc.source)
		enc.sourced = true
	}
	return append(dst, kindCompact)
}

func parseBatch(body []byte, receivedAt time.Time, ctxDefaults []byte, ipPolicy string, enc *encoding) (*Request, error) {
	i := skipSpace(body, 0)
	if i >= len(body) || body[i] != '{' {
		return nil, &RequestError{Status: 400, Code: "invalid_body", Message: "body is not a JSON object"}
	}
	// One pass checks the whole body and lifts each event's top-level
	// fields out as it goes: the events are not scanned again.
	var top batchFields
	if enc != nil {
		// The items (offsets, no pointers) are used up before
		// parseBatch returns, whatever it returns.
		ip := itemPool.Get().(*[]batchItem)
		top.events = (*ip)[:0]
		defer func() {
			*ip = top.events[:0]
			itemPool.Put(ip)
		}()
	}
	end, err := top.scan(body, i)
	if err != nil || skipSpace(body, end) != len(body) {
		return nil, &RequestError{Status: 400, Code: "invalid_json", Message: "body is not valid JSON"}
	}
	batch, bctx, bintegrations, items := top.batch, top.context, top.integrations, top.events
	wk, ok := jsonString(top.writeKey)
	if !ok {
		return nil, &RequestError{Status: 400, Code: "invalid_field", Field: "writeKey", Message: "must be a string"}
	}
	if isAbsent(batch) {
		return nil, &RequestError{Status: 400, Code: "missing_field", Field: "batch", Message: "batch is required"}
	}
	if batch[0] != '[' {
		return nil, &RequestError{Status: 400, Code: "invalid_field", Field: "batch", Message: "must be an array of events"}
	}
	if top.count > MaxBatchEvents {
		return nil, &RequestError{Status: 413, Code: "too_many_events", Field: "batch",
			Message: fmt.Sprintf("%d events in one request, at most %d allowed", top.count, MaxBatchEvents)}
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
	// What every event gets besides its own context: when it carries an
	// address to change, every event takes the whole edit.
	minimiseAll := ipPolicy != "" && ipPolicy != IPKeep &&
		((bctx != nil && !minimal(bctx, ipPolicy)) || (bctx == nil && ctxDefaults != nil && !minimal(ctxDefaults, ipPolicy)))
	var batchSentAt time.Time
	if !isAbsent(top.sentAt) {
		t, ok := parseTime(top.sentAt)
		if !ok {
			return nil, &RequestError{Status: 400, Code: "invalid_field", Field: "sentAt", Message: "not an RFC 3339 time string"}
		}
		batchSentAt = t
	}
	req := &Request{WriteKey: wk}
	var out *arena
	if enc == nil {
		req.Events = make([]Event, 0, len(items))
		out = newArena(len(body) + len(items)*(len(ctxDefaults)+len(bctx)+len(bintegrations)+32))
	} else {
		// Each event is encoded before the next is rewritten, and none
		// of the arena's bytes outlives its entry (a problem keeps the
		// body's own bytes): the arena goes back to the pool.
		out = arenaPool.Get().(*arena)
		defer func() {
			if cap(out.buf) <= maxPooledArena {
				out.buf = out.buf[:0]
				arenaPool.Put(out)
			}
		}()
	}
	pc := &parseContext{
		batchSentAt: batchSentAt, receivedAt: receivedAt, ids: newIDSource(len(items)),
		ctxDefaults: evDefaults, index: -1,
		// Valid UTF-8 as a whole means valid in every event: the common
		// case checks once.
		utf8Checked: utf8.Valid(body),
		// Likewise a body without a backslash has no string to unescape:
		// one search of it instead of one of each field.
		noEscapes: bytes.IndexByte(body, '\\') < 0,
		out:       out,
		src:       body, srcStr: bodyString(body, enc != nil),
		// An encoded event whose only edit is the defaults takes them
		// on its way into its entry.
		deferDefaults: enc != nil && evDefaults != nil,
	}
	// One Event and one field table for all the items: filled in place
	// rather than returned (and zeroed) per event.
	var ev Event
	var w wireEvent
	for i := range items {
		it := &items[i]
		pc.index = i
		raw := it.raw.in(body)
		p := pc.precheck(raw)
		if p == nil {
			w = it.fields.resolve(body)
			p = pc.fill(&ev, raw, &w)
		}
		if p != nil {
			p.Index = i
			req.Problems = append(req.Problems, *p)
			continue
		}
		// A batch's context and integrations apply to each of its events;
		// the event's own keys win.
		if bctx != nil {
			ev.Raw = mergeMember(pc.out, ev.Raw, "context", bctx)
		}
		// The event's own context is the only one it has (no second
		// "context" member, none in another case or with escapes): when
		// that needs no edit either, the event needs none.
		own := w[fContext]
		minimise := ipPolicy != "" && ipPolicy != IPKeep &&
			(minimiseAll || it.otherContext || (!isAbsent(own) && !pc.minimal(own, ipPolicy)))
		deferred := pc.deferDefaults
		if deferred && (bintegrations != nil || minimise) {
			// Edits follow: the defaults go in first, as in pc.event.
			ev.Raw = addDefaults(pc.out, ev.Raw, own, "context", pc.ctxDefaults, !pc.noEscapes)
			deferred = false
		}
		if bintegrations != nil {
			ev.Raw = mergeMember(pc.out, ev.Raw, "integrations", bintegrations)
		}
		if minimise {
			ev.Raw = MinimiseEvent(ev.Raw, ipPolicy)
		}
		if enc != nil {
			if deferred {
				// Straight into the entry, not rewritten first.
				enc.dst = enc.start(enc.dst)
				at := len(enc.dst)
				enc.dst = appendWithDefaults(enc.dst, pc.out, ev.Raw, own, "context", pc.ctxDefaults, !pc.noEscapes)
				enc.dst = appendEventTail(enc.dst, rawAt(enc.dst, at), &ev)
			} else {
				enc.dst = enc.start(enc.dst)
				at := len(enc.dst)
				enc.dst = appendBytes(enc.dst, ev.Raw)
				enc.dst = appendEventTail(enc.dst, rawAt(enc.dst, at), &ev)
			}
			req.Encoded++
			out.buf = out.buf[:0]
			continue
		}
		req.Events = append(req.Events, ev)
	}
	return req, nil
}

// bodyString is body as a string for [parseContext.srcStr]: a copy, or
// with shared the body's own bytes. EncodeBatch shares them: each event is
// encoded before the next is read and none of its strings outlives its
// entry (a problem keeps bytes of the body, as always, but none of these
// strings), and the body is not changed while the parse runs (an edit
// builds new bytes).
func bodyString(body []byte, shared bool) string {
	if shared && len(body) > 0 {
		return unsafe.String(unsafe.SliceData(body), len(body))
	}
	return string(body)
}

// itemPool keeps [EncodeBatch]'s item lists between requests.
var itemPool = sync.Pool{New: func() any { return new([]batchItem) }}

// arenaPool keeps [EncodeBatch]'s arenas, where the events rewritten with
// the defaults are built one at a time, between requests; an arena grown
// past maxPooledArena by an unusually large event is left to the
// collector.
var arenaPool = sync.Pool{New: func() any { return newArena(4096) }}

const maxPooledArena = 64 << 10

// batchFields are the top-level members of a batch body that tandem reads.
type batchFields struct {
	batch, writeKey, sentAt, context, integrations rawField
	events                                         []batchItem // at most MaxBatchEvents+1
	count                                          int         // elements of the batch array
}

// batchItem is one element of the batch array: its bytes and, when it is
// an object, its top-level fields.
type batchItem struct {
	raw    span
	fields wireSpans
	// otherContext: the object has a member a JSON decoder reads as its
	// context besides the last "context" (a repeated one, or one in
	// another case or with escapes), which [EditContext] edits too.
	otherContext bool
}

// scan checks the object at b[i] (a batch body) and returns the index just
// past it. The elements of its "batch" array are scanned once, their
// fields lifted out on the way; a later "batch" member replaces an earlier
// one, as the last of duplicate keys wins everywhere else.
func (f *batchFields) scan(b []byte, i int) (int, error) {
	const depth = 1
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
		if string(key) == `"batch"` && i < len(b) && b[i] == '[' {
			i, err = f.scanEvents(b, i, depth+1)
		} else {
			i, err = scanValue(b, i, depth)
		}
		if err != nil {
			return 0, err
		}
		val := b[vStart:i]
		switch string(key) {
		case `"batch"`:
			f.batch = val
			if val[0] != '[' {
				f.events, f.count = f.events[:0], 0
			}
		case `"writeKey"`:
			f.writeKey = val
		case `"sentAt"`:
			f.sentAt = val
		case `"context"`:
			f.context = val
		case `"integrations"`:
			f.integrations = val
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

// scanEvents checks the array at b[i], the batch, keeping each element.
func (f *batchFields) scanEvents(b []byte, i, depth int) (int, error) {
	if depth > maxDepth {
		return 0, errSyntax
	}
	if f.events == nil {
		// Bodies are mostly events: a few hundred bytes each.
		f.events = make([]batchItem, 0, min(len(b)/256+1, MaxBatchEvents+1))
	}
	f.events, f.count = f.events[:0], 0
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == ']' {
		return i + 1, nil
	}
	for {
		start := i
		var err error
		f.count++
		if f.count > MaxBatchEvents+1 {
			// Too many: the request fails; only count the rest.
			i, err = scanValue(b, i, depth)
		} else {
			f.events = append(f.events, batchItem{})
			it := &f.events[len(f.events)-1]
			if i < len(b) && b[i] == '{' {
				i, err = scanObject(b, i, depth+1, func(key, val []byte) {
					f, ok := wireFieldOf(key)
					// "context" spelt otherwise is 9 bytes with its
					// quotes, or has an escape: none of its letters
					// folds to one outside ASCII.
					if (f == fContext && ok && it.fields[fContext].n != 0) ||
						(!ok && (len(key) == 9 || bytes.IndexByte(key, '\\') >= 0) && keyIs(key, "context")) {
						it.otherContext = true
					}
					if ok {
						it.fields[f] = spanOf(b, val)
					}
				})
			} else {
				i, err = scanValue(b, i, depth)
			}
			if err == nil {
				it.raw = span{uint32(start), uint32(i - start)}
			}
		}
		if err != nil {
			return 0, err
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

// ParseSingle parses the body of a single-event endpoint (/v1/track and its
// siblings); typ is the endpoint's event type and wins over any "type" in
// the body.
func ParseSingle(typ string, body []byte, receivedAt time.Time) (*Request, error) {
	return ParseSingleContext(typ, body, receivedAt, nil, "")
}

// ParseSingleContext is [ParseSingle] with server-side context defaults
// and the source's IP policy when known (see [ParseBatchContext]).
func ParseSingleContext(typ string, body []byte, receivedAt time.Time, ctxDefaults []byte, ipPolicy string) (*Request, error) {
	body = trimSpace(body)
	if len(body) == 0 || body[0] != '{' {
		return nil, &RequestError{Status: 400, Code: "invalid_body", Message: "body is not a JSON object"}
	}
	var w wireEvent
	if end, err := scanObject(body, 0, 1, w.set); err != nil || end != len(body) {
		return nil, &RequestError{Status: 400, Code: "invalid_json", Message: "body is not valid JSON"}
	}
	req := &Request{}
	pc := &parseContext{forcedType: typ, receivedAt: receivedAt, ids: newIDSource(1), ctxDefaults: newDefaultMembers(ctxDefaults), index: -1,
		src: body, srcStr: string(body)}
	p := pc.precheck(body)
	var ev Event
	if p == nil {
		ev, p = pc.event(body, &w)
	}
	if p != nil {
		req.Problems = append(req.Problems, *p)
	} else {
		if ipPolicy != "" {
			ev.Raw = MinimiseEvent(ev.Raw, ipPolicy)
		}
		req.Events = append(req.Events, ev)
	}
	// The write key may sit in the body even when the event is invalid.
	s, ok := jsonString(w[fWriteKey])
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
	pc := &parseContext{forcedType: typ, receivedAt: receivedAt, ids: newIDSource(1), index: -1,
		src: raw, srcStr: string(raw)}
	if defaultID != "" {
		pc.ids.fixed = defaultID
	}
	if p := pc.precheck(raw); p != nil {
		return Event{}, p
	}
	var w wireEvent
	// On its own (an imported line) raw may carry anything after the
	// object, which is refused rather than stored as part of it.
	end, err := scanObject(raw, 0, 1, w.set)
	if err != nil || len(bytes.TrimSpace(raw[end:])) != 0 {
		return pc.fail(raw, "invalid_json", "", "event is not a valid JSON object")
	}
	return pc.event(raw, &w)
}

// parseContext is what the events of one request share while they are
// validated.
type parseContext struct {
	forcedType  string // the endpoint's type; "" when each event names its own
	batchSentAt time.Time
	receivedAt  time.Time
	ids         *idSource
	ctxDefaults *defaultMembers // context members added where an event lacks them; nil for none
	index       int             // the event's position in a batch, -1 outside one
	utf8Checked bool            // the bytes are known to be valid UTF-8
	noEscapes   bool            // src has no backslash: no string needs unescaping
	// deferDefaults: event leaves ctxDefaults out, for its caller to
	// add (EncodeBatch, as it encodes the entry).
	deferDefaults bool
	out           *arena // where events that change are rewritten; nil: allocate each
	// src is the body the events' fields were scanned from and srcStr its
	// copy as a string: a field without escapes is a substring of it, so
	// the events of a request share one allocation for their strings.
	src    []byte
	srcStr string
}

// minimal is [minimal] for r, a subslice of pc.src.
func (pc *parseContext) minimal(r []byte, policy string) bool {
	if pc.noEscapes {
		return minimalClean(r, policy)
	}
	return minimal(r, policy)
}

// str decodes the JSON string field r, a subslice of pc.src; absent or
// null gives "", true.
func (pc *parseContext) str(r rawField) (string, bool) {
	if pc.srcStr == "" || isAbsent(r) || r[0] != '"' || (!pc.noEscapes && bytes.IndexByte(r[1:len(r)-1], '\\') >= 0) {
		return jsonString(r)
	}
	off := offset(pc.src, r)
	return pc.srcStr[off+1 : off+len(r)-1], true
}

// field names a field of the current event for a problem.
func (pc *parseContext) field(name string) string {
	if pc.index < 0 {
		return name
	}
	prefix := "batch[" + strconv.Itoa(pc.index) + "]"
	if name == "" {
		return prefix
	}
	return prefix + "." + name
}

func (pc *parseContext) fail(raw []byte, code, name, msg string) (Event, *Problem) {
	return Event{}, &Problem{ReceivedAt: pc.receivedAt, Code: code, Field: pc.field(name), Message: msg, Raw: raw, Type: pc.forcedType}
}

// precheck refuses an event whose bytes cannot be one: too large, not an
// object, not UTF-8.
func (pc *parseContext) precheck(raw []byte) *Problem {
	var p *Problem
	switch {
	case len(raw) > MaxEventBytes:
		_, p = pc.fail(raw, "too_large", "", fmt.Sprintf("event is %d bytes, at most %d allowed", len(raw), MaxEventBytes))
	case len(raw) == 0 || raw[0] != '{':
		_, p = pc.fail(raw, "invalid_type", "", "event must be a JSON object")
	case !pc.utf8Checked && !utf8.Valid(raw):
		_, p = pc.fail(raw, "invalid_encoding", "", "event is not valid UTF-8")
	}
	return p
}

// event validates one event whose top-level fields w were lifted out of
// raw, a JSON object that passed [parseContext.precheck]. It returns either
// a valid event or a problem, never both.
func (pc *parseContext) event(raw []byte, w *wireEvent) (Event, *Problem) {
	var ev Event
	if p := pc.fill(&ev, raw, w); p != nil {
		return Event{}, p
	}
	return ev, nil
}

// fill is [parseContext.event] into ev, which a batch reuses from one
// event to the next: an Event is some 250 bytes, copied on each return
// otherwise. On a problem ev holds no valid event.
func (pc *parseContext) fill(ev *Event, raw []byte, w *wireEvent) *Problem {
	*ev = Event{ReceivedAt: pc.receivedAt, Raw: raw}
	var ok bool
	// problem is pc.fail's problem alone.
	problem := func(code, name, msg string) *Problem {
		_, p := pc.fail(raw, code, name, msg)
		return p
	}
	// strField decodes a string field into dst.
	strField := func(r rawField, name string, dst *string) *Problem {
		s, good := pc.str(r)
		if !good {
			_, p := pc.fail(raw, "invalid_type", name, "must be a string")
			return p
		}
		*dst = s
		return nil
	}
	if pc.forcedType != "" {
		ev.Type = pc.forcedType
	} else {
		if isAbsent(w[fType]) {
			return problem("missing_field", "type", "type is required")
		}
		var typ string
		if p := strField(w[fType], "type", &typ); p != nil {
			return p
		}
		t, known := knownType(typ)
		if !known {
			return problem("unknown_type", "type", fmt.Sprintf("unknown type %q: want identify, track, page, screen, group or alias", truncate(typ, 40)))
		}
		ev.Type = t
	}
	if p := strField(w[fUserID], "userId", &ev.UserID); p != nil {
		return p
	}
	if p := strField(w[fAnonymousID], "anonymousId", &ev.AnonymousID); p != nil {
		return p
	}
	if p := strField(w[fMessageID], "messageId", &ev.MessageID); p != nil {
		return p
	}
	if p := strField(w[fGroupID], "groupId", &ev.GroupID); p != nil {
		return p
	}
	if p := strField(w[fPreviousID], "previousId", &ev.PreviousID); p != nil {
		return p
	}
	var writeKey string
	if p := strField(w[fWriteKey], "writeKey", &writeKey); p != nil {
		return p
	}
	switch ev.Type {
	case "track":
		if p := strField(w[fEvent], "event", &ev.Name); p != nil {
			return p
		}
		if ev.Name == "" {
			return problem("missing_field", "event", "track needs a non-empty event name")
		}
	case "page", "screen":
		if p := strField(w[fName], "name", &ev.Name); p != nil {
			return p
		}
	case "group":
		if ev.GroupID == "" {
			return problem("missing_field", "groupId", "group needs a groupId")
		}
	case "alias":
		if ev.PreviousID == "" {
			return problem("missing_field", "previousId", "alias needs a previousId")
		}
	}
	if ev.UserID == "" && ev.AnonymousID == "" {
		return problem("missing_field", "userId", "userId or anonymousId is required")
	}
	// The object and time fields' kinds, in this order (the first wrong
	// one is the problem), without a table built per event.
	if notKind(w[fProperties], '{') {
		return problem("invalid_type", "properties", "must be a JSON object")
	}
	if notKind(w[fTraits], '{') {
		return problem("invalid_type", "traits", "must be a JSON object")
	}
	if notKind(w[fContext], '{') {
		return problem("invalid_type", "context", "must be a JSON object")
	}
	if notKind(w[fIntegrations], '{') {
		return problem("invalid_type", "integrations", "must be a JSON object")
	}
	if len(ev.MessageID) > 256 {
		return problem("invalid_field", "messageId", "longer than 256 characters")
	}
	var ts, ots time.Time
	if notKind(w[fTimestamp], '"') {
		return problem("invalid_type", "timestamp", "must be an RFC 3339 time string")
	}
	if notKind(w[fOriginalTimestamp], '"') {
		return problem("invalid_type", "originalTimestamp", "must be an RFC 3339 time string")
	}
	if notKind(w[fSentAt], '"') {
		return problem("invalid_type", "sentAt", "must be an RFC 3339 time string")
	}
	if !isAbsent(w[fTimestamp]) {
		if ts, ok = pc.time(w[fTimestamp]); !ok {
			return problem("invalid_timestamp", "timestamp", "not an RFC 3339 time string")
		}
	}
	if !isAbsent(w[fOriginalTimestamp]) {
		if ots, ok = pc.time(w[fOriginalTimestamp]); !ok {
			return problem("invalid_timestamp", "originalTimestamp", "not an RFC 3339 time string")
		}
	}
	if !isAbsent(w[fSentAt]) {
		if ev.SentAt, ok = pc.time(w[fSentAt]); !ok {
			return problem("invalid_timestamp", "sentAt", "not an RFC 3339 time string")
		}
	} else {
		ev.SentAt = pc.batchSentAt
	}
	// The client's clock reading of when the event happened.
	client := ts
	if client.IsZero() {
		client = ots
	}
	ev.OriginalTimestamp = client
	switch {
	case client.IsZero():
		ev.Timestamp = pc.receivedAt
	case !ev.SentAt.IsZero():
		// The client's clock may be off; sentAt and receivedAt are the same
		// instant on two clocks, so shift the event time by their difference.
		ev.Timestamp = skewed(pc.receivedAt, ev.SentAt, client)
	default:
		ev.Timestamp = client
	}
	if ev.MessageID == "" {
		ev.MessageID = pc.ids.next()
	}
	if pc.ctxDefaults != nil && !pc.deferDefaults {
		ev.Raw = addDefaults(pc.out, raw, w[fContext], "context", pc.ctxDefaults, !pc.noEscapes)
	}
	return nil
}

// skewed is received.Add(-sent.Sub(client)), the client's time moved by
// the skew between its clock (sent) and the server's (received), without
// Sub's overflow check (an Add and an Equal) when sent and client are
// within 2^33 seconds (some 272 years) of each other, where the
// difference cannot overflow a Duration. The times carry no monotonic
// reading (parsed, or the server's clock in UTC).
func skewed(received, sent, client time.Time) time.Time {
	ds := sent.Unix() - client.Unix()
	if ds <= -1<<33 || ds >= 1<<33 {
		return received.Add(-sent.Sub(client))
	}
	d := time.Duration(ds)*time.Second + time.Duration(sent.Nanosecond()-client.Nanosecond())
	return received.Add(-d)
}

// notKind reports whether r is present (not absent or null) and does not
// start with c: an object's '{', a string's '"'.
func notKind(r rawField, c byte) bool {
	return !isAbsent(r) && r[0] != c
}

// knownType returns t as one of [Types] (so that events share the
// string) and whether it is one.
func knownType(t string) (string, bool) {
	for _, k := range Types {
		if t == k {
			return k, true
		}
	}
	return "", false
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

// time parses the RFC 3339 time string field r, a subslice of pc.src.
func (pc *parseContext) time(r rawField) (time.Time, bool) {
	s, ok := pc.str(r)
	return parseTimeString(s, ok)
}

func parseTime(r rawField) (time.Time, bool) {
	s, ok := jsonString(r)
	return parseTimeString(s, ok)
}

func parseTimeString(s string, ok bool) (time.Time, bool) {
	if !ok || s == "" {
		return time.Time{}, false
	}
	if t, ok := parseUTC(s); ok {
		return t, true
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, false
	}
	return t.UTC(), true
}

// parseUTC reads the form SDKs send, "2006-01-02T15:04:05Z" with none
// or 1 to 9 digits of a second's fraction, as time.Parse with
// [time.RFC3339Nano] does, in a fifth of its time: every event has one or
// two. Any other form (an offset, a lower-case letter, a longer fraction)
// or a field out of range is not read; time.Parse then has the last word.
func parseUTC(s string) (time.Time, bool) {
	n := len(s)
	if n < 20 || n == 21 || n > 30 || s[n-1] != 'Z' ||
		s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' ||
		(n > 20 && s[19] != '.') {
		return time.Time{}, false
	}
	year, ok1 := decimal(s[0:4])
	month, ok2 := decimal(s[5:7])
	day, ok3 := decimal(s[8:10])
	hour, ok4 := decimal(s[11:13])
	minute, ok5 := decimal(s[14:16])
	sec, ok6 := decimal(s[17:19])
	nsec := 0
	if n > 20 {
		f, ok := decimal(s[20 : n-1])
		if !ok {
			return time.Time{}, false
		}
		nsec = f * pow10[9-(n-21)]
	}
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) || month < 1 || month > 12 || day < 1 ||
		day > daysIn(month, year) || hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, false
	}
	days := daysSinceEpoch(year, month, day)
	return time.Unix(days*86400+int64(hour*3600+minute*60+sec), int64(nsec)).UTC(), true
}

// daysSinceEpoch is the number of days from 1970-01-01 to the date in
// the proleptic Gregorian calendar (negative before it), counted in
// 400-year eras of 146,097 days with years starting in March, so that
// the leap day is a year's last.
func daysSinceEpoch(year, month, day int) int64 {
	if month <= 2 {
		year--
	}
	era := year / 400
	if year < 0 {
		era = (year - 399) / 400
	}
	yoe := year - era*400 // [0, 399]
	m := month + 9        // March is 0
	if month > 2 {
		m = month - 3
	}
	doy := (153*m+2)/5 + day - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy // [0, 146096]
	return int64(era)*146097 + int64(doe) - 719468
}

var pow10 = [...]int{1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000}

// decimal reads s, 1 to 9 ASCII digits.
func decimal(s string) (int, bool) {
	v := 0
	for i := 0; i < len(s); i++ {
		c := s[i] - '0'
		if c > 9 {
			return 0, false
		}
		v = v*10 + int(c)
	}
	return v, len(s) > 0
}

func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
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
