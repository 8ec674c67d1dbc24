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
// fingerprint is in the set are checked exactly against the table. The set
// costs about 25 bytes of memory per stored event (72 MB at 3 million) and
// takes about 1.5 s per 3 million events to load on Open.
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
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	duckdbdriver "github.com/duckdb/duckdb-go/v2"

	"tandem/eventstore"
)

// ErrClosed is returned by a Store's methods after Close.
var ErrClosed = errors.New("eventstore: store closed")

// checkpointThreshold is the WAL size at which DuckDB checkpoints (writes
// the WAL's changes, compressed, into the database file), inside the commit
// of the Append that crosses it. Checkpoints have a large fixed cost (the
// partly-filled last row group of events is compressed again each time), so
// DuckDB's default of 16 MiB, a couple of batches, is ruinous: measured with
// 10,000-event batches, 16 MiB gave 39,000 events/s, 64 MiB 87,000/s,
// 256 MiB 97,000/s. The price of a larger WAL: an Append that triggers the
// checkpoint takes 1-3 s (about 400,000 events' worth at 256 MiB), and
// reopening after a crash replays the WAL (about 1.5 s per 200 MB).
const checkpointThreshold = "256MB"

// Store is an [eventstore.Store] backed by DuckDB. Create it with [Open].
type Store struct {
	db   *sql.DB
	file string // absolute path of the database file; "" in memory

	// wmu serializes writers: Append, and Close against Append.
	wmu sync.Mutex
	// keys holds the fingerprint of every stored (source_id, message_id);
	// guarded by wmu.
	keys keySet

	// sources holds every stored source_id (a superset: it may hold a
	// source whose batch failed), so that Get without a source can look
	// events up by key_hash.
	srcMu   sync.RWMutex
	sources map[string]struct{}

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
	var file string
	if path != "" && path != ":memory:" {
		// The driver shares one database instance between all openers of
		// a file in a process; two Stores on it would each keep their own
		// dedup set and let duplicates in.
		abs, err := filepath.Abs(path)
		if err != nil {
			return nil, fmt.Errorf("eventstore/duckdb: open %q: %w", path, err)
		}
		openFilesMu.Lock()
		defer openFilesMu.Unlock()
		if openFiles[abs] {
			return nil, fmt.Errorf("eventstore/duckdb: open %q: already open in this process", path)
		}
		file = abs
	}
	connector, err := duckdbdriver.NewConnector(path, nil)
	if err != nil {
		return nil, fmt.Errorf("eventstore/duckdb: open %q: %w", path, err)
	}
	db := sql.OpenDB(connector)
	db.SetMaxIdleConns(8)
	s := &Store{db: db, file: file}
	if err := s.init(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("eventstore/duckdb: open %q: %w", path, err)
	}
	if file != "" {
		openFiles[file] = true
	}
	return s, nil
}

// openFiles holds the database files open in this process.
var (
	openFilesMu sync.Mutex
	openFiles   = map[string]bool{}
)

func (s *Store) init(ctx context.Context) error {
	// One DuckDB worker thread: inside `tandem serve` the event store
	// shares the machine with collection, and its extra threads cost more
	// CPU than they gain. Measured with `tandem bench ingest` on 2 cores:
	// threads=1 gave 123k events/s collected (p99 45 ms) and 57k/s stored,
	// threads=2 gave 103k/s (p99 53 ms) and 41k/s stored.
	if _, err := s.db.ExecContext(ctx, "SET GLOBAL threads = 1"); err != nil {
		return fmt.Errorf("set threads: %w", err)
	}
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
	s.sources = make(map[string]struct{})
	rows, err := s.db.QueryContext(ctx, `SELECT DISTINCT source_id FROM events`)
	if err != nil {
		return fmt.Errorf("load sources: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var src string
		if err := rows.Scan(&src); err != nil {
			return fmt.Errorf("load sources: %w", err)
		}
		s.sources[src] = struct{}{}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("load sources: %w", err)
	}
	return nil
}

// addSources records the sources of rows.
func (s *Store) addSources(rows []*pending) {
	s.srcMu.RLock()
	var missing []string
	for _, p := range rows {
		if _, ok := s.sources[p.src]; !ok && !slices.Contains(missing, p.src) {
			missing = append(missing, p.src)
		}
	}
	s.srcMu.RUnlock()
	if len(missing) == 0 {
		return
	}
	s.srcMu.Lock()
	for _, src := range missing {
		s.sources[src] = struct{}{}
	}
	s.srcMu.Unlock()
}

// sourceList returns the known sources, or nil if there are more than max.
func (s *Store) sourceList(max int) []string {
	s.srcMu.RLock()
	defer s.srcMu.RUnlock()
	if len(s.sources) > max {
		return nil
	}
	out := make([]string, 0, len(s.sources))
	for src := range s.sources {
		out = append(out, src)
	}
	return out
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

// Ping checks the database handle: an embedded store answers while it is
// open.
func (s *Store) Ping(ctx context.Context) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if err := s.db.PingContext(ctx); err != nil {
		return fmt.Errorf("eventstore/duckdb: ping: %w", err)
	}
	return nil
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
	err := s.db.Close()
	if s.file != "" {
		openFilesMu.Lock()
		delete(openFiles, s.file)
		openFilesMu.Unlock()
	}
	if err != nil {
		return fmt.Errorf("eventstore/duckdb: close: %w", err)
	}
	return nil
}

// keySet is a set of dedup fingerprints.
type keySet map[uint64]struct{}
