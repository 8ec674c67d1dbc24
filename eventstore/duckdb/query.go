package duckdb

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	duckdbdriver "github.com/duckdb/duckdb-go/v2"

	"tandem/event"
	"tandem/eventstore"
)

// Page sizes of List.
const (
	defaultLimit = 100
	maxLimit     = 1000
)

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
	if s.closed.Load() {
		return nil, ErrClosed
	}
	var (
		q    string
		args []any
	)
	if sourceID != "" {
		src, msg := validUTF8(sourceID), validUTF8(messageID)
		h, _ := keyHash(nil, src, msg)
		// key_hash first: an integer compare is cheaper than strings.
		q = `SELECT ` + selectColumns + ` FROM events WHERE key_hash = ? AND source_id = ? AND message_id = ?`
		args = []any{duckdbdriver.Typed(h, duckdbdriver.TYPE_UBIGINT), src, msg}
	} else {
		q = `SELECT ` + selectColumns + ` FROM events WHERE message_id = ? ORDER BY source_id`
		args = []any{validUTF8(messageID)}
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
		out = append(out, e)
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
func (s *Store) List(ctx context.Context, q eventstore.Query) (eventstore.Page, error) {
	if s.closed.Load() {
		return eventstore.Page{}, ErrClosed
	}
	limit := q.Limit
	if limit <= 0 {
		limit = defaultLimit
	}
	limit = min(limit, maxLimit)

	var where []string
	var args []any
	if q.SourceID != "" {
		where = append(where, "source_id = ?")
		args = append(args, validUTF8(q.SourceID))
	}
	if q.Profile != "" {
		p := validUTF8(q.Profile)
		where = append(where, "(user_id = ? OR anonymous_id = ?)")
		args = append(args, p, p)
	}
	if q.Type != "" {
		where = append(where, "type = ?")
		args = append(args, validUTF8(q.Type))
	}
	if q.Name != "" {
		where = append(where, "name = ?")
		args = append(args, validUTF8(q.Name))
	}
	if !q.From.IsZero() {
		where = append(where, "timestamp >= ?")
		args = append(args, ceilMicro(q.From))
	}
	if !q.To.IsZero() {
		where = append(where, "timestamp < ?")
		args = append(args, ceilMicro(q.To))
	}
	if q.Cursor != "" {
		c, err := decodeCursor(q.Cursor)
		if err != nil {
			return eventstore.Page{}, err
		}
		// The plain "timestamp >= ?" lets DuckDB skip row groups by their
		// zone maps; the rest is the exact (ts, src, msg) > cursor test.
		where = append(where, `timestamp >= ? AND (timestamp > ? OR (timestamp = ? AND (source_id > ? OR (source_id = ? AND message_id > ?))))`)
		args = append(args, c.ts, c.ts, c.ts, c.src, c.src, c.msg)
	}
	query := `SELECT ` + selectColumns + ` FROM events`
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, " AND ")
	}
	query += ` ORDER BY timestamp, source_id, message_id LIMIT ?`
	args = append(args, limit+1)

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
		page.Next = encodeCursor(cursor{ts: last.Timestamp, src: last.SourceID, msg: last.MessageID})
	}
	return page, nil
}

// ceilMicro rounds t up to a whole microsecond, the stored precision: a
// stored (truncated) time is >= t exactly when it is >= ceilMicro(t).
func ceilMicro(t time.Time) time.Time {
	if t.Nanosecond()%1000 == 0 {
		return t
	}
	return t.Truncate(time.Microsecond).Add(time.Microsecond)
}

// cursor is the key of the last event of a page.
type cursor struct {
	ts       time.Time
	src, msg string
}

// cursorVersion starts every encoded cursor.
const cursorVersion = 1

// encodeCursor returns base64url(version, varint unix micros, uvarint
// len(src), src, msg).
func encodeCursor(c cursor) string {
	b := make([]byte, 0, 1+binary.MaxVarintLen64*2+len(c.src)+len(c.msg))
	b = append(b, cursorVersion)
	b = binary.AppendVarint(b, c.ts.UnixMicro())
	b = binary.AppendUvarint(b, uint64(len(c.src)))
	b = append(b, c.src...)
	b = append(b, c.msg...)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(s string) (cursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) < 1 || b[0] != cursorVersion {
		return cursor{}, eventstore.ErrBadCursor
	}
	b = b[1:]
	micros, n := binary.Varint(b)
	if n <= 0 {
		return cursor{}, eventstore.ErrBadCursor
	}
	b = b[n:]
	srcLen, n := binary.Uvarint(b)
	if n <= 0 || srcLen > uint64(len(b)-n) {
		return cursor{}, eventstore.ErrBadCursor
	}
	b = b[n:]
	c := cursor{ts: time.UnixMicro(micros).UTC(), src: string(b[:srcLen]), msg: string(b[srcLen:])}
	if !utf8.ValidString(c.src) || !utf8.ValidString(c.msg) || c.ts.Year() < -290000 || c.ts.Year() > 290000 {
		return cursor{}, eventstore.ErrBadCursor
	}
	return c, nil
}
