package duckdb

import (
	"tandem/attribution"
	"tandem/event"
)

// factsOf returns e's touch columns and writes its value columns to vals:
// what touchOf and valuesOf give, reading e's JSON at most once. Most
// events need neither (an identify, a track without a value, campaign or
// channel: found by a byte search) or one of them; an event that needs
// both (a conversion from a campaign) is read in one walk of its members
// that serves both readers.
func factsOf(e *event.Event, vals []optString) touchRow {
	clear(vals)
	touch := attribution.MayTouch(e.Type, e.Raw)
	if !mayHaveValues(e.Raw) {
		if !touch {
			return touchRow{}
		}
		return touchOf(e)
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
		// Not one valid JSON object (no event collection accepts): each
		// reader its own way.
		valuesOf(vals, e.Raw)
		if !touch {
			return touchRow{}
		}
		return touchOf(e)
	}
	propValues(vals, props)
	if !touch {
		return touchRow{}
	}
	m, ok := r.Mark(e.Type, e.SourceID, e.Raw)
	return touchRowOf(&m, ok)
}
