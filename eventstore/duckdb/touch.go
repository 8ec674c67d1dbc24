package duckdb

import (
	"context"
	"fmt"

	"tandem/attribution"
	"tandem/event"
)

// The touch columns (schema version 3) hold each event's attribution
// touch facts ([attribution.Mark]) so that attribution reads a few narrow
// columns instead of every event's JSON. They are written by Append
// (touchOf) and, for rows written without them (stored before
// version 3, or inserted by SQL), by FillTouches, which Open runs. They
// are facts about the event, not its channel: the configured taxonomy
// is applied when attribution reads them, so a configuration change
// applies to old events too. Erasure, retention and compaction treat them
// as the rest of the row.
//
//	touch           NULL: not read yet; 0: no candidate touch; else
//	                touchCandidate | touchClickID | touchReferrer
//	touch_medium    Mark.Medium (NULL for "", as every touch_* column)
//	touch_source    Mark.Source
//	touch_campaign  Mark.Campaign
//	touch_channel   Mark.Channel
//	touch_referrer  Mark.Referrer
//	touch_page      Mark.Page
//
// The type and source_id columns give Mark.Type and Mark.SourceID.
var touchColumns = []string{"touch", "touch_medium", "touch_source", "touch_campaign", "touch_channel", "touch_referrer", "touch_page"}

// The bits of the touch column.
const (
	touchCandidate = 1 << iota
	touchClickID
	touchReferrer
)

// touchRow is an event's touch columns: the touch bits, then the others
// in touchColumns order, "" for NULL.
type touchRow struct {
	bits uint8
	strs [6]string
}

// touchOf returns e's touch columns.
func touchOf(e *event.Event) touchRow {
	m, ok := attribution.MarkFromJSON(e.Type, e.SourceID, e.Raw)
	return touchRowOf(&m, ok)
}

// touchRowOf is the touch columns of a Mark; ok false for no candidate.
func touchRowOf(m *attribution.Mark, ok bool) touchRow {
	if !ok {
		return touchRow{}
	}
	return touchRow{bits: touchBits(m), strs: [6]string{validUTF8(m.Medium), validUTF8(m.Source),
		validUTF8(m.Campaign), validUTF8(m.Channel), validUTF8(m.Referrer), validUTF8(m.Page)}}
}

func touchBits(m *attribution.Mark) uint8 {
	b := uint8(touchCandidate)
	if m.ClickID {
		b |= touchClickID
	}
	if m.HasReferrer {
		b |= touchReferrer
	}
	return b
}

// fillChunk is how many rows (by rowid) FillTouches reads at a time.
const fillChunk = 1 << 20

// FillTouches fills the touch columns of the events that lack them (see
// touchColumns): those stored before schema version 3, which Open fills,
// and those written by SQL straight into the table, as the benchmarks'
// generators do. It returns how many rows it filled. The events that can
// be no touch are marked in SQL; the JSON of the others (page views, and
// track and screen events naming a channel or campaign) is read in Go,
// a million rows at a time, each in its own transaction.
func (s *Store) FillTouches(ctx context.Context) (int64, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.closed.Load() {
		return 0, ErrClosed
	}
	n, err := s.fillTouches(ctx)
	if err != nil {
		return n, fmt.Errorf("eventstore/duckdb: fill touches: %w", err)
	}
	return n, nil
}

func (s *Store) fillTouches(ctx context.Context) (int64, error) {
	var (
		n        int64
		hi       int64
		anyEmpty bool
	)
	if err := s.db.QueryRowContext(ctx, `SELECT coalesce(max(rowid), -1), coalesce(bool_or(touch IS NULL), false) FROM events`).Scan(&hi, &anyEmpty); err != nil || !anyEmpty {
		return 0, err
	}
	cand := "type = 'page' OR (type IN ('screen', 'track') AND ("
	for i, c := range attribution.Candidate {
		if i > 0 {
			cand += " OR "
		}
		cand += "contains(raw, " + quote(c) + ")"
	}
	cand += "))"
	// The value columns of the same rows (written by SQL without them).
	if _, err := s.db.ExecContext(ctx, fillValuesSQL()+"touch IS NULL"); err != nil {
		return 0, err
	}
	res, err := s.db.ExecContext(ctx, `UPDATE events SET touch = 0 WHERE touch IS NULL AND NOT coalesce(`+cand+`, false)`)
	if err != nil {
		return 0, err
	}
	d, _ := res.RowsAffected()
	n += d
	for lo := int64(0); lo <= hi; lo += fillChunk {
		d, err := s.fillRange(ctx, lo, lo+fillChunk)
		n += d
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// fillRange fills the touch columns of the rows in [lo, hi) of rowid
// that lack them, in one transaction.
func (s *Store) fillRange(ctx context.Context, lo, hi int64) (int64, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT rowid, type, source_id, raw FROM events WHERE rowid >= ? AND rowid < ? AND touch IS NULL`, lo, hi)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	var (
		ids  []int64
		bits []int64
		cols [6][]string
		e    event.Event
		raw  []byte
		id   int64
	)
	for rows.Next() {
		if err := rows.Scan(&id, &e.Type, &e.SourceID, &raw); err != nil {
			return 0, err
		}
		e.Raw = raw
		t := touchOf(&e)
		ids = append(ids, id)
		bits = append(bits, int64(t.bits))
		for i := range cols {
			cols[i] = append(cols[i], t.strs[i])
		}
	}
	if err := rows.Err(); err != nil {
		return 0, err
	}
	rows.Close()
	if len(ids) == 0 {
		return 0, nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	args := []any{ids, bits}
	for i := range cols {
		args = append(args, cols[i])
	}
	if _, err := tx.ExecContext(ctx, `UPDATE events SET touch = f.touch, touch_medium = nullif(f.medium, ''), touch_source = nullif(f.source, ''),
			touch_campaign = nullif(f.campaign, ''), touch_channel = nullif(f.channel, ''), touch_referrer = nullif(f.referrer, ''), touch_page = nullif(f.page, '')
		FROM (SELECT unnest(?::BIGINT[]) AS id, unnest(?::BIGINT[])::UTINYINT AS touch, unnest(?::VARCHAR[]) AS medium, unnest(?::VARCHAR[]) AS source,
			unnest(?::VARCHAR[]) AS campaign, unnest(?::VARCHAR[]) AS channel, unnest(?::VARCHAR[]) AS referrer, unnest(?::VARCHAR[]) AS page) f
		WHERE events.rowid = f.id`, args...); err != nil {
		return 0, err
	}
	if err := tx.Commit(); err != nil {
		return 0, err
	}
	return int64(len(ids)), nil
}
