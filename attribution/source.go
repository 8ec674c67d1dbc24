package attribution

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"math"
	"math/bits"
	"strconv"
	"strings"
)

// Event is one event of a profile as a [Source] streams it: a conversion
// or a candidate touch.
type Event struct {
	T int64 // µs since the Unix epoch
	// Value is a conversion's value in hundredths ([MinorUnits] of its
	// value property's text; 0 when missing).
	Value int64
	// Mark is a candidate touch's: its index in the Journey's Marks (not
	// read for conversions).
	Mark       int32
	Conversion bool
}

// Journey is one profile's events, in any order, and the Marks its
// touches index.
type Journey struct {
	Events []Event
	// Marks are the distinct Marks the scan has read so far, shared by
	// every journey of the scan: a Source only appends to it, so an
	// index keeps naming the same Mark for the whole scan.
	Marks []Mark
}

// MarkSet numbers distinct Marks for a Source that reads them per event:
// ID gives each new Mark the next index of List.
type MarkSet struct {
	index map[Mark]int32
	List  []Mark
}

// ID is m's index in s.List, appending it when it is new.
func (s *MarkSet) ID(m *Mark) int32 {
	if id, ok := s.index[*m]; ok {
		return id
	}
	if s.index == nil {
		s.index = map[Mark]int32{}
	}
	id := int32(len(s.List))
	s.index[*m] = id
	s.List = append(s.List, *m)
	return id
}

// ScanSpec says what a Source streams: the events with From <= T < To
// that are conversions (named Conversion) or candidate touches (those
// [MarkOf] gives a Mark; never a conversion), of every profile with a conversion at or after
// ConvFrom, or with All of every profile with any such event.
type ScanSpec struct {
	From, To, ConvFrom int64 // µs
	Conversion         string
	Value              string // the conversion's value property, "" for none
	All                bool
}

// Source streams each profile's journey; an event's profile is
// eventstore.ProfileOf its profile link, user id and anonymous id. fn is
// called once per profile, in any order of profiles; the Journey is only
// valid during the call.
type Source interface {
	Journeys(ctx context.Context, spec ScanSpec, fn func(*Journey) error) error
}

// Provider is an event store that offers a [Source] over its own tables
// (eventstore/duckdb, eventstore/clickhouse).
type Provider interface {
	Attribution() Source
}

// Candidate names the strings whose presence in a track or screen
// event's JSON may make it a touch (its own channel or a campaign; every
// page event is a candidate): [MarkFromJSON] looks no further into the
// JSON of other events.
var Candidate = []string{"channel", "campaign"} // each starting with 'c' (containsCandidate)

// MarkFromJSON is the Mark of an event of type typ that came through
// sourceID, read from its stored JSON, or ok false when it is no
// candidate touch ([MarkOf]). Event stores call it at append and store
// the Mark in narrow columns.
func MarkFromJSON(typ, sourceID string, raw []byte) (Mark, bool) {
	if !MayTouch(typ, raw) {
		return Mark{}, false
	}
	if !mayHaveFields(raw) {
		// No member FieldsFromJSON reads a field from: the fields are
		// empty, valid JSON or not (most page views of a server-side
		// source), found without walking the JSON.
		return MarkOf(&Fields{Type: typ, SourceID: sourceID})
	}
	f := FieldsFromJSON(raw, sourceID)
	f.Type = typ
	return MarkOf(&f)
}

// MayTouch reports whether [MarkFromJSON] reads the JSON raw of an event
// of type typ: every page event, and track and screen events whose JSON
// holds one of the [Candidate] strings. For the others it is ok false
// whatever raw holds.
func MayTouch(typ string, raw []byte) bool {
	switch typ {
	case "page":
		return true
	case "screen", "track":
		return containsCandidate(raw)
	}
	return false
}

// containsCandidate reports whether raw holds one of the Candidate
// strings, in one pass over it: 8 bytes at a time, looking closer only
// where a 'c' is followed by an 'h' or an 'a' (every Candidate starts
// with "ch" or "ca"; checked in init).
func containsCandidate(raw []byte) bool {
	i := 0
	for ; i+9 <= len(raw); i += 8 {
		b := raw[i : i+9 : i+9]
		m := zero8(binary.LittleEndian.Uint64(b) ^ 'c'*ones)
		if m == 0 {
			continue
		}
		w := binary.LittleEndian.Uint64(b[1:]) // the byte after each
		m &= zero8(w^'h'*ones) | zero8(w^'a'*ones)
		for ; m != 0; m &= m - 1 {
			if isCandidateAt(raw, i+bits.TrailingZeros64(m)>>3) {
				return true
			}
		}
	}
	for ; i < len(raw); i++ {
		if raw[i] == 'c' && isCandidateAt(raw, i) {
			return true
		}
	}
	return false
}

func isCandidateAt(raw []byte, i int) bool {
	for _, c := range Candidate {
		if len(raw)-i >= len(c) && string(raw[i:i+len(c)]) == c {
			return true
		}
	}
	return false
}

func init() {
	for _, c := range Candidate {
		if !strings.HasPrefix(c, "ch") && !strings.HasPrefix(c, "ca") {
			panic("attribution: containsCandidate does not find " + c)
		}
	}
}

// zero8 has the high bit set of each zero byte of v, and maybe of a byte
// 1 after a zero byte (a borrow): never 0 when v has a zero byte, so a
// search with it looks at every match and maybe a few more.
func zero8(v uint64) uint64 { return (v - ones) &^ v & highs }

// fieldKeys are the member names FieldsFromJSON reads a field's text
// from (see FieldsReader.member): without one of them as a key, every
// field is empty. "type" only decides which of those texts count.
var fieldKeys = []string{"channel", "campaign", "url", "referrer"}

// mayHaveFields reports whether raw may hold a member FieldsFromJSON
// reads a field from: one of fieldKeys in quotes, or a backslash (an
// escaped key may decode to one). False means FieldsFromJSON(raw) has
// only Type and SourceID set. 8 bytes at a time, looking closer only at
// a quote followed by the first letter of one of fieldKeys (most words
// of JSON hold a quote, few such a pair).
func mayHaveFields(raw []byte) bool {
	if bytes.IndexByte(raw, '\\') >= 0 {
		return true
	}
	i := 0
	for ; i+9 <= len(raw); i += 8 {
		b := raw[i : i+9 : i+9]
		m := zero8(binary.LittleEndian.Uint64(b) ^ '"'*ones)
		if m == 0 {
			continue
		}
		w := binary.LittleEndian.Uint64(b[1:])
		m &= zero8(w^'c'*ones) | zero8(w^'u'*ones) | zero8(w^'r'*ones)
		for ; m != 0; m &= m - 1 {
			if isFieldKeyAt(raw, i+bits.TrailingZeros64(m)>>3) {
				return true
			}
		}
	}
	for ; i < len(raw); i++ {
		if raw[i] == '"' && isFieldKeyAt(raw, i) {
			return true
		}
	}
	return false
}

// isFieldKeyAt reports whether raw[i] is the quote opening one of
// fieldKeys in quotes.
func isFieldKeyAt(raw []byte, i int) bool {
	if raw[i] != '"' {
		return false
	}
	rest := raw[i+1:]
	for _, k := range fieldKeys {
		if len(rest) > len(k) && string(rest[:len(k)]) == k && rest[len(k)] == '"' {
			return true
		}
	}
	return false
}

func init() {
	for _, k := range fieldKeys {
		if k[0] != 'c' && k[0] != 'u' && k[0] != 'r' {
			panic("attribution: mayHaveFields does not find " + k)
		}
	}
}

// FieldsFromJSON reads an event's fields from its stored JSON (Type from
// its "type"; see jsonread.go): all empty for JSON it cannot read.
func FieldsFromJSON(raw []byte, sourceID string) Fields {
	e, ok := readFields(raw)
	if !ok {
		return Fields{SourceID: sourceID}
	}
	return fieldsOf(&e, sourceID)
}

// fieldsOf composes an event's fields from the texts of its JSON's paths.
func fieldsOf(e *rawFields, sourceID string) Fields {
	f := Fields{Type: e.typ, SourceID: sourceID, Medium: e.medium, CampaignSource: e.source, Campaign: e.name,
		URL: e.url, Referrer: e.referrer, Channel: e.propChannel}
	if f.Type == "page" {
		if f.URL == "" {
			f.URL = e.propURL
		}
		if f.Referrer == "" {
			f.Referrer = e.propReferrer
		}
	}
	if f.Channel == "" {
		f.Channel = e.ctxChannel
	}
	if f.Channel == "" {
		f.Channel = e.channel
	}
	return f
}

// text is a decoded JSON scalar as json_extract_string gives it ("" for
// null, objects and arrays).
func text(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(v)
	}
	return ""
}

// ValueFromJSON is the text of properties.<value> of an event's stored
// JSON (a conversion's value), nil when missing or null.
func ValueFromJSON(raw []byte, value string) *string {
	var e struct {
		Properties map[string]any `json:"properties"`
	}
	_ = json.Unmarshal(raw, &e)
	if x, ok := e.Properties[value]; ok && x != nil {
		s := text(x)
		return &s
	}
	return nil
}

// MinorUnits is a conversion value's text (a JSON number, or a string
// holding one) in hundredths, rounded half away from zero; anything else
// is 0, as is a value beyond ±10^13.
func MinorUnits(v string) int64 {
	f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > 1e13 {
		return 0
	}
	return int64(math.Round(f * 100))
}
