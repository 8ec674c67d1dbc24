// Package quarantine keeps the events that failed validation or processing,
// each with the reason, so that none is ever silently dropped. An entry
// holds the event's bytes exactly as sent; once the cause is fixed (a
// tracking plan relaxed, a bug corrected) entries are replayed and marked
// so.
//
// The processing pipeline adds the [event.Problem]s of each event-log
// record with [Store.Add], keyed by the record's log sequence number: the
// log delivers at least once, and adding the same record again stores
// nothing new.
//
// The [Store] keeps its tables in a [statestore.DB]; apply [Migrations]
// with [statestore.DB.Migrate] before use.
package quarantine

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"tandem/event"
	"tandem/statestore"
)

// FieldError is the input error naming the offending JSON field (an alias
// of [statestore.FieldError], shared by all concept packages).
type FieldError = statestore.FieldError

// Entry statuses.
const (
	Held     = "held"     // waiting in the quarantine
	Replayed = "replayed" // sent back through processing
)

// Entry is one quarantined event.
type Entry struct {
	ID         string    `json:"id"`
	SourceID   string    `json:"sourceId"`
	MessageID  string    `json:"messageId"` // "" if the event had no usable one
	Index      int       `json:"index"`     // position in its request
	Code       string    `json:"code"`      // machine-readable reason, e.g. missing_field
	Field      string    `json:"field"`     // the offending field, e.g. batch[3].userId
	Message    string    `json:"message"`   // human-readable reason
	ReceivedAt time.Time `json:"receivedAt"`
	// Raw is the event's bytes exactly as sent. They may not be valid JSON
	// (or even UTF-8), so the API decides how to show them.
	Raw        []byte    `json:"-"`
	Status     string    `json:"status"` // Held or Replayed
	ReplayedAt time.Time `json:"replayedAt,omitzero"`
	LogSeq     uint64    `json:"logSeq"`
	Type       string    `json:"type,omitempty"` // the endpoint's type, for single-event endpoints   // the event-log record it came from
	Position   int       `json:"position"`       // its place among that record's problems
}

// Filter narrows [Store.List] and [Store.Count]; empty fields match all.
type Filter struct {
	SourceID string
	Code     string
	Status   string // Held, Replayed or ""
}

// Store keeps quarantined events.
type Store struct {
	db *statestore.DB
}

// NewStore returns a Store over db, whose [Migrations] must be applied.
func NewStore(db *statestore.DB) *Store { return &Store{db: db} }

const tableSQL = `
CREATE TABLE quarantine_entries (
	id TEXT PRIMARY KEY,
	log_seq BIGINT NOT NULL,
	pos BIGINT NOT NULL,
	source_id TEXT NOT NULL,
	message_id TEXT NOT NULL,
	event_index BIGINT NOT NULL,
	code TEXT NOT NULL,
	field TEXT NOT NULL,
	message TEXT NOT NULL,
	received_at BIGINT NOT NULL,
	raw %s NOT NULL,
	status TEXT NOT NULL,
	replayed_at BIGINT NOT NULL,
	UNIQUE (log_seq, pos)
);
CREATE INDEX quarantine_entries_newest ON quarantine_entries (received_at, log_seq, pos);
CREATE INDEX quarantine_entries_source ON quarantine_entries (source_id, received_at, log_seq, pos);
`

// Migrations returns the package's schema migrations, for
// [statestore.DB.Migrate]. Raw bytes are a BLOB in SQLite and a BYTEA in
// PostgreSQL.
func Migrations() []statestore.Migration {
	return []statestore.Migration{{
		Package: "quarantine",
		Version: 1,
		SQL:     fmt.Sprintf(tableSQL, "BLOB"),
		DialectSQL: map[string]string{
			statestore.Postgres: fmt.Sprintf(tableSQL, "BYTEA"),
		},
	}, {
		// The endpoint's type, for events sent to a single-event endpoint
		// whose body has no "type": a replay needs it.
		Package: "quarantine",
		Version: 2,
		SQL:     `ALTER TABLE quarantine_entries ADD COLUMN event_type TEXT NOT NULL DEFAULT ''`,
	}}
}

// insertChunk is how many entries one INSERT carries (14 parameters each,
// well under SQLite's and PostgreSQL's limits).
const insertChunk = 200

// Add quarantines problems, the problems of event-log record logSeq, in one
// transaction. An entry is identified by (logSeq, its position in
// problems): adding the same record again (after a redelivery) stores
// nothing new, and the entries first stored are kept.
//
// Text fields are stored as valid UTF-8 without NUL characters (invalid
// bytes become U+FFFD) so that any backend takes them; Raw is stored as
// is.
func (s *Store) Add(ctx context.Context, logSeq uint64, problems []event.Problem) error {
	if len(problems) == 0 {
		return nil
	}
	if logSeq > math.MaxInt64 {
		return fmt.Errorf("quarantine: add: log sequence %d out of range", logSeq)
	}
	err := s.add(ctx, func(int) (uint64, int) { return logSeq, -1 }, problems)
	if err != nil {
		return fmt.Errorf("quarantine: add %d entries of record %d: %w", len(problems), logSeq, err)
	}
	return nil
}

// AddKeyed quarantines problems that did not come from an event-log
// record (rows of a bulk import, say), each under its own key, in one
// transaction. keys[i] identifies problems[i] (it is stored as the log
// sequence, with position 0), so adding the same key again stores nothing
// new. Keys must be above the log's sequence space: bit 62 set.
func (s *Store) AddKeyed(ctx context.Context, keys []uint64, problems []event.Problem) error {
	if len(keys) != len(problems) {
		return fmt.Errorf("quarantine: add keyed: %d keys for %d problems", len(keys), len(problems))
	}
	for _, k := range keys {
		if k > math.MaxInt64 || k < 1<<62 {
			return fmt.Errorf("quarantine: add keyed: key %d outside the keyed range", k)
		}
	}
	if len(problems) == 0 {
		return nil
	}
	if err := s.add(ctx, func(i int) (uint64, int) { return keys[i], 0 }, problems); err != nil {
		return fmt.Errorf("quarantine: add %d keyed entries: %w", len(problems), err)
	}
	return nil
}

// add inserts problems; key gives each its (log sequence, position), a
// position of -1 meaning its index in problems.
func (s *Store) add(ctx context.Context, key func(i int) (uint64, int), problems []event.Problem) error {
	return s.db.Tx(ctx, func(tx *statestore.Tx) error {
		for start := 0; start < len(problems); start += insertChunk {
			end := min(start+insertChunk, len(problems))
			var q strings.Builder
			q.WriteString(`INSERT INTO quarantine_entries
				(id, log_seq, pos, source_id, message_id, event_index, code, field, message, received_at, raw, status, replayed_at, event_type)
				VALUES `)
			args := make([]any, 0, (end-start)*14)
			for i := start; i < end; i++ {
				p := &problems[i]
				if i > start {
					q.WriteString(", ")
				}
				q.WriteString("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
				raw := p.Raw
				if raw == nil {
					raw = []byte{}
				}
				seq, pos := key(i)
				if pos < 0 {
					pos = i
				}
				args = append(args, statestore.NewID("qe"), int64(seq), pos,
					cleanText(p.SourceID), cleanText(p.MessageID), p.Index,
					cleanText(p.Code), cleanText(p.Field), cleanText(p.Message),
					statestore.TimeToDB(p.ReceivedAt), raw, Held, 0, cleanText(p.Type))
			}
			q.WriteString(` ON CONFLICT (log_seq, pos) DO NOTHING`)
			if _, err := tx.Exec(ctx, q.String(), args...); err != nil {
				return err
			}
		}
		return nil
	})
}

// cleanText makes s storable in any backend's text column.
func cleanText(s string) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if strings.IndexByte(s, 0) >= 0 {
		s = strings.ReplaceAll(s, "\x00", "\uFFFD")
	}
	return s
}

const entryColumns = `id, log_seq, pos, source_id, message_id, event_index, code, field, message, received_at, raw, status, replayed_at, event_type`

type scanner interface{ Scan(dest ...any) error }

func scanEntry(r scanner) (Entry, error) {
	var e Entry
	var seq, received, replayed int64
	if err := r.Scan(&e.ID, &seq, &e.Position, &e.SourceID, &e.MessageID, &e.Index, &e.Code, &e.Field,
		&e.Message, &received, &e.Raw, &e.Status, &replayed, &e.Type); err != nil {
		return Entry{}, err
	}
	if e.Raw == nil {
		e.Raw = []byte{}
	}
	e.LogSeq = uint64(seq)
	e.ReceivedAt = statestore.TimeFromDB(received)
	e.ReplayedAt = statestore.TimeFromDB(replayed)
	return e, nil
}

// Get returns the entry with id, or an error matching
// [statestore.ErrNotFound].
func (s *Store) Get(ctx context.Context, id string) (Entry, error) {
	e, err := scanEntry(s.db.QueryRow(ctx, `SELECT `+entryColumns+` FROM quarantine_entries WHERE id = ?`, id))
	if err != nil {
		return Entry{}, fmt.Errorf("quarantine: get %q: %w", id, err)
	}
	return e, nil
}

// where returns the WHERE conditions and arguments for f.
func (f Filter) where() ([]string, []any, error) {
	var conds []string
	var args []any
	if f.SourceID != "" {
		conds = append(conds, "source_id = ?")
		args = append(args, f.SourceID)
	}
	if f.Code != "" {
		conds = append(conds, "code = ?")
		args = append(args, f.Code)
	}
	switch f.Status {
	case "":
	case Held, Replayed:
		conds = append(conds, "status = ?")
		args = append(args, f.Status)
	default:
		return nil, nil, &FieldError{Field: "status", Message: `must be "held" or "replayed"`}
	}
	return conds, args, nil
}

// List returns up to limit entries (see [statestore.Limit]) matching f,
// newest first (by time received, then log position), starting after
// cursor ("" for the first page), and the cursor of the next page, "" after
// the last. A bad cursor or status gives a *[FieldError] for "cursor" or
// "status".
func (s *Store) List(ctx context.Context, f Filter, limit int, cursor string) ([]Entry, string, error) {
	limit = statestore.Limit(limit)
	conds, args, err := f.where()
	if err != nil {
		return nil, "", fmt.Errorf("quarantine: list: %w", err)
	}
	after, err := statestore.DecodeCursor(cursor, 3)
	if err != nil {
		return nil, "", fmt.Errorf("quarantine: list: %w", err)
	}
	if after != nil {
		var key [3]int64
		for i, v := range after {
			if key[i], err = strconv.ParseInt(v, 10, 64); err != nil {
				return nil, "", fmt.Errorf("quarantine: list: %w",
					&FieldError{Field: "cursor", Message: "not a cursor this list issued", Err: statestore.ErrBadCursor})
			}
		}
		// Row-value comparison: SQLite 3.15+ and PostgreSQL.
		conds = append(conds, "(received_at, log_seq, pos) < (?, ?, ?)")
		args = append(args, key[0], key[1], key[2])
	}
	q := `SELECT ` + entryColumns + ` FROM quarantine_entries`
	if len(conds) > 0 {
		q += ` WHERE ` + strings.Join(conds, " AND ")
	}
	q += ` ORDER BY received_at DESC, log_seq DESC, pos DESC LIMIT ?`
	args = append(args, limit+1)
	rows, err := s.db.Query(ctx, q, args...)
	if err != nil {
		return nil, "", fmt.Errorf("quarantine: list: %w", err)
	}
	defer rows.Close()
	out := []Entry{}
	for rows.Next() {
		e, err := scanEntry(rows)
		if err != nil {
			return nil, "", fmt.Errorf("quarantine: list: %w", err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("quarantine: list: %w", err)
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		last := out[limit-1]
		next = statestore.EncodeCursor(
			strconv.FormatInt(statestore.TimeToDB(last.ReceivedAt), 10),
			strconv.FormatUint(last.LogSeq, 10),
			strconv.Itoa(last.Position))
	}
	return out, next, nil
}

// Count returns the number of entries matching f (Filter{} for all).
func (s *Store) Count(ctx context.Context, f Filter) (int, error) {
	conds, args, err := f.where()
	if err != nil {
		return 0, fmt.Errorf("quarantine: count: %w", err)
	}
	q := `SELECT COUNT(*) FROM quarantine_entries`
	if len(conds) > 0 {
		q += ` WHERE ` + strings.Join(conds, " AND ")
	}
	var n int
	if err := s.db.QueryRow(ctx, q, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("quarantine: count: %w", err)
	}
	return n, nil
}

// markChunk is how many ids one UPDATE carries.
const markChunk = 500

// MarkReplayed marks the held entries among ids as replayed, in one
// transaction, and returns how many it marked. Unknown ids and entries
// already replayed are skipped.
func (s *Store) MarkReplayed(ctx context.Context, ids ...string) (int, error) {
	if len(ids) == 0 {
		return 0, nil
	}
	now := statestore.TimeToDB(time.Now())
	total := 0
	err := s.db.Tx(ctx, func(tx *statestore.Tx) error {
		total = 0
		for start := 0; start < len(ids); start += markChunk {
			chunk := ids[start:min(start+markChunk, len(ids))]
			args := make([]any, 0, len(chunk)+3)
			args = append(args, Replayed, now, Held)
			for _, id := range chunk {
				args = append(args, id)
			}
			res, err := tx.Exec(ctx, `UPDATE quarantine_entries SET status = ?, replayed_at = ?
				WHERE status = ? AND id IN (?`+strings.Repeat(", ?", len(chunk)-1)+`)`, args...)
			if err != nil {
				return err
			}
			n, err := res.RowsAffected()
			if err != nil {
				return err
			}
			total += int(n)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("quarantine: mark %d entries replayed: %w", len(ids), err)
	}
	return total, nil
}
