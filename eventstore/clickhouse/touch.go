package clickhouse

import (
	"tandem/attribution"
	"tandem/event"
)

// The touch columns (schema version 4) hold each event's attribution
// touch facts ([attribution.Mark]) so that attribution reads a few narrow
// columns instead of every event's JSON; Append writes them
// (touchValues). They are facts about the event, not its channel: the
// configured taxonomy is applied when attribution reads them, so a
// configuration change applies to old events too. Erasure and retention
// (ALTER TABLE … DELETE) treat them as the rest of the row.
//
//	touch           touchUnread (the default: rows stored before version
//	                4, whose JSON attribution reads instead); 0: no
//	                candidate touch; else touchCandidate | touchClickID |
//	                touchReferrer
//	touch_medium    Mark.Medium
//	touch_source    Mark.Source
//	touch_campaign  Mark.Campaign
//	touch_channel   Mark.Channel
//	touch_referrer  Mark.Referrer
//	touch_page      Mark.Page
//
// The type and source_id columns give Mark.Type and Mark.SourceID.
var touchColumns = []string{"touch UInt8", "touch_medium String", "touch_source String", "touch_campaign String",
	"touch_channel String", "touch_referrer String", "touch_page String"}

// The values of the touch column.
const (
	touchCandidate = 1
	touchClickID   = 2
	touchReferrer  = 4
	touchUnread    = 255
)

// touchValues returns e's touch columns, in touchColumns order.
func touchValues(e *event.Event) []any {
	m, ok := attribution.MarkFromJSON(e.Type, e.SourceID, e.Raw)
	if !ok {
		return []any{uint8(0), "", "", "", "", "", ""}
	}
	b := uint8(touchCandidate)
	if m.ClickID {
		b |= touchClickID
	}
	if m.HasReferrer {
		b |= touchReferrer
	}
	return []any{b, m.Medium, m.Source, m.Campaign, m.Channel, m.Referrer, m.Page}
}
