package duckdb

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	duckdbdriver "github.com/duckdb/duckdb-go/v2"

	"tandem/event"
	"tandem/eventstore"
)

// maxGetSources is the most sources for which Get without a source looks
// the key up by its fingerprint under each (a per-row list_contains, whose
// cost grows with the list); beyond it, Get compares message_id.
const maxGetSources = 64

// selectColumns are read by scanEvent, in order.
const selectColumns = `source_id, message_id, type, coalesce(name, ''), coalesce(user_id, ''),
	coalesce(anonymous_id, ''), coalesce(group_id, ''), coalesce(previous_id, ''),
	timestamp, original_timestamp, sent_at, received_at, raw`

func scanEvent(rows *sql.Rows) (event.Event, error) {
	var e event.Event
	var ots, sent sql.NullTime
	var raw string
	err := rows.Scan(&e.SourceID, &e.MessageID, &e.Type, &e.Name, &e.UserID,
		&e.AnonymousID, &e.GroupID, &e.PreviousID,
		&e.Timestamp, &ots, &sent, &e.ReceivedAt, &raw)
	if err != nil {
		return e, err
	}
	e.Timestamp = e.Timestamp.UTC()
	e.ReceivedAt = e.ReceivedAt.UTC()
	if ots.Valid {
		e.OriginalTimestamp = ots.Time.UTC()
	}
	if sent.Valid {
		e.SentAt = sent.Time.UTC()
	}
	e.Raw = []byte(raw)
	return e, nil
}

// Get returns the events with messageID, of sourceID when it is not empty,
// ordered by source. It returns [eventstore.ErrNotFound] when there is none.
func (s *Store) Get(ctx context.Context, sourceID, messageID string) ([]event.Event, error) {
	s.swap.RLock()
	defer s.swap.RUnlock()
	if s.closed.Load() {
		return nil, ErrClosed
	}
	var (
		q    string
		args []any
	)
	src, msg := validUTF8(sourceID), validUTF8(messageID)
	if src != "" {
		h, _ := keyHash(nil, src, msg)
		// Only key_hash in SQL: an integer scan; string filters would be
		// evaluated on every row. The match is checked exactly below.
		q = `SELECT ` + selectColumns + ` FROM events WHERE key_hash = ?`
		args = []any{duckdbdriver.Typed(h, duckdbdriver.TYPE_UBIGINT)}
	} else if sources := s.sourceList(maxGetSources); sources != nil {
		// The key's fingerprint under every known source: a scan of
		// key_hash alone is several times faster than one comparing
		// message_id (DuckDB evaluates that string filter on every row).
		// Fingerprint matches are checked exactly below.
		hashes := make([]uint64, len(sources))
		var buf []byte
		for i, source := range sources {
			hashes[i], buf = keyHash(buf, source, msg)
		}
		q = `SELECT ` + selectColumns + ` FROM events WHERE list_contains(?::UBIGINT[], key_hash) ORDER BY source_id`
		args = []any{hashes}
	} else {
		q = `SELECT ` + selectColumns + ` FROM events WHERE message_id = ? ORDER BY source_id`
		args = []any{msg}
	}
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("eventstore/duckdb: get %q/%q: %w", sourceID, messageID, err)
	}
	defer rows.Close()
	var out []event.Event
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return nil, fmt.Errorf("eventstore/duckdb: get %q/%q: %w", sourceID, messageID, err)
		}
		if e.MessageID == msg && (src == "" || e.SourceID == src) {
			out = append(out, e)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("eventstore/duckdb: get %q/%q: %w", sourceID, messageID, err)
	}
	if len(out) == 0 {
		return nil, eventstore.ErrNotFound
	}
	return out, nil
}

// List returns a page of events matching q, ordered by (timestamp,
// source_id, message_id). Page.Next continues after the page's last event
// (keyset pagination), so events appended meanwhile never shift a page;
// an event appended with a time before the cursor is not seen by that walk.
//
// The query runs in two steps within one statement: the page's rowids are
// found by a top-N over the narrow key and filter columns, then only those
// rows are read in full. Reading raw for every candidate row instead made
// filtered pages 3-10x slower. A Profile filter becomes two branches
// (user_id, then anonymous_id) so that each is a plain equality DuckDB
// pushes into the scan; an OR is not pushed down.
func (s *Store) List(ctx context.Context, q eventstore.Query) (eventstore.Page, error) {
	s.swap.RLock()
	defer s.swap.RUnlock()
	if s.closed.Load() {
		return eventstore.Page{}, ErrClosed
	}
	limit := q.PageSize()

	var args []any
	param := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	var where []string
	if q.SourceID != "" {
		where = append(where, "source_id = "+param(validUTF8(q.SourceID)))
	}
	if q.Type != "" {
		where = append(where, "type = "+param(validUTF8(q.Type)))
	}
	if q.Name != "" {
		where = append(where, "name = "+param(validUTF8(q.Name)))
	}
	if !q.From.IsZero() {
		where = append(where, "timestamp >= "+param(eventstore.CeilMicro(q.From)))
	}
	if !q.To.IsZero() {
		where = append(where, "timestamp < "+param(eventstore.CeilMicro(q.To)))
	}
	if q.Cursor != "" {
		c, cts, err := decodeCursor(q.Cursor)
		if err != nil {
			return eventstore.Page{}, err
		}
		ts, src, msg := param(cts), param(c.Source), param(c.MessageID)
		// The plain "timestamp >= ts" lets DuckDB skip row groups by their
		// zone maps; the rest is the exact (ts, src, msg) > cursor test.
		where = append(where, fmt.Sprintf(`timestamp >= %[1]s AND (timestamp > %[1]s OR (timestamp = %[1]s AND (source_id > %[2]s OR (source_id = %[2]s AND message_id > %[3]s))))`, ts, src, msg))
	}
	branches := [][]string{where}
	if q.Profile != "" {
		var err error
		if branches, err = s.profileBranches(ctx, where, validUTF8(q.Profile), param); err != nil {
			return eventstore.Page{}, err
		}
		if len(branches) == 0 {
			return eventstore.Page{}, nil
		}
	}
	const order = ` ORDER BY timestamp, source_id, message_id`
	lim := ` LIMIT ` + param(limit+1)
	var keys []string
	for _, conds := range branches {
		k := `SELECT rowid AS rid, timestamp, source_id, message_id FROM events`
		if len(conds) > 0 {
			k += ` WHERE ` + strings.Join(conds, " AND ")
		}
		keys = append(keys, "("+k+order+lim+")")
	}
	query := `SELECT ` + selectColumns + ` FROM events SEMI JOIN (SELECT rid FROM (` +
		strings.Join(keys, " UNION ALL ") + `)` + order + lim + `) page ON events.rowid = page.rid` + order

	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return eventstore.Page{}, fmt.Errorf("eventstore/duckdb: list: %w", err)
	}
	defer rows.Close()
	var page eventstore.Page
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return eventstore.Page{}, fmt.Errorf("eventstore/duckdb: list: %w", err)
		}
		page.Events = append(page.Events, e)
	}
	if err := rows.Err(); err != nil {
		return eventstore.Page{}, fmt.Errorf("eventstore/duckdb: list: %w", err)
	}
	if len(page.Events) > limit {
		page.Events = page.Events[:limit]
		last := &page.Events[limit-1]
		page.Next = eventstore.Cursor{Micros: last.Timestamp.UnixMicro(), Source: last.SourceID, MessageID: last.MessageID}.Encode(cursorVersion)
	}
	return page, nil
}

// cursorVersion starts every cursor of this store (see [eventstore.Cursor]).
const cursorVersion = 1

// decodeCursor reads a cursor of this store, and its time: the key
// strings must be valid UTF-8 and the time one that time.Time and DuckDB
// hold.
func decodeCursor(s string) (eventstore.Cursor, time.Time, error) {
	c, err := eventstore.DecodeCursor(s, cursorVersion)
	if err != nil {
		return eventstore.Cursor{}, time.Time{}, err
	}
	ts := time.UnixMicro(c.Micros).UTC()
	if !utf8.ValidString(c.Source) || !utf8.ValidString(c.MessageID) || ts.Year() < -290000 || ts.Year() > 290000 {
		return eventstore.Cursor{}, time.Time{}, eventstore.ErrBadCursor
	}
	return c, ts, nil
}

// profileBranches turns a Profile filter into branches of plain equality
// and IN conditions (each pushed into the scan; an OR is not): the keys
// linked to the profile, and the profile as a raw userId or anonymousId of
// events whose key is not linked (see [eventstore.ProfileOf]).
func (s *Store) profileBranches(ctx context.Context, where []string, profile string, param func(any) string) ([][]string, error) {
	keys, err := s.ProfileLinks(ctx, profile)
	if err != nil {
		return nil, fmt.Errorf("eventstore/duckdb: list: %w", err)
	}
	var users, anons []string
	for _, k := range keys {
		if v, ok := strings.CutPrefix(k, "user_id:"); ok {
			users = append(users, v)
		} else if v, ok := strings.CutPrefix(k, "anonymous_id:"); ok {
			anons = append(anons, v)
		}
	}
	for _, k := range []string{eventstore.ProfileKey(profile, ""), eventstore.ProfileKey("", profile)} {
		var linked int
		if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM profile_links WHERE key = ?`, k).Scan(&linked); err != nil {
			return nil, fmt.Errorf("eventstore/duckdb: list: %w", err)
		}
		if linked > 0 {
			continue
		}
		if strings.HasPrefix(k, "user_id:") {
			users = append(users, profile)
		} else {
			anons = append(anons, profile)
		}
	}
	var branches [][]string
	if len(users) > 0 {
		branches = append(branches, append(slices.Clip(where), "user_id IN ("+params(users, param)+")"))
	}
	if len(anons) > 0 {
		branches = append(branches, append(slices.Clip(where), "user_id IS NULL", "anonymous_id IN ("+params(anons, param)+")"))
	}
	return branches, nil
}

func params(vals []string, param func(any) string) string {
	ps := make([]string, len(vals))
	for i, v := range vals {
		ps[i] = param(v)
	}
	return strings.Join(ps, ", ")
}
