package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/ext"

	"tandem/event"
	"tandem/eventstore"
)

// pending is one event of a batch, prepared for storing.
type pending struct {
	e          *event.Event
	profileKey string
	ts         int64 // e.Timestamp in Unix microseconds
}

type key struct{ src, msg string }

// eventColumns are the columns Append writes, in the order of row values.
var eventColumns = append([]string{
	"profile_key String", "timestamp Int64", "source_id String", "message_id String",
	"type String", "name String", "user_id String", "anonymous_id String",
	"group_id String", "previous_id String", "original_timestamp Nullable(Int64)",
	"sent_at Nullable(Int64)", "received_at Int64", "raw String", "stored_at Int64",
}, touchColumns...)

// Append stores events; see [eventstore.Store.Append].
//
// ClickHouse has no unique constraints and no transactions, so:
//
//  1. repeats within the batch are dropped in Go, the first one wins;
//  2. under the database's write lock (one Append at a time per database
//     in this process), the batch's keys are looked up in event_keys
//     through its primary index, and the few found are confirmed in
//     events (found through its primary index by the profile key and
//     time the key row records): confirmed keys are duplicates;
//  3. the new events' key rows are inserted, then the events themselves,
//     each as one INSERT … SELECT from an external table (one block).
//
// Keys go in first so that a stored event always has its key row: a key
// row without an event (its INSERT failed) is harmless, step 2 confirms
// every candidate. A MergeTree INSERT of one block is atomic per
// partition: all the rows of a month become visible at once, as one part,
// or none do. So a batch within one month (the usual case: a pipeline
// batch holds recent events) is all or nothing; a batch spanning months
// is one part per month. If that INSERT fails, Append checks what was
// stored, completes a partial batch once, and otherwise reports the error
// with some months stored: retrying the batch (as the pipeline does)
// stores the rest exactly once, through step 2.
//
// The caller's ctx can stop an Append until the events' INSERT is sent,
// not after: a client that abandons an INSERT cannot know whether the
// server stored it. So an Append that returns an error stored nothing,
// except in the multi-month case above, and one that returns nil stored
// everything, even if ctx ended meanwhile. The INSERT is bounded by
// insertTimeout instead.
//
// Two processes (tandem nodes) appending the same new event at the same
// moment can both pass step 2 before either inserts: then two copies are
// stored. The pipeline makes this rare: each log record is processed by
// one node at a time and redelivered only after a crash or its AckWait,
// so the race needs a redelivery to overlap the first attempt's own
// Append. Get and List then return the copy stored first (stored_at)
// and Count counts both.
func (s *Store) Append(ctx context.Context, events []event.Event) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, s.wrap("append", err)
	}
	if len(events) == 0 {
		return 0, nil
	}
	if s.closed.Load() {
		return 0, ErrClosed
	}
	batch := prepare(events)
	if err := s.acquire(ctx); err != nil {
		return 0, s.wrap("append", err)
	}
	defer s.release()
	if s.closed.Load() {
		return 0, ErrClosed
	}
	fresh, err := s.dropStored(ctx, batch)
	if err != nil {
		return 0, s.wrap("append: check duplicates", err)
	}
	if len(fresh) == 0 {
		return 0, nil
	}
	if err := s.insertKeys(ctx, fresh); err != nil {
		return 0, s.wrap("append: insert keys", err)
	}
	if err := ctx.Err(); err != nil {
		return 0, s.wrap("append", err)
	}
	if err := s.insertEvents(fresh); err != nil {
		return s.settle(fresh, err)
	}
	return len(fresh), nil
}

// settle decides the outcome of an events INSERT that failed with err:
// the server may have stored some months of the batch (or, if the
// connection broke, all of it).
func (s *Store) settle(fresh []*pending, err error) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rest, checkErr := s.dropStored(ctx, fresh)
	switch {
	case checkErr != nil:
		return 0, s.wrap(fmt.Sprintf("append %d events (outcome unknown: %v)", len(fresh), checkErr), err)
	case len(rest) == 0:
		return len(fresh), nil // stored after all
	case len(rest) == len(fresh):
		return 0, s.wrap(fmt.Sprintf("append %d events", len(fresh)), err)
	}
	// Some months were stored: complete the batch once.
	if err2 := s.insertEvents(rest); err2 != nil {
		return 0, s.wrap(fmt.Sprintf("append %d events: %d stored, the rest failed (a retry stores them once)", len(fresh), len(fresh)-len(rest)), errors.Join(err, err2))
	}
	return len(fresh), nil
}

// prepare drops repeats within events (the first wins) and computes each
// event's profile key and time.
func prepare(events []event.Event) []*pending {
	out := make([]*pending, 0, len(events))
	seen := make(map[key]struct{}, len(events))
	for i := range events {
		e := &events[i]
		k := key{e.SourceID, e.MessageID}
		if _, dup := seen[k]; dup {
			continue
		}
		seen[k] = struct{}{}
		out = append(out, &pending{e: e, profileKey: eventstore.ProfileKey(e.UserID, e.AnonymousID), ts: e.Timestamp.UnixMicro()})
	}
	return out
}

// dropStored returns the events of batch that are not stored.
func (s *Store) dropStored(ctx context.Context, batch []*pending) ([]*pending, error) {
	keys, err := newTable("_batch", "message_id String", "source_id String")
	if err != nil {
		return nil, err
	}
	for _, p := range batch {
		if err := keys.Append(p.e.MessageID, p.e.SourceID); err != nil {
			return nil, err
		}
	}
	// The plain IN on message_id is what the primary index can use; the
	// pair IN is the exact test.
	rows, err := s.conn.Query(ch.Context(ctx, ch.WithExternalTable(keys)), `SELECT profile_key, timestamp, source_id, message_id FROM `+s.table("event_keys")+`
		PREWHERE message_id IN (SELECT message_id FROM _batch)
		WHERE (message_id, source_id) IN (SELECT message_id, source_id FROM _batch)`)
	if err != nil {
		return nil, err
	}
	cand, err := newTable("_cand", "profile_key String", "timestamp Int64", "source_id String", "message_id String")
	if err != nil {
		rows.Close()
		return nil, err
	}
	n := 0
	for rows.Next() {
		var pk, src, msg string
		var ts int64
		if err := rows.Scan(&pk, &ts, &src, &msg); err != nil {
			rows.Close()
			return nil, err
		}
		if err := cand.Append(pk, ts, src, msg); err != nil {
			rows.Close()
			return nil, err
		}
		n++
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if n == 0 {
		return batch, nil
	}
	// Candidates are confirmed where their events would be: the key row's
	// profile key and time lead to them through the events table's index.
	rows, err = s.conn.Query(ch.Context(ctx, ch.WithExternalTable(cand)), `SELECT DISTINCT source_id, message_id FROM `+s.table("events")+`
		PREWHERE profile_key IN (SELECT profile_key FROM _cand)
		WHERE (profile_key, timestamp, source_id, message_id) IN (SELECT profile_key, timestamp, source_id, message_id FROM _cand)`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	stored := make(map[key]struct{}, n)
	for rows.Next() {
		var k key
		if err := rows.Scan(&k.src, &k.msg); err != nil {
			return nil, err
		}
		stored[k] = struct{}{}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	fresh := batch[:0:0]
	for _, p := range batch {
		if _, ok := stored[key{p.e.SourceID, p.e.MessageID}]; !ok {
			fresh = append(fresh, p)
		}
	}
	return fresh, nil
}

// insertKeys writes the key rows of rows.
func (s *Store) insertKeys(ctx context.Context, rows []*pending) error {
	t, err := newTable("_keys", "message_id String", "source_id String", "profile_key String", "timestamp Int64")
	if err != nil {
		return err
	}
	for _, p := range rows {
		if err := t.Append(p.e.MessageID, p.e.SourceID, p.profileKey, p.ts); err != nil {
			return err
		}
	}
	return s.conn.Exec(ch.Context(ctx, ch.WithExternalTable(t)), `INSERT INTO `+s.table("event_keys")+
		` (message_id, source_id, profile_key, timestamp) SELECT message_id, source_id, profile_key, timestamp FROM _keys`)
}

// insertEvents writes rows to the events table in one INSERT, not
// interrupted by any caller's context (see Append).
func (s *Store) insertEvents(rows []*pending) error {
	t, err := eventTable(rows, time.Now().UnixMicro())
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), insertTimeout)
	defer cancel()
	return s.conn.Exec(ch.Context(ctx, ch.WithExternalTable(t)), `INSERT INTO `+s.table("events")+` (`+eventColumnNames+`) SELECT `+eventColumnNames+` FROM _rows`)
}

var eventColumnNames = func() string {
	names := make([]string, len(eventColumns))
	for i, c := range eventColumns {
		names[i], _, _ = strings.Cut(c, " ")
	}
	return strings.Join(names, ", ")
}()

// eventTable returns rows as the external table _rows.
func eventTable(rows []*pending, storedAt int64) (*ext.Table, error) {
	t, err := newTable("_rows", eventColumns...)
	if err != nil {
		return nil, err
	}
	for _, p := range rows {
		e := p.e
		err := t.Append(append([]any{p.profileKey, p.ts, e.SourceID, e.MessageID,
			e.Type, e.Name, e.UserID, e.AnonymousID,
			e.GroupID, e.PreviousID, optMicros(e.OriginalTimestamp),
			optMicros(e.SentAt), e.ReceivedAt.UnixMicro(), e.Raw, storedAt}, touchValues(e)...)...)
		if err != nil {
			return nil, fmt.Errorf("event %s/%s: %w", e.SourceID, e.MessageID, err)
		}
	}
	return t, nil
}

// optMicros is t in Unix microseconds, or nil (NULL) when t is zero.
func optMicros(t time.Time) *int64 {
	if t.IsZero() {
		return nil
	}
	v := t.UnixMicro()
	return &v
}
