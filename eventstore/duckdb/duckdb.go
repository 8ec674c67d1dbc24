// Package duckdb is the embedded, default [eventstore.Store]: events in one
// DuckDB database file under the data directory.
//
// # Layout
//
// One table, events, holds every stored event (see the migrations in
// schema.go; a schema_version table records which migrations a database has).
// Times are TIMESTAMPTZ with microsecond precision: nanoseconds are truncated
// when stored, and List's From and To filters are compared at the same
// precision (an event is in range when its stored time is). Times come back
// as UTC. Raw is stored as VARCHAR byte for byte; DuckDB strings must be
// valid UTF-8, so invalid byte sequences in Raw or in any string field are
// replaced by U+FFFD (JSON requires UTF-8, so valid events are unaffected).
//
// # Dedup
//
// An event is identified by (source_id, message_id). The table has no
// unique index (DuckDB's ART index is slow to maintain at this scale, see
// [Store.Append]); instead the store keeps, in memory, the set of 64-bit
// fingerprints (key_hash) of every stored key, loaded on [Open]. A batch's
// events whose fingerprint is not in the set are new; the few whose
// fingerprint is in the set are checked exactly against the table. Memory
// cost is about 10-20 bytes per stored event.
//
// # Concurrency
//
// A Store is safe for concurrent use. Appends are serialized (one writer);
// Get, List and Count run concurrently with each other and with an Append
// and see only committed batches.
package duckdb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	duckdbdriver "github.com/duckdb/duckdb-go/v2"

	"tandem/eventstore"
)

// ErrClosed is returned by a Store's methods after Close.
var ErrClosed = errors.New("eventstore: store closed")

// checkpointThreshold is the WAL size at which DuckDB checkpoints (writes
// the WAL's changes into the database file). DuckDB's default, 16 MiB, is
// a couple of 10,000-event batches, and every checkpoint rewrites the
// partly-filled last row group of events, so small thresholds make appends
// pay for rewriting the same rows again and again. A larger WAL costs
// replay time on open after a crash (roughly a second per 100 MB).
const checkpointThreshold = "256MB"

// Store is an [eventstore.Store] backed by DuckDB. Create it with [Open].
type Store struct {
	db *sql.DB

	// wmu serializes writers: Append, and Close against Append.
	wmu sync.Mutex
	// keys holds the fingerprint of every stored (source_id, message_id);
	// guarded by wmu.
	keys keySet

	closed atomic.Bool
}

var _ eventstore.Store = (*Store)(nil)

// Open opens (creating it if needed) the event store in the DuckDB database
// file at path, applying any pending schema migrations, and loads the dedup
// fingerprints of the stored events. A path of "" or ":memory:" opens a
// private in-memory database, for tests.
func Open(path string) (*Store, error) {
	ctx := context.Background()
	if strings.Contains(path, "?") {
		return nil, fmt.Errorf("eventstore/duckdb: open %q: path must not contain '?'", path)
	}
	connector, err := duckdbdriver.NewConnector(path, nil)
	if err != nil {
		return nil, fmt.Errorf("eventstore/duckdb: open %q: %w", path, err)
	}
	db := sql.OpenDB(connector)
	db.SetMaxIdleConns(8)
	s := &Store{db: db}
	if err := s.init(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("eventstore/duckdb: open %q: %w", path, err)
	}
	return s, nil
}

func (s *Store) init(ctx context.Context) error {
	if _, err := s.db.ExecContext(ctx, "SET GLOBAL checkpoint_threshold = '"+checkpointThreshold+"'"); err != nil {
		return fmt.Errorf("set checkpoint_threshold: %w", err)
	}
	if err := migrate(ctx, s.db); err != nil {
		return err
	}
	keys, err := loadKeys(ctx, s.db)
	if err != nil {
		return err
	}
	s.keys = keys
	return nil
}

// loadKeys reads the fingerprints of all stored events.
func loadKeys(ctx context.Context, db *sql.DB) (keySet, error) {
	var n int64
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM events`).Scan(&n); err != nil {
		return nil, fmt.Errorf("load dedup keys: %w", err)
	}
	keys := make(keySet, n)
	rows, err := db.QueryContext(ctx, `SELECT key_hash FROM events`)
	if err != nil {
		return nil, fmt.Errorf("load dedup keys: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var h uint64
		if err := rows.Scan(&h); err != nil {
			return nil, fmt.Errorf("load dedup keys: %w", err)
		}
		keys[h] = struct{}{}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load dedup keys: %w", err)
	}
	return keys, nil
}

// Count returns the number of stored events.
func (s *Store) Count(ctx context.Context) (int64, error) {
	if s.closed.Load() {
		return 0, ErrClosed
	}
	var n int64
	if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM events`).Scan(&n); err != nil {
		return 0, fmt.Errorf("eventstore/duckdb: count: %w", err)
	}
	return n, nil
}

// Close waits for a running Append, then closes the database. Data of
// completed Appends is durable. Close is idempotent.
func (s *Store) Close() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.closed.Swap(true) {
		return nil
	}
	s.keys = nil
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("eventstore/duckdb: close: %w", err)
	}
	return nil
}

// keySet is a set of dedup fingerprints.
type keySet map[uint64]struct{}
