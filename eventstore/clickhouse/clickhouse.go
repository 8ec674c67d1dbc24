// Package clickhouse is the server [eventstore.Store]: events in a
// ClickHouse database, shared by every tandem node of a scale-out
// deployment. Open it with a URL, clickhouse://[user:password@]host[:9000][,host2…]/database.
//
// # Server versions
//
// The store talks ClickHouse's native protocol (port 9000) through
// clickhouse-go v2, and keeps to SQL and types that ClickHouse 18.16 (the
// version Debian ships) understands: times are Int64 microseconds, not
// DateTime64; no lightweight deletes, no JOINs. Two facts about old servers
// shape the code:
//
//   - clickhouse-go's batch insert (PrepareBatch) cannot work with 18.16:
//     for INSERT … FORMAT Native that server describes the table with an
//     empty header block (old servers leave Native input self-describing),
//     and the driver then refuses every row ("expected 0 arguments"). Rows
//     are therefore sent as an external table (temporary data that travels
//     with the query, in Native blocks) and stored with
//     INSERT INTO … SELECT … FROM the external table. Inline VALUES data
//     does not work either: 18.16 waits for data blocks after such a query.
//   - the driver negotiates the protocol revision down to the server's
//     (18.16 reports 54412) by itself; nothing needs setting. Query
//     parameters (server-side binding) are newer than 18.16, so every
//     literal is quoted by this package (see quote), never interpolated raw.
//
// # Layout
//
// See the migrations in schema.go: events (MergeTree, a partition per month
// of event time, ordered by profile key then time), event_keys (the dedup
// and lookup index: one narrow row per stored event, ordered by messageId)
// and profile_links (ReplacingMergeTree). A schema_version table records
// which migrations a database has.
//
// # Dedup, atomicity and concurrency
//
// See [Store.Append]. In short: an Append is atomic per partition (a batch
// whose events fall in one month of event time, the usual case, is one
// part, all or nothing); a batch spanning months is written as one part
// per month, and a crash part-way leaves some of them, which the retry
// completes exactly once through dedup. Appends to one database are
// serialized within a process, so duplicates can only arise from two
// processes appending the same new event at the same moment.
package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"tandem/eventstore"
)

// ErrClosed is returned by a Store's methods after Close.
var ErrClosed = errors.New("eventstore/clickhouse: store closed")

// insertTimeout bounds an INSERT once it has been sent. The caller's
// context does not interrupt it (see Append): a cancelled INSERT leaves the
// client not knowing whether the server stored the rows.
const insertTimeout = 2 * time.Minute

// Store is an [eventstore.Store] backed by ClickHouse. Create it with
// [Open]. A Store is safe for concurrent use.
type Store struct {
	conn     driver.Conn
	db       string // quoted database name, for qualified table names
	dbName   string // the database name unquoted, for system tables
	redacted string // the URL without its password, for messages
	password string // scrubbed from every error message
	// lock serializes Appends and LinkProfiles to this database by all
	// Stores of this process (a one-slot semaphore, so waiting honours
	// the context).
	lock   chan struct{}
	closed atomic.Bool
}

var _ eventstore.Store = (*Store)(nil)

// writeLocks holds the write lock of each database this process opened,
// keyed by server addresses and database name, so that two Stores on the
// same database (two handles, or a reopen) still serialize their Appends.
var (
	writeLocksMu sync.Mutex
	writeLocks   = map[string]chan struct{}{}
)

func writeLock(addrs []string, db string) chan struct{} {
	k := strings.Join(addrs, ",") + "/" + db
	writeLocksMu.Lock()
	defer writeLocksMu.Unlock()
	l, ok := writeLocks[k]
	if !ok {
		l = make(chan struct{}, 1)
		writeLocks[k] = l
	}
	return l
}

// Open connects to the ClickHouse database named by rawURL, creating the
// database if needed and applying pending schema migrations.
//
// rawURL is clickhouse://[user[:password]@]host[:port][,host2[:port]…]/database
// with the native protocol port (9000 when omitted); the database defaults
// to "default". Query parameters are those of clickhouse-go's DSN
// (e.g. dial_timeout=5s, compress=lz4, secure=true). Errors never contain
// the password.
func Open(ctx context.Context, rawURL string) (*Store, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		// url.Parse errors quote the input; say only what is wrong.
		return nil, fmt.Errorf("eventstore/clickhouse: open: not a valid URL")
	}
	redacted := u.Redacted()
	password, _ := u.User.Password()
	fail := func(err error) error {
		return scrub(fmt.Errorf("eventstore/clickhouse: open %s: %w", redacted, err), password)
	}
	if u.Scheme != "clickhouse" {
		return nil, fail(errors.New("want a clickhouse:// URL"))
	}
	opts, err := ch.ParseDSN(rawURL)
	if err != nil {
		return nil, fail(err)
	}
	for i, a := range opts.Addr {
		if a == "" {
			return nil, fail(errors.New("empty host"))
		}
		if !strings.Contains(strings.TrimPrefix(a, "["), ":") || strings.HasSuffix(a, "]") {
			opts.Addr[i] = a + ":9000"
		}
	}
	db := opts.Auth.Database
	if db == "" {
		db = "default"
	}
	// Connect without a database (the server's default): the database may
	// not exist yet. Every statement names its tables with the database.
	opts.Auth.Database = ""
	if opts.Compression == nil {
		opts.Compression = &ch.Compression{Method: ch.CompressionLZ4}
	}
	if opts.DialTimeout == 0 {
		opts.DialTimeout = 5 * time.Second
	}
	if opts.MaxOpenConns == 0 {
		opts.MaxOpenConns = 8
	}
	opts.ClientInfo.Products = append(opts.ClientInfo.Products, struct{ Name, Version string }{"tandem", ""})
	conn, err := ch.Open(opts)
	if err != nil {
		return nil, fail(err)
	}
	s := &Store{
		conn:     conn,
		db:       quoteIdent(db),
		dbName:   db,
		redacted: redacted,
		password: password,
		lock:     writeLock(opts.Addr, db),
	}
	if err := s.init(ctx); err != nil {
		conn.Close()
		return nil, fail(err)
	}
	return s, nil
}

func (s *Store) init(ctx context.Context) error {
	if err := s.conn.Ping(ctx); err != nil {
		return err
	}
	if err := s.conn.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+s.db); err != nil {
		return fmt.Errorf("create database: %w", err)
	}
	return s.migrate(ctx)
}

// table returns the qualified name of a table of the store's database.
func (s *Store) table(name string) string { return s.db + "." + name }

// wrap adds the package prefix and op to err and removes the password
// from its text.
func (s *Store) wrap(op string, err error) error {
	return scrub(fmt.Errorf("eventstore/clickhouse: %s: %w", op, err), s.password)
}

// acquire takes the database's write lock, or gives up when ctx is done.
func (s *Store) acquire(ctx context.Context) error {
	select {
	case s.lock <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Store) release() { <-s.lock }

// Ping checks that the server answers; readiness probes call it.
func (s *Store) Ping(ctx context.Context) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if err := s.conn.Ping(ctx); err != nil {
		return s.wrap("ping", err)
	}
	return nil
}

// Count returns the number of stored events (rows of the events table:
// see Append for the rare case of a duplicate written by two processes).
func (s *Store) Count(ctx context.Context) (int64, error) {
	if s.closed.Load() {
		return 0, ErrClosed
	}
	var n uint64
	if err := s.conn.QueryRow(ctx, "SELECT count() FROM "+s.table("events")).Scan(&n); err != nil {
		return 0, s.wrap("count", err)
	}
	return int64(n), nil
}

// Close waits for a running Append of this process to the same database,
// then closes the connections. Close is idempotent.
func (s *Store) Close() error {
	if s.closed.Load() {
		return nil
	}
	s.lock <- struct{}{}
	defer s.release()
	if s.closed.Swap(true) {
		return nil
	}
	if err := s.conn.Close(); err != nil {
		return s.wrap("close", err)
	}
	return nil
}

// scrubbed is an error whose message has the password removed; Unwrap
// still reaches the original (for errors.Is), whose own text is not shown.
type scrubbed struct {
	msg string
	err error
}

func (e *scrubbed) Error() string { return e.msg }
func (e *scrubbed) Unwrap() error { return e.err }

// scrub returns err with every occurrence of password (and of its URL
// encoding) in its message replaced.
func scrub(err error, password string) error {
	if err == nil || password == "" {
		return err
	}
	msg := err.Error()
	clean := strings.ReplaceAll(msg, password, "xxxxx")
	if esc := url.QueryEscape(password); esc != password {
		clean = strings.ReplaceAll(clean, esc, "xxxxx")
	}
	if esc := url.PathEscape(password); esc != password {
		clean = strings.ReplaceAll(clean, esc, "xxxxx")
	}
	if clean == msg {
		return err
	}
	return &scrubbed{msg: clean, err: err}
}
