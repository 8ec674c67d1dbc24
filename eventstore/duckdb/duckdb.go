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
// [Store.Append]); instead dedup has two parts, both built from each key's
// 64-bit fingerprint, key_hash (dedup.go):
//
//   - in memory, a compact filter of the stored keys (fpSet): a 32-bit
//     prefix of each key_hash, sorted and Golomb-Rice coded in 65,536
//     partitions: 2.1 bytes per stored event at 10 million, 1.5 at 30
//     million (measured, 7 MiB of fixed partition state included), about
//     1.1 to 1.2 at 100 million. A batch's events whose
//     prefix is not in it are new, for sure; the others (redeliveries, and
//     prefix collisions: about n/2^32 per new event, 0.7% at 30 million
//     stored, 2.3% at 100 million) go to
//   - the exact key index (keyIndex, keyindex.go): every stored key_hash,
//     in sorted runs in the directory events.duckdb.keys beside the file,
//     merged in the background, the newest ones in memory; a lookup reads
//     one 4 KiB block per run. Only the keys found there (true duplicates,
//     keys of erased or expired events, 64-bit collisions) are checked
//     against the table, with a query per Append on the newest million
//     rows' key_hash, and another on the rest of the column for the keys
//     not found there (duplicates of older events).
//
// The index holds a superset of the stored keys: a batch's hashes are
// written to its log, and synced, before the batch commits, so no crash
// can leave a stored event out of it; extra hashes (a batch that never
// committed, erased events) cost an exact check, never an event. Open reads
// the index from its files and builds the filter from it (sequential
// reads, about 8 bytes per stored event); it rebuilds the index from the
// table (one scan of key_hash per 4 million rows) when the
// index is missing, was made for another database (a token in the
// dedup_index table), holds fewer hashes than the table has rows, or holds
// more than twice as many (erased and expired keys). [FilterBytes] reports
// the memory of the filter and the index; [PaceGC] keeps Go's garbage
// collector from giving it headroom (doubling it) as it would any other
// live memory.
//
// # Staged appends
//
// [Store.Stage] appends into a transaction kept open across calls and
// commits it whenever the table ends on a row group boundary (122,880
// rows): DuckDB then writes the rows straight into the file, compressed,
// instead of into the write-ahead log and again at a checkpoint (see
// stage.go for the figures). Every other writer of events commits the
// staged rows first.
//
// # Concurrency
//
// A Store is safe for concurrent use. Appends are serialized (one writer);
// Get, List and Count run concurrently with each other and with an Append
// and see only committed batches (not staged ones).
package duckdb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"path/filepath"
	"runtime/debug"
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

	// wmu serializes writers of events: Append, and Close against Append.
	wmu sync.Mutex
	// lmu serializes writers of profile_links (LinkProfiles), apart from
	// wmu: identity's links of one pipeline batch are written while the
	// events of the batch before are appended, each in its own DuckDB
	// transaction on its own table. Who takes both (Close, Erase) takes
	// wmu first.
	lmu sync.Mutex
	// keys holds a fingerprint of every stored (source_id, message_id),
	// and of every staged one; guarded by wmu.
	keys *fpSet
	// staged is the transaction Stage keeps open (stage.go), nil if
	// none; stagedErr the error of another writer's commit of it, for
	// the next Stage or Commit to report; tableRows about how many rows
	// the table has, to commit on row group boundaries. Guarded by wmu.
	staged    *stagedTx
	stagedErr error
	tableRows int64
	groupRows int // rowGroupSize, but in tests
	// fpWidth is the fingerprint width of keys; fpMask, all ones but in
	// tests, is applied to hashes before the filter sees them (tests keep
	// a few bits to make fingerprint collisions frequent).
	fpWidth uint
	fpMask  uint64
	// recentRows is how many of the newest rows the exact dedup check
	// reads first (storedKeys): recentRows, but in tests.
	recentRows int64
	// index is the exact on-disk index of the stored keys' hashes
	// (keyindex.go, dedup.go); guarded by wmu. indexCounted is its memory
	// as counted into FilterBytes; indexRebuilt tells whether Open
	// rebuilt it from the table.
	index        *keyIndex
	indexCounted int64
	indexRebuilt bool
	// dedup counts the filter's hits, the index's block reads and the
	// exact checks against the table; read by DedupStats.
	filterHits, indexReads   atomic.Int64
	checkedIDs, checkBatches atomic.Int64

	// sources holds every stored source_id (a superset: it may hold a
	// source whose batch failed, or whose events were erased), so that
	// Get without a source can look events up by key_hash. The table
	// event_sources holds the same list durably: a new source is written
	// there before its first rows commit (addKeys), and Open reads it.
	srcMu   sync.RWMutex
	sources map[string]struct{}

	// threads sets DuckDB's worker threads around queries (threads.go).
	threads *threadScheduler

	closed atomic.Bool

	// Compaction after erasures (compact.go): erased counts Erase calls
	// (with keys), compacted the value of erased the last
	// compaction covered; cmu lets one compaction run at a time.
	cmu sync.Mutex
	// swap is held by reads (Get, List, Count, ProfileLinks) and, for
	// writing, by a compaction while it swaps the files, so that no read
	// of the store meets the moment the file is not attached.
	swap      sync.RWMutex
	erased    atomic.Uint64
	compacted uint64
}

var _ eventstore.Store = (*Store)(nil)

// Open opens (creating it if needed) the event store in the DuckDB database
// file at path, applying any pending schema migrations, and loads the dedup
// fingerprints of the stored events. A path of "" or ":memory:" opens a
// private in-memory database, for tests.
func Open(path string) (*Store, error) {
	return open(path, openOptions{})
}

// OpenWithMemoryLimit is [Open] with DuckDB's memory_limit (its buffer
// pool, e.g. "256MB") set before anything is read; Open leaves DuckDB's
// default, 80% of the machine's memory.
func OpenWithMemoryLimit(path, limit string) (*Store, error) {
	return open(path, openOptions{memoryLimit: limit})
}

// openOptions are test hooks of open; zero fields take the defaults.
type openOptions struct {
	fpWidth   uint
	fpMask    uint64
	indexMask uint64 // applied to the key index's hashes; all ones but in tests
	loadChunk int64  // hashes handed to the filter at a time while loading
	flushLen  int    // the key index's recent hashes held before a run is written
	// rebuildChunk is how many hashes a rebuild of the key index sorts
	// in memory at a time.
	rebuildChunk int
	memoryLimit  string
	groupRows    int
	recentRows   int64
}

func open(path string, o openOptions) (*Store, error) {
	if o.fpWidth == 0 {
		o.fpWidth = defaultWidth
	}
	if o.fpMask == 0 {
		o.fpMask = ^uint64(0)
	}
	if o.indexMask == 0 {
		o.indexMask = o.fpMask
	}
	if o.loadChunk == 0 {
		o.loadChunk = 1 << 20
	}
	if o.flushLen == 0 {
		o.flushLen = defaultFlushLen
	}
	if o.rebuildChunk == 0 {
		o.rebuildChunk = 4 << 20
	}
	if o.groupRows == 0 {
		o.groupRows = rowGroupSize
	}
	if o.recentRows == 0 {
		o.recentRows = recentRows
	}
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
	// A file is attached to an in-memory database, as catalog fileCatalog,
	// which every connection uses by default, rather than opened as the
	// main database: an erasure can then replace the file by a compacted
	// copy under the same name while the handle (and the analytics
	// backends sharing it) stay (see compact.go).
	dsn, initConn := path, func(driver.ExecerContext) error { return nil }
	if file != "" {
		dsn = ""
		initConn = func(e driver.ExecerContext) error {
			ctx := context.Background()
			if _, err := e.ExecContext(ctx, "ATTACH IF NOT EXISTS "+quote(file)+" AS "+fileCatalog, nil); err != nil {
				return err
			}
			_, err := e.ExecContext(ctx, "USE "+fileCatalog, nil)
			return err
		}
	}
	connector, err := duckdbdriver.NewConnector(dsn, initConn)
	if err != nil {
		return nil, fmt.Errorf("eventstore/duckdb: open %q: %w", path, err)
	}
	db := sql.OpenDB(connector)
	db.SetMaxIdleConns(8)
	if o.memoryLimit != "" {
		if _, err := db.ExecContext(ctx, "SET GLOBAL memory_limit = ?", o.memoryLimit); err != nil {
			db.Close()
			return nil, fmt.Errorf("eventstore/duckdb: open %q: set memory_limit: %w", path, err)
		}
	}
	s := &Store{db: db, file: file, fpWidth: o.fpWidth, fpMask: o.fpMask, groupRows: o.groupRows, recentRows: o.recentRows}
	if err := s.init(ctx, o); err != nil {
		db.Close()
		return nil, fmt.Errorf("eventstore/duckdb: open %q: %w", path, err)
	}
	if file != "" {
		openFiles[file] = true
	}
	s.threads = newThreadScheduler(db, processCPU)
	return s, nil
}

// openFiles holds the database files open in this process.
var (
	openFilesMu sync.Mutex
	openFiles   = map[string]bool{}
)

func (s *Store) init(ctx context.Context, o openOptions) (err error) {
	// One DuckDB worker thread (queries get more while they run, see
	// threads.go): inside `tandem serve` the event store
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
	// DuckDB's allocator keeps what a task freed for reuse until the
	// task's peak passes allocator_flush_threshold (128 MiB by default, as
	// large as a node's whole buffer pool), and returns free pages only
	// when it allocates again: a node's appends left 20-25 MiB more
	// resident at 100 million events (`tandem bench dedup --node`,
	// 2026-12-03). A lower threshold and the allocator's background
	// threads return it.
	for _, q := range []string{"SET GLOBAL allocator_flush_threshold = '8MiB'", "SET GLOBAL allocator_background_threads = true"} {
		if _, err := s.db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	if s.file != "" {
		// Where a query larger than memory spills: beside the file, as
		// for a database opened as the main one (the main database is
		// in memory here, whose default is .tmp in the working
		// directory).
		if _, err := s.db.ExecContext(ctx, "SET GLOBAL temp_directory = "+quote(s.file+".tmp")); err != nil {
			return fmt.Errorf("set temp_directory: %w", err)
		}
	}
	if err := migrate(ctx, s.db); err != nil {
		return err
	}
	if _, err := s.fillTouches(ctx); err != nil {
		return fmt.Errorf("fill touches: %w", err)
	}
	if err := s.openDedup(ctx, o); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			s.closeDedup()
		}
	}()
	if err := s.countRows(ctx); err != nil {
		return err
	}
	return s.loadSources(ctx)
}

// loadSources reads the list of sources from event_sources. After a
// rebuild of the key index, which means rows were written to the table
// other than by this package (in SQL, by a tool filling a store), it
// first adds the table's sources to the list: one scan of source_id, at
// an open that scanned key_hash already. The caller is init.
func (s *Store) loadSources(ctx context.Context) error {
	if s.indexRebuilt {
		if _, err := s.db.ExecContext(ctx, `INSERT OR IGNORE INTO event_sources SELECT DISTINCT source_id FROM events`); err != nil {
			return fmt.Errorf("load sources: %w", err)
		}
	}
	s.sources = make(map[string]struct{})
	rows, err := s.db.QueryContext(ctx, `SELECT source_id FROM event_sources`)
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

// countRows sets tableRows. The caller holds wmu, or is init.
func (s *Store) countRows(ctx context.Context) error {
	if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM events`).Scan(&s.tableRows); err != nil {
		return fmt.Errorf("count events: %w", err)
	}
	return nil
}

// addSources records the sources of rows not known yet, durably (in
// event_sources, each in its own transaction), before the rows commit. After an error the rows must not be
// committed. The caller holds wmu.
func (s *Store) addSources(rows []*pending) error {
	s.srcMu.RLock()
	var missing []string
	for _, p := range rows {
		if _, ok := s.sources[p.src]; !ok && !slices.Contains(missing, p.src) {
			missing = append(missing, p.src)
		}
	}
	s.srcMu.RUnlock()
	for _, src := range missing {
		// Not the rows' transaction: the row is tiny, and a source whose
		// rows do not commit after all only costs a hash in Get.
		if _, err := s.db.ExecContext(context.Background(), `INSERT OR IGNORE INTO event_sources VALUES (?)`, src); err != nil {
			return fmt.Errorf("record source: %w", err)
		}
		s.srcMu.Lock()
		s.sources[src] = struct{}{}
		s.srcMu.Unlock()
	}
	return nil
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

// DedupStats describes the dedup filter and index.
type DedupStats struct {
	// Fingerprints is the number of distinct fingerprints held (at most
	// the number of stored events).
	Fingerprints int64
	// Bytes is the memory the filter and the index hold (the index: its
	// recent hashes and its runs' fences).
	Bytes int64
	// IndexBytes is the index's part of Bytes.
	IndexBytes int64
	// FingerprintBits is the width of a fingerprint.
	FingerprintBits int
	// IndexHashes counts the hashes in the exact index (a hash may count
	// twice until its runs merge); IndexRuns its runs on disk;
	// IndexRebuilt whether Open rebuilt it from the table.
	IndexHashes  int64
	IndexRuns    int
	IndexRebuilt bool
	// FilterHits counts the events of appended batches the filter
	// reported as maybe stored, each looked up in the index;
	// IndexReads the blocks of runs those lookups read.
	FilterHits, IndexReads int64
	// CheckedIDs counts the events the index reported as stored, each
	// checked exactly against the table (true duplicates, keys erased or
	// expired since, 64-bit collisions); CheckQueries counts the queries
	// that did (at most two per Append: among the newest rows, then
	// among the older ones for the keys not found there).
	CheckedIDs, CheckQueries int64
}

// DedupStats returns figures of the dedup filter and index.
func (s *Store) DedupStats() DedupStats {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	st := DedupStats{FingerprintBits: int(s.fpWidth), IndexRebuilt: s.indexRebuilt,
		FilterHits: s.filterHits.Load(), IndexReads: s.indexReads.Load(),
		CheckedIDs: s.checkedIDs.Load(), CheckQueries: s.checkBatches.Load()}
	if s.keys != nil {
		st.Fingerprints = s.keys.n
		st.Bytes = s.keys.bytes()
	}
	if s.index != nil {
		st.IndexBytes = s.index.bytes()
		st.Bytes += st.IndexBytes
		st.IndexHashes = s.index.count()
		st.IndexRuns = s.index.runCount()
	}
	return st
}

// Count returns the number of stored events.
func (s *Store) Count(ctx context.Context) (int64, error) {
	s.swap.RLock()
	defer s.swap.RUnlock()
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
	s.lmu.Lock()
	defer s.lmu.Unlock()
	if s.closed.Swap(true) {
		return nil
	}
	s.flushStaged()
	s.closeDedup()
	s.threads.close()
	if s.file != "" {
		// DuckDB's final checkpoint allocates tens of MiB (outside Go):
		// give it the filter just released and Go's garbage first, so that
		// the stop is not the node's peak.
		debug.FreeOSMemory()
	}
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
