package attribution

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Event is one event of a profile as a [Source] streams it: a conversion
// or a candidate touch.
type Event struct {
	T          int64 // µs since the Unix epoch
	Conversion bool
	// Value is the conversion's value property as text (a JSON number or
	// string), nil when missing.
	Value *string
	Mark  Mark // a candidate touch's (not read for conversions)
}

// Journey is one profile's events, in any order.
type Journey struct {
	Profile string
	Events  []Event
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
var Candidate = []string{"channel", "campaign"}

// MarkFromJSON is the Mark of an event of type typ that came through
// sourceID, read from its stored JSON, or ok false when it is no
// candidate touch ([MarkOf]). Event stores call it at append and store
// the Mark in narrow columns.
func MarkFromJSON(typ, sourceID string, raw []byte) (Mark, bool) {
	switch typ {
	case "page":
	case "screen", "track":
		if !slices.ContainsFunc(Candidate, func(c string) bool { return bytes.Contains(raw, []byte(c)) }) {
			return Mark{}, false
		}
	default:
		return Mark{}, false
	}
	f := FieldsFromJSON(raw, sourceID)
	f.Type = typ
	return MarkOf(&f)
}

// FieldsFromJSON reads an event's fields from its stored JSON (Type from
// its "type"; see jsonread.go): all empty for JSON it cannot read.
func FieldsFromJSON(raw []byte, sourceID string) Fields {
	e, ok := readFields(raw)
	if !ok {
		return Fields{SourceID: sourceID}
	}
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

// minorUnits is a conversion value in hundredths: a number, or a string
// holding one; anything else is 0.
func minorUnits(v *string) int64 {
	if v == nil {
		return 0
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(*v), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > 1e13 {
		return 0
	}
	return int64(math.Round(f * 100))
}
