package attribution

import (
	"context"
	"encoding/json"
	"math"
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
	Value  *string
	Fields Fields // a candidate touch's fields (not read for conversions)
}

// Journey is one profile's events, in any order.
type Journey struct {
	Profile string
	Events  []Event
}

// ScanSpec says what a Source streams: the events with From <= T < To
// that are conversions (named Conversion) or candidate touches (see
// [CandidateSQL]), of every profile with a conversion at or after
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
// page event is a candidate): a Source filters with them before reading
// fields, and Classify decides.
var Candidate = []string{"channel", "campaign"}

// CandidateTypes are the event types a touch can have.
var CandidateTypes = []string{"page", "screen", "track"}

// rawEvent is the part of an event's JSON the fields come from.
type rawEvent struct {
	Type    string `json:"type"`
	Channel any    `json:"channel"`
	Context struct {
		Campaign struct {
			Name   any `json:"name"`
			Source any `json:"source"`
			Medium any `json:"medium"`
		} `json:"campaign"`
		Page struct {
			URL      any `json:"url"`
			Referrer any `json:"referrer"`
		} `json:"page"`
		Channel any `json:"channel"`
	} `json:"context"`
	Properties map[string]any `json:"properties"`
}

// text is a JSON scalar as json_extract_string gives it ("" for null,
// objects and arrays).
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

// FieldsFromJSON reads an event's fields from its stored JSON, as a
// Source that cannot extract them natively does (the Go path; the DuckDB
// source extracts the same in SQL). It also returns the text of
// properties.<value> ("" for no value property).
func FieldsFromJSON(raw []byte, sourceID, value string) (Fields, *string) {
	var e rawEvent
	_ = json.Unmarshal(raw, &e)
	f := Fields{Type: e.Type, SourceID: sourceID,
		Medium: text(e.Context.Campaign.Medium), CampaignSource: text(e.Context.Campaign.Source), Campaign: text(e.Context.Campaign.Name),
		URL: text(e.Context.Page.URL), Referrer: text(e.Context.Page.Referrer)}
	if f.Type == "page" {
		if f.URL == "" {
			f.URL = text(e.Properties["url"])
		}
		if f.Referrer == "" {
			f.Referrer = text(e.Properties["referrer"])
		}
	}
	f.Channel = text(e.Properties["channel"])
	if f.Channel == "" {
		f.Channel = text(e.Context.Channel)
	}
	if f.Channel == "" {
		f.Channel = text(e.Channel)
	}
	var v *string
	if value != "" {
		if x, ok := e.Properties[value]; ok && x != nil {
			s := text(x)
			v = &s
		}
	}
	return f, v
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
