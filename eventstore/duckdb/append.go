package duckdb

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"database/sql/driver"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
	"unsafe"

	duckdbdriver "github.com/duckdb/duckdb-go/v2"

	"tandem/event"
)

// appendColumns are the columns Append writes, in writeRow's order. Columns
// added by later migrations get their DEFAULT (or NULL).
var appendColumns = append([]string{
	"source_id", "message_id", "type", "name", "user_id", "anonymous_id",
	"group_id", "previous_id", "timestamp", "original_timestamp", "sent_at",
	"received_at", "raw", "key_hash",
}, append(append([]string(nil), touchColumns...), valueColumns...)...)

// pending is one event of a batch, prepared for storing: what its row
// needs that takes work (UTF-8 checks, the JSON read of its facts, its
// key's SHA-256) is done in prepare, which [Store.Prepare] lets a caller
// run ahead of Stage, outside wmu.
type pending struct {
	e        *event.Event
	idx      int    // e's index in the events given
	src, msg string // UTF-8-clean SourceID and MessageID
	hash     uint64 // keyHash(src, msg)
	raw      string // e.Raw, UTF-8-clean (rawString)
	touch    touchRow
	vals     []optString // the value columns (factsOf)
}

type key struct{ src, msg string }

// Append stores events atomically; see [eventstore.Store.Append].
//
// Design: the table has no unique index. Measured on this project's 2-core
// machine, a PRIMARY KEY (source_id, message_id) with INSERT ... ON CONFLICT
// DO NOTHING fell from ~55,000 events/s on an empty table to ~10,000/s with
// 3 million rows, and each checkpoint rewrote the whole ART index (15 s at
// 3M rows); a 128-bit hash key behaved the same. Instead:
//
//  1. duplicates within the batch are dropped in Go, first one wins;
//  2. each event's fingerprint (a prefix of keyHash) is looked up in the
//     in-memory filter of stored fingerprints (fpSet): absent means new,
//     for sure; present (a fingerprint collision, about n/2^32 per event,
//     or a true duplicate), its keyHash is looked up in the exact key
//     index on disk (keyIndex): absent means new, for sure;
//  3. events whose keyHash is in the index (true duplicates, erased keys,
//     64-bit collisions) are checked exactly with a query on the full
//     key_hash for the whole batch, then on (source_id, message_id): in
//     the newest rows first, in the rest only for those not found there
//     (see storedKeys);
//  4. the new events, sorted by timestamp, go through DuckDB's appender
//     (as data chunks, see chunk.go) in one transaction: all of them are
//     committed or none.
//
// So a batch of new events costs no reads of the table at all, and one of
// duplicates of recent events (a redelivery after a crash, a client's
// retry) a scan of the newest rows' key_hash; duplicates of older events
// a scan of the whole column.
func (s *Store) Append(ctx context.Context, events []event.Event) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("eventstore/duckdb: append: %w", err)
	}
	if len(events) == 0 {
		return 0, nil
	}
	batch := prepare(events)

	s.threads.yield(ctx) // reader priority (threads.go)
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.closed.Load() {
		return 0, ErrClosed
	}
	s.flushStaged()
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return 0, fmt.Errorf("eventstore/duckdb: append: %w", err)
	}
	failed := true
	defer func() {
		if failed {
			// After an error (often a cancellation, which interrupts
			// DuckDB asynchronously) the connection's state is not
			// trusted: have database/sql close it instead of reusing it.
			conn.Raw(func(any) error { return driver.ErrBadConn }) //nolint:errcheck // always ErrBadConn
		}
		conn.Close()
	}()

	fresh, err := s.dropStored(ctx, conn, batch)
	if err != nil {
		return 0, fmt.Errorf("eventstore/duckdb: append: %w", err)
	}
	if len(fresh) == 0 {
		failed = false
		return 0, nil
	}
	// Time-ordered rows keep each row group's min/max timestamp narrow, so
	// time-range queries skip most of the table.
	slices.SortStableFunc(fresh, func(a, b *pending) int { return a.e.Timestamp.Compare(b.e.Timestamp) })

	err = conn.Raw(func(dc any) error { return s.insert(ctx, dc.(driver.Conn), fresh) })
	if err != nil {
		return 0, fmt.Errorf("eventstore/duckdb: append %d events: %w", len(fresh), err)
	}
	s.tableRows += int64(len(fresh))
	failed = false
	return len(fresh), nil
}

// prepare cleans the key strings, drops repeats within events (the first
// wins), computes fingerprints and reads each remaining event's facts
// (factsOf) and raw JSON for its row. It depends on events alone, and
// takes no lock.
func prepare(events []event.Event) []*pending {
	out := make([]*pending, 0, len(events))
	all := make([]pending, len(events)) // one allocation, not one per event
	nv := len(valueColumns)
	vals := make([]optString, len(events)*nv)
	rep := repeats{first: make(map[uint64]int32, len(events))}
	var buf []byte
	for i := range events {
		e := &events[i]
		p := &all[i]
		*p = pending{e: e, idx: i, src: validUTF8(e.SourceID), msg: validUTF8(e.MessageID)}
		p.hash, buf = keyHash(buf, p.src, p.msg)
		if rep.repeat(all, i) {
			continue
		}
		p.raw = rawString(e.Raw)
		p.vals = vals[i*nv : (i+1)*nv : (i+1)*nv]
		p.touch = factsOf(e, p.vals)
		out = append(out, p)
	}
	return out
}

// repeats finds the events of a batch whose key an earlier event of it
// has, by the keys' hashes, which the rows need anyway (a map of uint64
// is cheaper than one of string pairs): first holds the index of the
// first event of each hash, others the keys of later events whose hash
// is another key's (a 64-bit collision), so that it stays exact.
type repeats struct {
	first  map[uint64]int32
	others map[key]struct{}
}

// repeat reports whether all[i] (its key and hash set) repeats the key
// of one of all[:i] (each passed to repeat before), recording it if not.
func (r *repeats) repeat(all []pending, i int) bool {
	p := &all[i]
	j, ok := r.first[p.hash]
	if !ok {
		r.first[p.hash] = int32(i)
		return false
	}
	if q := &all[j]; q.src == p.src && q.msg == p.msg {
		return true
	}
	k := key{p.src, p.msg}
	if _, dup := r.others[k]; dup {
		return true
	}
	if r.others == nil {
		r.others = make(map[key]struct{})
	}
	r.others[k] = struct{}{}
	return false
}

// keyHash returns the dedup fingerprint of a key: the first 8 bytes, big
// endian, of SHA-256(len(src) in decimal ":" src msg). SHA-256 rather than a
// faster hash so that clients cannot craft colliding messageIds (which would
// only cost verification queries, never correctness). buf is scratch space.
func keyHash(buf []byte, src, msg string) (uint64, []byte) {
	buf = strconv.AppendInt(buf[:0], int64(len(src)), 10)
	buf = append(buf, ':')
	buf = append(buf, src...)
	buf = append(buf, msg...)
	sum := sha256.Sum256(buf)
	return binary.BigEndian.Uint64(sum[:8]), buf
}

// dropStored returns the events of batch not already stored.
func (s *Store) dropStored(ctx context.Context, conn *sql.Conn, batch []*pending) ([]*pending, error) {
	maybe, err := s.maybeStored(batch)
	if err != nil {
		return nil, fmt.Errorf("check duplicates: %w", err)
	}
	if len(maybe) == 0 {
		return batch, nil
	}
	s.checkedIDs.Add(int64(len(maybe)))
	stored, err := s.storedKeys(ctx, conn, batch, maybe)
	if err != nil {
		return nil, fmt.Errorf("check duplicates: %w", err)
	}
	fresh := batch[:0:0]
	for _, p := range batch {
		if _, ok := stored[key{p.src, p.msg}]; !ok {
			fresh = append(fresh, p)
		}
	}
	return fresh, nil
}

// insert appends rows in one transaction on dc.
func (s *Store) insert(ctx context.Context, dc driver.Conn, rows []*pending) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	// BEGIN without ctx: a cancellation racing with it can leave DuckDB
	// inside a transaction while the driver reports an error.
	tx, err := dc.(driver.ConnBeginTx).BeginTx(context.Background(), driver.TxOptions{})
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := s.appendRows(ctx, dc, rows); err != nil {
		if rbErr := tx.Rollback(); rbErr != nil {
			return errors.Join(err, fmt.Errorf("rollback: %w", rbErr))
		}
		return err
	}
	// Record the fingerprints and sources before committing: if the commit
	// fails after all, extra entries only cost a verification query, while
	// a missing one would let a duplicate in, or hide an event from Get.
	if err := s.addKeys(rows, true); err != nil {
		if rbErr := tx.Rollback(); rbErr != nil {
			return errors.Join(err, fmt.Errorf("rollback: %w", rbErr))
		}
		return err
	}
	if err := s.addSources(rows); err != nil {
		if rbErr := tx.Rollback(); rbErr != nil {
			return errors.Join(err, fmt.Errorf("rollback: %w", rbErr))
		}
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// appendKinds are the kinds of appendColumns' values.
var appendKinds = func() []colKind {
	k := []colKind{
		colVarchar, colVarchar, colVarchar, colVarchar, colVarchar, colVarchar, colVarchar, colVarchar, // source_id ... previous_id
		colTimestampTZ, colTimestampTZ, colTimestampTZ, colTimestampTZ, // timestamp ... received_at
		colVarchar, colUBigint, // raw, key_hash
		colUTinyint, // touch
	}
	for range touchColumns[1:] {
		k = append(k, colVarchar)
	}
	for range valueColumns {
		k = append(k, colVarchar)
	}
	return k
}()

// appendRows writes rows, through data chunks (chunk.go), in dc's open
// transaction.
func (s *Store) appendRows(ctx context.Context, dc driver.Conn, rows []*pending) error {
	a := arenas.Get().(*arena)
	defer arenas.Put(a)
	w, err := newChunkWriter(dc, "events", appendColumns, appendKinds, a)
	if err != nil {
		return fmt.Errorf("appender: %w", err)
	}
	defer w.close()
	for i, p := range rows {
		if i%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		if err := writeRow(w, p); err != nil {
			return fmt.Errorf("append row: %w", err)
		}
		if err := w.endRow(); err != nil {
			return fmt.Errorf("append rows: %w", err)
		}
	}
	if err := w.flush(ctx); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	// A flush that finished despite a cancelled ctx still must not commit:
	// the caller is told the batch failed.
	return ctx.Err()
}

// writeRow writes p's columns, in appendColumns order, to w's row.
func writeRow(w *chunkWriter, p *pending) error {
	e := p.e
	w.str(0, p.src)
	w.str(1, p.msg)
	w.str(2, validUTF8(e.Type))
	w.optStr(3, validUTF8(e.Name))
	w.optStr(4, validUTF8(e.UserID))
	w.optStr(5, validUTF8(e.AnonymousID))
	w.optStr(6, validUTF8(e.GroupID))
	w.optStr(7, validUTF8(e.PreviousID))
	if err := w.ts(8, e.Timestamp); err != nil {
		return err
	}
	if err := w.optTS(9, e.OriginalTimestamp); err != nil {
		return err
	}
	if err := w.optTS(10, e.SentAt); err != nil {
		return err
	}
	if err := w.ts(11, e.ReceivedAt); err != nil {
		return err
	}
	w.str(12, p.raw)
	w.u64(13, p.hash)
	const touchCol = 14
	w.u8(touchCol, p.touch.bits)
	for j, v := range p.touch.strs {
		w.optStr(touchCol+1+j, v)
	}
	const valueCol = touchCol + 7
	for j, v := range p.vals {
		if v.ok {
			w.str(valueCol+j, v.s)
		} else {
			w.nullStr(valueCol + j)
		}
	}
	return nil
}

func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// rawString returns b as a string, with invalid UTF-8 replaced: without
// a copy when it is valid, for the chunk writer copies it.
func rawString(b []byte) string {
	if utf8.Valid(b) {
		return unsafe.String(unsafe.SliceData(b), len(b))
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

// discard drops a driver appender's buffered rows without flushing them.
func discard(app *duckdbdriver.Appender) error {
	return errors.Join(app.Clear(), app.Close())
}
