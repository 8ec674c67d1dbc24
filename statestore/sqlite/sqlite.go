// Package sqlite opens tandem's embedded state store: a SQLite database
// file (through github.com/mattn/go-sqlite3) wrapped as a [statestore.DB].
//
// Every connection is set up for durability and privacy: WAL journal,
// synchronous=FULL (a commit is fsync'd before it returns), foreign keys
// on, secure_delete on (deleted rows are overwritten with zeros so erased
// personal data does not linger in free pages), and a busy timeout.
// Writers are serialized in the process (see [statestore.WithSingleWriter])
// and transactions begin IMMEDIATE, so concurrent writers queue instead of
// failing with SQLITE_BUSY; readers run concurrently beside the writer.
//
// A commit only appends to the write-ahead log (and fsyncs it): copying
// the log into the database file (a checkpoint) happens after each write
// in a goroutine, instead of inside the commit that happened to fill the
// log (SQLite's automatic checkpoint, turned off here). The caller gets
// its answer sooner, and the copy and the database file's fsync overlap
// with whatever it does next, the next transaction included: the
// checkpoint copies what was committed before it began while the next
// writer appends after it. A writer that finds the whole log copied
// starts it again from its beginning, which keeps it small; should
// writers keep that from happening until the log holds restartFrames
// pages, the next checkpoint takes the write slot like a writer, so that
// it copies everything and the writer after it starts the log again.
// Readers are never blocked. The log is fsync'd before each commit
// returns either way, so a commit is as durable as before.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mattn/go-sqlite3"

	"tandem/statestore"
)

// BusyTimeout bounds how long a writer waits: for the write slot in the
// process, and (as SQLite's busy_timeout) for a lock held by another
// process.
const BusyTimeout = 10 * time.Second

// maxConns is the size of the connection pool: one writer at a time plus
// concurrent readers.
const maxConns = 8

// Dialect is the SQLite [statestore.Dialect].
type Dialect struct{}

// Name returns [statestore.SQLite].
func (Dialect) Name() string { return statestore.SQLite }

// Rebind returns query unchanged: SQLite takes `?` placeholders.
func (Dialect) Rebind(query string) string { return query }

// IsConflict reports whether err is a SQLite UNIQUE or PRIMARY KEY
// constraint violation.
func (Dialect) IsConflict(err error) bool {
	var e sqlite3.Error
	if !errors.As(err, &e) {
		return false
	}
	return e.ExtendedCode == sqlite3.ErrConstraintUnique || e.ExtendedCode == sqlite3.ErrConstraintPrimaryKey
}

// IsBusy reports whether err is SQLite's SQLITE_BUSY or SQLITE_LOCKED: the
// database was locked (by another process, past the busy timeout) and the
// statement did not run. Such errors match [statestore.ErrBusy].
func (Dialect) IsBusy(err error) bool {
	var e sqlite3.Error
	if !errors.As(err, &e) {
		return false
	}
	return e.Code == sqlite3.ErrBusy || e.Code == sqlite3.ErrLocked
}

// Open opens (creating it if needed, with mode 0600) the SQLite database at
// path. It checks that the durability settings took effect and fails
// otherwise: a store that could acknowledge before data is on disk is
// refused.
func Open(path string) (*statestore.DB, error) {
	if path == "" || path == ":memory:" || strings.HasPrefix(path, "file:") {
		return nil, fmt.Errorf("sqlite: open %q: need a file path", path)
	}
	if strings.ContainsAny(path, "?#") {
		// The driver reads parameters after '?'.
		return nil, fmt.Errorf("sqlite: open %q: path may not contain '?' or '#'", path)
	}
	// Create the file ourselves so that it, and the -wal and -shm files
	// SQLite gives the same mode, are private: they hold token hashes and
	// personal data.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}

	dsn := path + "?" + strings.Join([]string{
		"_journal_mode=WAL",
		"_synchronous=FULL",
		"_foreign_keys=on",
		"_secure_delete=on",
		"_txlock=immediate",
		// A page cache of 64 MiB per connection (the default is 2 MiB):
		// identity resolution reads and writes random pages of its
		// tables, and with the default cache most of them came from the
		// file again (tandem bench identity: about 9,500 → 12,900
		// events/s). Bounded: it does not grow with the data.
		"_cache_size=-65536",
		fmt.Sprintf("_busy_timeout=%d", BusyTimeout.Milliseconds()),
		// database/sql hands a connection to one goroutine at a time,
		// so SQLite's own lock around every call (each bound value,
		// each step) is not needed: about 6 % of a bulk insert's CPU.
		"_mutex=no",
	}, "&")
	sqlDB, err := sql.Open(driverName, dsn)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	sqlDB.SetMaxOpenConns(maxConns)
	sqlDB.SetMaxIdleConns(maxConns)
	sqlDB.SetConnMaxIdleTime(0)
	sqlDB.SetConnMaxLifetime(0)

	cp := &checkpointer{kicks: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
	db := statestore.New(sqlDB, Dialect{}, statestore.WithSingleWriter(BusyTimeout), statestore.WithStatementCache(), statestore.WithAfterWrite(cp.kick), statestore.WithCloser(cp.stop))
	go cp.run(db)
	ctx, cancel := context.WithTimeout(context.Background(), BusyTimeout)
	defer cancel()
	if err := checkSettings(ctx, db); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	return db, nil
}

// checkSettings verifies, on one pooled connection, that the pragmas the
// DSN asked for are in force.
func checkSettings(ctx context.Context, db *statestore.DB) error {
	want := []struct{ pragma, value string }{
		{"journal_mode", "wal"},
		{"synchronous", "2"}, // FULL
		{"foreign_keys", "1"},
		{"secure_delete", "1"},
		{"wal_autocheckpoint", "0"}, // the checkpointer does it
	}
	conn, err := db.SQL().Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	for _, w := range want {
		var got string
		if err := conn.QueryRowContext(ctx, "PRAGMA "+w.pragma).Scan(&got); err != nil {
			return fmt.Errorf("read %s: %w", w.pragma, err)
		}
		if !strings.EqualFold(got, w.value) {
			return fmt.Errorf("%s is %q, want %q", w.pragma, got, w.value)
		}
	}
	return nil
}

// Checkpoint copies the write-ahead log into the database file and
// truncates it to zero bytes, so that pages of deleted rows (already zeroed
// in the database by secure_delete) no longer remain in the log. Use it
// after erasing personal data. It waits for readers of older snapshots
// (SQLite's busy handler, then again until ctx ends) and fails if the
// log could not be truncated.
func Checkpoint(ctx context.Context, db *statestore.DB) error {
	for {
		// Not through the write slot: the checkpoint takes SQLite's own
		// locks, and writers meanwhile wait in SQLite's busy handler.
		var busy, frames, done int
		err := db.SQL().QueryRowContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &frames, &done)
		if err != nil {
			return fmt.Errorf("sqlite: checkpoint: %w", err)
		}
		if busy == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("sqlite: checkpoint: the write-ahead log is still in use: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// driverName is mattn/go-sqlite3's driver with tandem's per-connection
// settings that the DSN cannot carry.
const driverName = "sqlite3_tandem"

func init() {
	sql.Register(driverName, &sqlite3.SQLiteDriver{ConnectHook: func(c *sqlite3.SQLiteConn) error {
		_, err := c.Exec("PRAGMA wal_autocheckpoint = 0", nil)
		return err
	}})
}

// checkpointer copies the write-ahead log into the database file: kicked
// after each write, it runs one passive checkpoint at a time (kicks while
// one waits or runs coalesce into the next).
type checkpointer struct {
	kicks chan struct{}
	quit  chan struct{}
	done  chan struct{}
	once  sync.Once
	busy  atomic.Bool // its own Exec kicks nothing
}

func (c *checkpointer) run(db *statestore.DB) {
	defer close(c.done)
	ctx := context.Background()
	for {
		select {
		case <-c.quit:
			return
		case <-c.kicks:
		}
		// Beside the writers: a passive checkpoint copies the frames
		// committed before it began while the next transaction appends
		// after them, so a writer waits neither for the copy nor for the
		// database file's fsync. A failure (the database closing, a full
		// disk) leaves the log to the next kick; writes report their own
		// errors.
		var busy, frames, copied int
		err := db.SQL().QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &frames, &copied)
		if err != nil || int64(frames) < restartFrames.Load() {
			continue
		}
		// The log starts again from its beginning only when a writer
		// finds all of it copied, which writers appending beside the
		// copies can keep from happening: past restartFrames, copy what
		// is left through the write slot, with no writer appending, so
		// that the next writer starts the log again.
		c.busy.Store(true)
		_, _ = db.Exec(ctx, "PRAGMA wal_checkpoint(PASSIVE)")
		c.busy.Store(false)
	}
}

// restartFrames is how many frames (pages) the write-ahead log may hold
// before the checkpointer copies it through the write slot (see run):
// 8 MiB of 4 KiB pages, several of the pipeline's batches.
var restartFrames atomic.Int64

func init() { restartFrames.Store(2048) }

func (c *checkpointer) kick() {
	if c.busy.Load() {
		return
	}
	select {
	case c.kicks <- struct{}{}:
	default:
	}
}

// stop ends the checkpointer before the database closes (closing the
// last connection checkpoints what is left).
func (c *checkpointer) stop() {
	c.once.Do(func() { close(c.quit) })
	<-c.done
}
