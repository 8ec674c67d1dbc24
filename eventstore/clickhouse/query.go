package clickhouse

import (
	"context"
	"fmt"
	"strings"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/ext"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"tandem/event"
	"tandem/eventstore"
)

// selectColumns are read by scanEvent, in order.
const selectColumns = `timestamp, source_id, message_id, type, name, user_id, anonymous_id,
	group_id, previous_id, original_timestamp, sent_at, received_at, raw`

// pageKey is an event's place in List's order (timestamp, source_id,
// message_id), with its profile key to find it through the index.
const pageKey = `timestamp, source_id, message_id`

func scanEvent(rows driver.Rows) (event.Event, error) {
	var (
		e              event.Event
		ts, received   int64
		original, sent *int64
		raw            string
	)
	err := rows.Scan(&ts, &e.SourceID, &e.MessageID, &e.Type, &e.Name, &e.UserID, &e.AnonymousID,
		&e.GroupID, &e.PreviousID, &original, &sent, &received, &raw)
	if err != nil {
		return e, err
	}
	e.Timestamp = time.UnixMicro(ts).UTC()
	e.ReceivedAt = time.UnixMicro(received).UTC()
	if original != nil {
		e.OriginalTimestamp = time.UnixMicro(*original).UTC()
	}
	if sent != nil {
		e.SentAt = time.UnixMicro(*sent).UTC()
	}
	e.Raw = []byte(raw)
	return e, nil
}

// Get returns the events with messageID, of sourceID when it is not empty,
// ordered by source. It returns [eventstore.ErrNotFound] when there is none.
//
// The key index (ordered by message_id) gives each match's profile key
// and time, which lead to the event through the events table's index.
func (s *Store) Get(ctx context.Context, sourceID, messageID string) ([]event.Event, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	match := "message_id = " + quote(messageID)
	if sourceID != "" {
		match += " AND source_id = " + quote(sourceID)
	}
	keys := ` FROM ` + s.table("event_keys") + ` WHERE ` + match
	q := `SELECT ` + selectColumns + ` FROM ` + s.table("events") + `
		WHERE profile_key IN (SELECT profile_key` + keys + `)
		AND (profile_key, timestamp) IN (SELECT profile_key, timestamp` + keys + `) AND ` + match + `
		ORDER BY source_id, stored_at LIMIT 1 BY source_id`
	out, err := s.query(ctx, q)
	if err != nil {
		return nil, s.wrap("get", err)
	}
	if len(out) == 0 {
		return nil, eventstore.ErrNotFound
	}
	return out, nil
}

// query runs q (which selects selectColumns) and returns the events.
func (s *Store) query(ctx context.Context, q string, tables ...*ext.Table) ([]event.Event, error) {
	if len(tables) > 0 {
		ctx = ch.Context(ctx, ch.WithExternalTable(tables...))
	}
	rows, err := s.conn.Query(ctx, q)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []event.Event
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// List returns a page of events matching q, ordered by (timestamp,
// source_id, message_id). Page.Next continues after the page's last event
// (keyset pagination), so events appended meanwhile never shift a page;
// an event appended with a time before the cursor is not seen by that walk.
//
// A page takes two queries: the first finds the page's keys reading only
// the narrow key and filter columns (a top-N sort), the second reads those
// events in full through the primary index. Reading raw for every
// candidate row in the sort would cost the whole filtered range's JSON.
// A Profile filter is an IN on profile_key, the first column of the
// index: the keys linked to the profile and its own raw ids (see
// [eventstore.ProfileOf]).
func (s *Store) List(ctx context.Context, q eventstore.Query) (eventstore.Page, error) {
	if s.closed.Load() {
		return eventstore.Page{}, ErrClosed
	}
	limit := q.PageSize()

	var where []string
	var tables []*ext.Table
	if q.SourceID != "" {
		where = append(where, "source_id = "+quote(q.SourceID))
	}
	if q.Type != "" {
		where = append(where, "type = "+quote(q.Type))
	}
	if q.Name != "" {
		where = append(where, "name = "+quote(q.Name))
	}
	if !q.From.IsZero() {
		where = append(where, "timestamp >= "+int64Lit(eventstore.CeilMicro(q.From).UnixMicro()))
	}
	if !q.To.IsZero() {
		where = append(where, "timestamp < "+int64Lit(eventstore.CeilMicro(q.To).UnixMicro()))
	}
	if q.Cursor != "" {
		c, err := eventstore.DecodeCursor(q.Cursor, cursorTag)
		if err != nil {
			return eventstore.Page{}, err
		}
		ts, src, msg := int64Lit(c.Micros), quote(c.Source), quote(c.MessageID)
		// The plain "timestamp >= ts" prunes partitions by their min/max
		// time; the rest is the exact (ts, src, msg) > cursor test.
		where = append(where, fmt.Sprintf(`timestamp >= %[1]s AND (timestamp > %[1]s OR (timestamp = %[1]s AND (source_id > %[2]s OR (source_id = %[2]s AND message_id > %[3]s))))`, ts, src, msg))
	}
	if q.Profile != "" {
		keys, err := s.profileKeys(ctx, q.Profile)
		if err != nil {
			return eventstore.Page{}, s.wrap("list", err)
		}
		if len(keys) == 0 {
			return eventstore.Page{}, nil
		}
		t, err := newTable("_profile", "key String")
		if err != nil {
			return eventstore.Page{}, s.wrap("list", err)
		}
		for _, k := range keys {
			if err := t.Append(k); err != nil {
				return eventstore.Page{}, s.wrap("list", err)
			}
		}
		tables = append(tables, t)
		where = append(where, "profile_key IN (SELECT key FROM _profile)")
	}
	query := `SELECT profile_key, ` + pageKey + ` FROM ` + s.table("events")
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, " AND ")
	}
	query += fmt.Sprintf(` ORDER BY %[1]s LIMIT 1 BY %[1]s LIMIT %[2]d`, pageKey, limit+1)

	qctx := ctx
	if len(tables) > 0 {
		qctx = ch.Context(ctx, ch.WithExternalTable(tables...))
	}
	rows, err := s.conn.Query(qctx, query)
	if err != nil {
		return eventstore.Page{}, s.wrap("list", err)
	}
	page, err := newTable("_page", "profile_key String", "timestamp Int64", "source_id String", "message_id String")
	if err != nil {
		rows.Close()
		return eventstore.Page{}, s.wrap("list", err)
	}
	n := 0
	for rows.Next() {
		var pk, src, msg string
		var ts int64
		if err := rows.Scan(&pk, &ts, &src, &msg); err != nil {
			rows.Close()
			return eventstore.Page{}, s.wrap("list", err)
		}
		n++
		if n > limit {
			break
		}
		if err := page.Append(pk, ts, src, msg); err != nil {
			rows.Close()
			return eventstore.Page{}, s.wrap("list", err)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return eventstore.Page{}, s.wrap("list", err)
	}
	if n == 0 {
		return eventstore.Page{}, nil
	}
	// Of two copies of an event (see Append) the first stored is shown.
	evs, err := s.query(ctx, `SELECT `+selectColumns+` FROM `+s.table("events")+`
		WHERE profile_key IN (SELECT profile_key FROM _page) AND timestamp IN (SELECT timestamp FROM _page)
		AND (profile_key, `+pageKey+`) IN (SELECT profile_key, `+pageKey+` FROM _page)
		ORDER BY `+pageKey+`, stored_at LIMIT 1 BY `+pageKey, page)
	if err != nil {
		return eventstore.Page{}, s.wrap("list", err)
	}
	if len(evs) != min(n, limit) {
		// Events are never deleted, so this is a bug, not a race.
		return eventstore.Page{}, s.wrap("list", fmt.Errorf("page of %d keys read back %d events", min(n, limit), len(evs)))
	}
	out := eventstore.Page{Events: evs}
	if n > limit {
		last := &evs[len(evs)-1]
		out.Next = eventstore.Cursor{Micros: last.Timestamp.UnixMicro(), Source: last.SourceID, MessageID: last.MessageID}.Encode(cursorTag)
	}
	return out, nil
}

// profileKeys returns the profile keys whose events belong to profile:
// those linked to it, and its own raw ids as a userId or anonymousId key
// unless that key is linked (to it or to another profile).
func (s *Store) profileKeys(ctx context.Context, profile string) ([]string, error) {
	keys, err := s.profileLinks(ctx, profile)
	if err != nil {
		return nil, err
	}
	raw := []string{eventstore.ProfileKey(profile, ""), eventstore.ProfileKey("", profile)}
	rows, err := s.conn.Query(ctx, `SELECT key FROM (SELECT key, argMax(profile_id, version) AS p FROM `+s.table("profile_links")+`
		WHERE key IN (`+quote(raw[0])+`, `+quote(raw[1])+`) GROUP BY key) WHERE p != ''`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	linked := map[string]bool{}
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			return nil, err
		}
		linked[k] = true
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for _, k := range raw {
		if !linked[k] {
			keys = append(keys, k)
		}
	}
	return keys, nil
}

// cursorTag starts every cursor of this store (see [eventstore.Cursor]).
const cursorTag = 0xc1
