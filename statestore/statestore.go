package statestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"iter"
	"math/bits"
	"sync"
	"time"
)

// ErrNotFound is matched (with [errors.Is]) by errors for a row that does
// not exist. Concept packages wrap it: the API answers 404.
var ErrNotFound = errors.New("statestore: not found")

// ErrConflict is matched by errors for a unique or primary-key violation.
// Concept packages wrap it: the API answers 409.
var ErrConflict = errors.New("statestore: conflict")

// ErrBusy is matched by errors for a write that could not go ahead because
// of concurrent ones: it could not get the single write slot of a
// [WithSingleWriter] database in time, or the database aborted its
// transaction to resolve a serialization failure or a deadlock (see
// [BusyDialect]). Trying again later may succeed.
var ErrBusy = errors.New("statestore: busy")

// ErrBadCursor is matched by errors for a pagination cursor this store did
// not issue.
var ErrBadCursor = errors.New("statestore: bad cursor")

// Dialect names, as returned by [Dialect.Name].
const (
	SQLite   = "sqlite"
	Postgres = "postgres"
)

// Dialect is what differs between SQL backends.
type Dialect interface {
	// Name is the backend's name: [SQLite] or [Postgres]. It selects
	// [Migration.DialectSQL] variants.
	Name() string
	// Rebind rewrites a query written with `?` placeholders into the
	// backend's placeholder syntax. `?` inside string literals, quoted
	// identifiers and comments is left alone.
	Rebind(query string) string
	// IsConflict reports whether err, as returned by the driver, is a unique
	// or primary-key constraint violation.
	IsConflict(err error) bool
}

// BusyDialect is implemented by a [Dialect] whose database aborts
// transactions that conflict with concurrent ones (PostgreSQL's
// serialization failures and deadlocks). Errors it recognises match
// [ErrBusy].
type BusyDialect interface {
	Dialect
	// IsBusy reports whether err, as returned by the driver, aborted a
	// transaction because of a concurrent one.
	IsBusy(err error) bool
}

// MigrationLocker is implemented by a [Dialect] whose database several
// processes may migrate at once. [DB.Migrate] runs MigrationLockSQL first
// in each migration's transaction; the statement must block until no other
// migration holds the lock and hold it until the transaction ends (such as
// PostgreSQL's pg_advisory_xact_lock).
type MigrationLocker interface {
	Dialect
	MigrationLockSQL() string
}

// Locker is implemented by a [Dialect] whose database several processes
// share (PostgreSQL). [DB.WithLock] runs LockSQL, with the lock's key as
// its one argument, in a transaction of its own; the statement must block
// until no other transaction holds that lock and hold it until the
// transaction ends (such as PostgreSQL's pg_advisory_xact_lock).
type Locker interface {
	Dialect
	LockSQL() string
}

// DB is a state store database: a [sql.DB] with its [Dialect]. It is safe
// for concurrent use.
type DB struct {
	db      *sql.DB
	dialect Dialect
	// lockMu serializes WithLock within the process.
	lockMu sync.Mutex
	// writeSlot, when not nil, serializes writers (see WithSingleWriter).
	writeSlot    chan struct{}
	writeTimeout time.Duration
	afterWrite   func()
	closer       func()
	// stmts caches prepared statements by query text, when not nil (see
	// WithStatementCache); stmtMu guards it.
	stmtMu sync.Mutex
	stmts  map[string]*sql.Stmt
}

// maxCachedStatements bounds the statements a [WithStatementCache] DB
// keeps prepared; later texts run unprepared.
const maxCachedStatements = 256

// WithStatementCache makes [Tx.ExecCached] and [Tx.QueryCached] prepare
// each statement text once per connection and reuse it. Use it for
// backends whose driver prepares every statement anew (SQLite through
// go-sqlite3: parsing a multi-row INSERT of 400 rows costs about as much
// as running it); pgx caches statements itself.
func WithStatementCache() Option {
	return func(db *DB) { db.stmts = map[string]*sql.Stmt{} }
}

// Option configures a [DB] made by [New].
type Option func(*DB)

// WithSingleWriter makes the DB let one writer at a time reach the database:
// [DB.Exec] and [DB.Tx] first take a write slot, waiting up to timeout (or
// until their context ends) and failing with [ErrBusy] after that. Use it
// for backends such as SQLite that allow a single writer, so that
// concurrent writers queue in the process, in order, instead of spinning on
// the database's lock. Reads ([DB.Query], [DB.QueryRow]) are not
// serialized.
func WithSingleWriter(timeout time.Duration) Option {
	return func(db *DB) {
		db.writeSlot = make(chan struct{}, 1)
		db.writeTimeout = timeout
	}
}

// WithAfterWrite has fn called after each successful [DB.Exec] and each
// committed [DB.Tx]: SQLite uses it to
// copy its write-ahead log into the database file in the background. fn
// must not block.
func WithAfterWrite(fn func()) Option {
	return func(db *DB) { db.afterWrite = fn }
}

// WithCloser has fn called by [DB.Close] before the database closes.
func WithCloser(fn func()) Option {
	return func(db *DB) { db.closer = fn }
}

// New returns a DB over db, which speaks d. The DB owns db: [DB.Close]
// closes it.
func New(db *sql.DB, d Dialect, opts ...Option) *DB {
	s := &DB{db: db, dialect: d}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Dialect returns the database's dialect.
func (db *DB) Dialect() Dialect { return db.dialect }

// SQL returns the underlying [sql.DB], for what the helpers do not cover.
// Queries sent through it are not rebound, and writes through it bypass the
// single-writer discipline.
func (db *DB) SQL() *sql.DB { return db.db }

// WithLock runs fn while holding the lock named key: exclusive within this
// process for every dialect and, for a [Locker] dialect, among all
// processes sharing the database. fn uses db as usual (its writes are not
// inside the lock's transaction, so on a single-writer database they do
// not wait for it). Use it for rare check-then-act sequences that a unique
// constraint cannot express, such as creating the first admin. ctx bounds
// the wait for the lock. Calls do not nest: fn must not call WithLock.
func (db *DB) WithLock(ctx context.Context, key int64, fn func() error) error {
	db.lockMu.Lock()
	defer db.lockMu.Unlock()
	l, ok := db.dialect.(Locker)
	if !ok {
		return fn()
	}
	// The lock's own transaction, outside the write slot: it writes
	// nothing. Ending it (rollback) releases the lock; if the connection
	// broke instead, its session ended and the lock with it.
	tx, err := db.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("statestore: lock: %w", db.mapErr(err))
	}
	defer tx.Rollback() //nolint:errcheck // see above
	if _, err := tx.ExecContext(ctx, db.dialect.Rebind(l.LockSQL()), key); err != nil {
		return fmt.Errorf("statestore: lock: %w", db.mapErr(err))
	}
	return fn()
}

// Close closes the database.
func (db *DB) Close() error {
	if db.closer != nil {
		db.closer()
	}
	db.stmtMu.Lock()
	for q, st := range db.stmts {
		_ = st.Close() // closing the database releases them anyway
		delete(db.stmts, q)
	}
	db.stmtMu.Unlock()
	return db.db.Close()
}

// stmt returns the cached prepared statement of query (rebound already),
// preparing it the first time; nil when the DB caches none, or no more.
func (db *DB) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	if db.stmts == nil {
		return nil, nil
	}
	db.stmtMu.Lock()
	defer db.stmtMu.Unlock()
	if st, ok := db.stmts[query]; ok {
		return st, nil
	}
	if len(db.stmts) >= maxCachedStatements {
		return nil, nil
	}
	st, err := db.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, db.mapErr(err)
	}
	db.stmts[query] = st
	return st, nil
}

// Ping checks that the database can be reached (for readiness checks).
func (db *DB) Ping(ctx context.Context) error {
	if err := db.db.PingContext(ctx); err != nil {
		return fmt.Errorf("statestore: ping: %w", err)
	}
	return nil
}

// acquire takes the write slot, if the DB has one. The returned function
// releases it.
func (db *DB) acquire(ctx context.Context) (release func(), err error) {
	if db.writeSlot == nil {
		return func() {}, nil
	}
	select {
	case db.writeSlot <- struct{}{}:
		return db.releaseSlot, nil
	default:
	}
	var timeout <-chan time.Time
	if db.writeTimeout > 0 {
		t := time.NewTimer(db.writeTimeout)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case db.writeSlot <- struct{}{}:
		return db.releaseSlot, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("statestore: waiting to write: %w", ctx.Err())
	case <-timeout:
		return nil, fmt.Errorf("%w: no write slot within %v", ErrBusy, db.writeTimeout)
	}
}

func (db *DB) releaseSlot() { <-db.writeSlot }

// Exec runs a statement that changes the database. Its `?` placeholders are
// rebound for the dialect. A constraint violation matches [ErrConflict].
func (db *DB) Exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if tx := db.joined(ctx); tx != nil {
		return tx.Exec(ctx, query, args...)
	}
	release, err := db.acquire(ctx)
	if err != nil {
		return nil, err
	}
	res, err := db.db.ExecContext(ctx, db.dialect.Rebind(query), args...)
	release()
	if err == nil && db.afterWrite != nil {
		db.afterWrite()
	}
	return res, db.mapErr(err)
}

// Query runs a query that returns rows. Its `?` placeholders are rebound for
// the dialect. Use it for reads: it does not take the write slot of a
// single-writer DB (use [DB.Tx] for INSERT … RETURNING).
func (db *DB) Query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	rows, err := db.db.QueryContext(ctx, db.dialect.Rebind(query), args...)
	return rows, db.mapErr(err)
}

// QueryRow runs a query expected to return at most one row. Its `?`
// placeholders are rebound for the dialect; see [Row.Scan] for errors.
func (db *DB) QueryRow(ctx context.Context, query string, args ...any) *Row {
	return &Row{row: db.db.QueryRowContext(ctx, db.dialect.Rebind(query), args...), db: db}
}

// Tx runs fn in a transaction. The transaction commits when fn returns nil
// and rolls back when fn returns an error or panics (the panic then goes
// on). On a single-writer DB the transaction holds the write slot
// throughout, so fn must use tx, not db, for its queries: a db.Exec inside
// fn would wait for the slot fn holds (unless fn passes on a ctx made by
// [Batch]).
//
// When ctx comes from [DB.Batch] on this DB, fn runs in the batch's
// transaction instead of one of its own: fn's error is the batch's, and
// the batch commits (or rolls back) everything at its end.
func (db *DB) Tx(ctx context.Context, fn func(tx *Tx) error) error {
	if tx := db.joined(ctx); tx != nil {
		return fn(tx)
	}
	release, err := db.acquire(ctx)
	if err != nil {
		return err
	}
	defer release()
	sqlTx, err := db.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("statestore: begin: %w", db.mapErr(err))
	}
	tx := &Tx{tx: sqlTx, db: db}
	committed := false
	defer func() {
		if !committed {
			// Rolling back after a failed statement or a panic; the
			// original error (or panic) is what matters.
			_ = sqlTx.Rollback()
		}
	}()
	err = fn(tx)
	if werr := tx.await(); err == nil {
		err = werr
	}
	if err != nil {
		return err
	}
	committed = true
	if err := sqlTx.Commit(); err != nil {
		return fmt.Errorf("statestore: commit: %w", db.mapErr(err))
	}
	if db.afterWrite != nil {
		db.afterWrite()
	}
	for _, f := range tx.afterCommit {
		f()
	}
	return nil
}

// Tx is a transaction started by [DB.Tx].
type Tx struct {
	tx          *sql.Tx
	db          *DB
	afterCommit []func()
	awaits      []func() error
}

// Await has wait called when the transaction's own work is done (fn
// returned, or in a [DB.Batch] the whole batch's), before it commits or
// rolls back: for work that runs beside the transaction, such as a write
// to another store that must succeed for the transaction to commit. If
// wait returns an error the transaction rolls back and fails with it. It
// is called whether or not the transaction failed otherwise, so that the
// work beside it has ended when [DB.Tx] returns (not after a panic).
func (tx *Tx) Await(wait func() error) { tx.awaits = append(tx.awaits, wait) }

// await calls the Await functions, in order, and returns the first error.
func (tx *Tx) await() error {
	var first error
	for _, w := range tx.awaits {
		if err := w(); err != nil && first == nil {
			first = err
		}
	}
	tx.awaits = nil
	return first
}

// AfterCommit has fn called once the transaction commits (not if it rolls
// back): for what may only be remembered of stored facts, such as caches.
// In a [DB.Batch], that is when the whole batch commits.
func (tx *Tx) AfterCommit(fn func()) { tx.afterCommit = append(tx.afterCommit, fn) }

// batchKey is the context key under which [DB.Batch] passes its
// transaction on; one per DB.
type batchKey struct{ db *DB }

// joined returns the transaction of the [DB.Batch] ctx comes from, if it
// is one of db's.
func (db *DB) joined(ctx context.Context) *Tx {
	tx, _ := ctx.Value(batchKey{db}).(*Tx)
	return tx
}

// InBatch reports whether ctx comes from a [DB.Batch] on db: its
// transactions join the batch's, and a retry has to be the batch's.
func (db *DB) InBatch(ctx context.Context) bool { return db.joined(ctx) != nil }

// batchAttempts is how often Batch tries a transaction that keeps losing
// races.
const batchAttempts = 8

// Batch runs fn as one transaction: every [DB.Tx] and [DB.Exec] made on db
// with the ctx fn is given joins it, so that several steps (each written
// as its own transaction, for use alone) commit together, once. fn must
// be idempotent: when the transaction loses a race with a concurrent
// writer ([ErrBusy], [ErrConflict]) Batch runs it again, after a pause
// that grows with each attempt, up to 8 times; it gives up at once when
// ctx ends. Reads made with [DB.Query] do not join: they see what is
// committed.
func (db *DB) Batch(ctx context.Context, fn func(ctx context.Context) error) error {
	if db.joined(ctx) != nil {
		return fn(ctx)
	}
	return db.TxRetry(ctx, batchAttempts, func(err error) bool {
		return errors.Is(err, ErrBusy) || errors.Is(err, ErrConflict)
	}, func(tx *Tx) error {
		return fn(context.WithValue(ctx, batchKey{db}, tx))
	})
}

// TxRetry runs fn as [DB.Tx] does, up to attempts times while the error
// is one retry accepts (a transaction that lost a race), after a pause
// that grows with each attempt; it gives up at once when ctx ends.
func (db *DB) TxRetry(ctx context.Context, attempts int, retry func(error) bool, fn func(tx *Tx) error) error {
	var err error
	for attempt := range attempts {
		err = db.Tx(ctx, fn)
		if err == nil || !retry(err) || ctx.Err() != nil || attempt == attempts-1 {
			return err
		}
		t := time.NewTimer(time.Duration(attempt+1) * 5 * time.Millisecond)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (while waiting to retry after: %w)", ctx.Err(), err)
		}
	}
	return err
}

// Dialect returns the dialect of the transaction's database.
func (tx *Tx) Dialect() Dialect { return tx.db.dialect }

// Exec runs a statement in the transaction, rebinding its placeholders.
func (tx *Tx) Exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	res, err := tx.tx.ExecContext(ctx, tx.db.dialect.Rebind(query), args...)
	return res, tx.db.mapErr(err)
}

// Query runs a query in the transaction, rebinding its placeholders.
func (tx *Tx) Query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	rows, err := tx.tx.QueryContext(ctx, tx.db.dialect.Rebind(query), args...)
	return rows, tx.db.mapErr(err)
}

// ExecCached is [Tx.Exec] for a statement text run again and again (such
// as the multi-row statements of each pipeline batch, with their row
// counts from [Parts]): on a [WithStatementCache] database it is prepared
// once per connection and reused.
func (tx *Tx) ExecCached(ctx context.Context, query string, args ...any) (sql.Result, error) {
	q := tx.db.dialect.Rebind(query)
	st, err := tx.db.stmt(ctx, q)
	if err != nil {
		return nil, err
	}
	if st == nil {
		res, err := tx.tx.ExecContext(ctx, q, args...)
		return res, tx.db.mapErr(err)
	}
	res, err := tx.tx.StmtContext(ctx, st).ExecContext(ctx, args...)
	return res, tx.db.mapErr(err)
}

// QueryCached is [Tx.Query] with the statement cached as for
// [Tx.ExecCached].
func (tx *Tx) QueryCached(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	q := tx.db.dialect.Rebind(query)
	st, err := tx.db.stmt(ctx, q)
	if err != nil {
		return nil, err
	}
	if st == nil {
		rows, err := tx.tx.QueryContext(ctx, q, args...)
		return rows, tx.db.mapErr(err)
	}
	rows, err := tx.tx.StmtContext(ctx, st).QueryContext(ctx, args...)
	return rows, tx.db.mapErr(err)
}

// QueryCached is [DB.Query] with the statement cached as for
// [Tx.ExecCached].
func (db *DB) QueryCached(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	q := db.dialect.Rebind(query)
	st, err := db.stmt(ctx, q)
	if err != nil {
		return nil, err
	}
	if st == nil {
		rows, err := db.db.QueryContext(ctx, q, args...)
		return rows, db.mapErr(err)
	}
	rows, err := st.QueryContext(ctx, args...)
	return rows, db.mapErr(err)
}

// Parts splits n rows (or values) into consecutive parts of at most most
// each, for multi-row statements, yielding each part's start and end. On
// a [WithStatementCache] database the sizes come from a small fixed set
// (most, then powers of two below it), so that the statements built for
// them have few distinct texts, each prepared once ([Tx.ExecCached]);
// elsewhere (where each statement is a round trip to a server) the last
// part holds what is left.
func (db *DB) Parts(n, most int) iter.Seq2[int, int] {
	if db.stmts == nil {
		return chunks(n, most)
	}
	return Parts(n, most)
}

// Parts is [DB.Parts] of the transaction's database.
func (tx *Tx) Parts(n, most int) iter.Seq2[int, int] { return tx.db.Parts(n, most) }

// chunks splits n into parts of most, the last holding what is left.
func chunks(n, most int) iter.Seq2[int, int] {
	most = max(most, 1)
	return func(yield func(int, int) bool) {
		for start := 0; start < n; start += most {
			if !yield(start, min(start+most, n)) {
				return
			}
		}
	}
}

// Parts splits n as [DB.Parts] does on a statement-caching database:
// parts of most, then of powers of two below it.
func Parts(n, most int) iter.Seq2[int, int] {
	most = max(most, 1)
	return func(yield func(int, int) bool) {
		start := 0
		for n-start >= most {
			if !yield(start, start+most) {
				return
			}
			start += most
		}
		for size := 1 << (bits.Len(uint(most)) - 1); start < n; size >>= 1 {
			if n-start >= size {
				if !yield(start, start+size) {
					return
				}
				start += size
			}
		}
	}
}

// QueryRow runs a single-row query in the transaction, rebinding its
// placeholders.
func (tx *Tx) QueryRow(ctx context.Context, query string, args ...any) *Row {
	return &Row{row: tx.tx.QueryRowContext(ctx, tx.db.dialect.Rebind(query), args...), db: tx.db}
}

// Row is the result of QueryRow.
type Row struct {
	row *sql.Row
	db  *DB
}

// Scan copies the row's columns into dest. When the query matched no row
// the error matches both [ErrNotFound] and [sql.ErrNoRows]; a constraint
// violation (from INSERT … RETURNING) matches [ErrConflict].
func (r *Row) Scan(dest ...any) error {
	err := r.row.Scan(dest...)
	if errors.Is(err, sql.ErrNoRows) {
		return notFoundError{}
	}
	return r.db.mapErr(err)
}

// Err returns the error, if any, of running the query.
func (r *Row) Err() error { return r.db.mapErr(r.row.Err()) }

// mapErr makes constraint violations match ErrConflict, and transactions
// aborted because of concurrent ones match ErrBusy.
func (db *DB) mapErr(err error) error {
	if err == nil {
		return nil
	}
	if db.dialect.IsConflict(err) {
		return &conflictError{err: err}
	}
	if b, ok := db.dialect.(BusyDialect); ok && b.IsBusy(err) {
		return &busyError{err: err}
	}
	return err
}

// busyError is a driver's error for an aborted transaction that also
// matches ErrBusy.
type busyError struct{ err error }

func (e *busyError) Error() string        { return "statestore: busy: " + e.err.Error() }
func (e *busyError) Unwrap() error        { return e.err }
func (e *busyError) Is(target error) bool { return target == ErrBusy }

// conflictError is a driver's unique-violation error that also matches
// ErrConflict.
type conflictError struct{ err error }

func (e *conflictError) Error() string        { return "statestore: conflict: " + e.err.Error() }
func (e *conflictError) Unwrap() error        { return e.err }
func (e *conflictError) Is(target error) bool { return target == ErrConflict }

// notFoundError matches ErrNotFound and sql.ErrNoRows.
type notFoundError struct{}

func (notFoundError) Error() string { return ErrNotFound.Error() }
func (notFoundError) Is(target error) bool {
	return target == ErrNotFound || target == sql.ErrNoRows
}

// IsConflict reports whether err is, or wraps, a conflict: either an error
// already mapped to [ErrConflict] or a raw driver error the dialect
// recognises.
func (db *DB) IsConflict(err error) bool {
	return errors.Is(err, ErrConflict) || (err != nil && db.dialect.IsConflict(err))
}
