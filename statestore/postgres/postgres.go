// Package postgres opens tandem's server state store: a PostgreSQL database
// (through github.com/jackc/pgx/v5's database/sql driver) wrapped as a
// [statestore.DB], for deployments where several tandem nodes share one
// state.
//
// [Open] takes a URL (postgres://user:password@host:port/dbname?sslmode=…),
// checks that the server will not acknowledge a commit before it is on disk
// (fsync, full_page_writes and synchronous_commit on) and refuses it
// otherwise. Queries are sent without server-side prepared statements, so
// that a schema migrated by another node never leaves this one with stale
// cached plans (and so that a transaction-pooling proxy works in front).
//
// The pool reconnects by itself: connections broken by a restart or a
// failover are dropped and replaced on their next use, so queries fail while
// the server is away and succeed again once it is back.
//
// Errors never show the URL's password.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"tandem/statestore"
)

// Pool settings. A node's state-store traffic is light (write keys are
// cached, events go to the log), so a small pool per node leaves room for
// many nodes under PostgreSQL's default max_connections of 100.
const (
	// MaxConns bounds the connections one [statestore.DB] opens.
	MaxConns = 10
	// maxIdleConns are kept open between bursts.
	maxIdleConns = 4
	// connMaxIdleTime closes connections unused for this long.
	connMaxIdleTime = 5 * time.Minute
	// connMaxLifetime replaces connections after this long, so that a
	// node spreads over replicas behind a load balancer and server-side
	// memory does not build up.
	connMaxLifetime = 30 * time.Minute
	// ConnectTimeout bounds one connection attempt when the URL sets no
	// connect_timeout.
	ConnectTimeout = 5 * time.Second
	// openTimeout bounds the checks Open makes.
	openTimeout = 15 * time.Second
)

// SQLSTATE codes, from PostgreSQL's errcodes.txt.
const (
	codeUniqueViolation      = "23505"
	codeSerializationFailure = "40001"
	codeDeadlockDetected     = "40P01"
)

// migrationLockKey identifies tandem's migrations among the advisory locks
// of a database: "tandem" and "migr" in ASCII.
const migrationLockKey int64 = 0x74616e64_6d696772

// Dialect is the PostgreSQL [statestore.Dialect]. It is also a
// [statestore.BusyDialect], a [statestore.MigrationLocker] and a
// [statestore.Locker].
type Dialect struct{}

// Name returns [statestore.Postgres].
func (Dialect) Name() string { return statestore.Postgres }

// Rebind rewrites `?` placeholders as $1, $2, … (see
// [statestore.RebindDollar]).
func (Dialect) Rebind(query string) string { return statestore.RebindDollar(query) }

// IsConflict reports whether err is a unique_violation (which covers
// primary keys).
func (Dialect) IsConflict(err error) bool { return hasCode(err, codeUniqueViolation) }

// IsBusy reports whether err is a serialization_failure or a
// deadlock_detected: the transaction was aborted because of a concurrent
// one and may be retried.
func (Dialect) IsBusy(err error) bool {
	return hasCode(err, codeSerializationFailure) || hasCode(err, codeDeadlockDetected)
}

// LockSQL takes the transaction-scoped advisory lock whose key is its
// argument ([statestore.DB.WithLock]).
func (Dialect) LockSQL() string { return "SELECT pg_advisory_xact_lock(?)" }

// MigrationLockSQL takes a transaction-scoped advisory lock, held until the
// migration commits or rolls back, so that nodes starting at once migrate
// one after the other.
func (Dialect) MigrationLockSQL() string {
	return fmt.Sprintf("SELECT pg_advisory_xact_lock(%d)", migrationLockKey)
}

func hasCode(err error, code string) bool {
	var e *pgconn.PgError
	return errors.As(err, &e) && e.Code == code
}

// Open connects to the PostgreSQL database at rawURL (postgres:// or
// postgresql://) and checks its durability settings. It does not migrate.
// ctx bounds the checks only; the returned DB lives until closed.
func Open(ctx context.Context, rawURL string) (*statestore.DB, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		// url.Parse's error quotes the whole URL, password included.
		return nil, errors.New("postgres: open: not a valid URL")
	}
	shown, secrets := Redact(u)
	if u.Scheme != "postgres" && u.Scheme != "postgresql" {
		return nil, fmt.Errorf("postgres: open %s: want a postgres:// or postgresql:// URL", shown)
	}
	fail := func(err error) error {
		return fmt.Errorf("postgres: open %s: %w", shown, redact(err, secrets))
	}

	cfg, err := pgx.ParseConfig(rawURL)
	if err != nil {
		return nil, fail(err)
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = ConnectTimeout
	}
	cfg.DefaultQueryExecMode = pgx.QueryExecModeExec
	if cfg.RuntimeParams["application_name"] == "" {
		cfg.RuntimeParams["application_name"] = "tandem"
	}
	sqlDB := stdlib.OpenDB(*cfg)
	sqlDB.SetMaxOpenConns(MaxConns)
	sqlDB.SetMaxIdleConns(maxIdleConns)
	sqlDB.SetConnMaxIdleTime(connMaxIdleTime)
	sqlDB.SetConnMaxLifetime(connMaxLifetime)
	db := statestore.New(sqlDB, Dialect{})

	ctx, cancel := context.WithTimeout(ctx, openTimeout)
	defer cancel()
	if err := checkSettings(ctx, db); err != nil {
		_ = db.Close()
		return nil, fail(err)
	}
	return db, nil
}

// checkSettings refuses a server that could acknowledge a commit before it
// is safely on disk.
func checkSettings(ctx context.Context, db *statestore.DB) error {
	if err := db.SQL().PingContext(ctx); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	for _, s := range []struct {
		name string
		ok   func(string) bool
		want string
	}{
		{"fsync", isOn, "on"},
		{"full_page_writes", isOn, "on"},
		// "local", "remote_write" and "remote_apply" also wait for the
		// local flush; "off" does not.
		{"synchronous_commit", func(v string) bool { return v != "off" }, "on"},
	} {
		var got string
		if err := db.QueryRow(ctx, "SHOW "+s.name).Scan(&got); err != nil {
			return fmt.Errorf("read %s: %w", s.name, err)
		}
		if !s.ok(got) {
			return fmt.Errorf("%s is %q: the server could lose acknowledged writes in a crash; set %s = %s", s.name, got, s.name, s.want)
		}
	}
	return nil
}

func isOn(v string) bool { return v == "on" }

// Redact returns u as text with its password (in the user information or
// a password parameter) replaced by "xxxxx", for messages and logs, and the
// forms the password takes in the URL, for scrubbing other text.
func Redact(u *url.URL) (shown string, secrets []string) {
	c := *u
	if p, ok := c.User.Password(); ok && p != "" {
		secrets = append(secrets, p, url.PathEscape(p), url.QueryEscape(p))
		c.User = url.UserPassword(c.User.Username(), "xxxxx")
	}
	if q := c.Query(); q.Has("password") {
		for _, p := range q["password"] {
			if p != "" {
				secrets = append(secrets, p, url.QueryEscape(p))
			}
		}
		q.Set("password", "xxxxx")
		c.RawQuery = q.Encode()
	}
	return c.String(), secrets
}

// redact hides secrets in err's message, keeping err reachable with
// errors.Is and errors.As.
func redact(err error, secrets []string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	for _, s := range secrets {
		if strings.Contains(msg, s) {
			return &redactedError{err: err, secrets: secrets}
		}
	}
	return err
}

type redactedError struct {
	err     error
	secrets []string
}

func (e *redactedError) Error() string {
	msg := e.err.Error()
	for _, s := range e.secrets {
		msg = strings.ReplaceAll(msg, s, "xxxxx")
	}
	return msg
}

func (e *redactedError) Unwrap() error { return e.err }

// Scrub makes rows deleted from tables unreadable on the server's disk,
// after an erasure. A DELETE leaves the row as a dead tuple in its page,
// and VACUUM only marks the space free; VACUUM FULL writes each table and
// its indexes and TOAST data anew with the live rows only, and the old
// files are truncated at once and removed at the next checkpoint. The
// rows also sit in the write-ahead log: Scrub switches to a new WAL
// segment and checkpoints, twice, so the segments that hold them are no
// longer needed; the server then removes them, or, unless wal_recycle is
// off, renames them for reuse with their old bytes until overwritten. The
// switch and the checkpoint need rights the table owner lacks: EXECUTE on
// pg_switch_wal() and, from PostgreSQL 15, the pg_checkpoint role
// (docs/privacy.md). Archived WAL, replicas and backups are beyond its
// reach.
func Scrub(ctx context.Context, db *statestore.DB, tables []string) error {
	for _, t := range tables {
		var exists bool
		if err := db.SQL().QueryRowContext(ctx, "SELECT to_regclass($1) IS NOT NULL", t).Scan(&exists); err != nil {
			return fmt.Errorf("postgres: scrub: %w", err)
		}
		if !exists {
			continue // a table of an older schema
		}
		if _, err := db.SQL().ExecContext(ctx, "VACUUM (FULL) "+pgx.Identifier{t}.Sanitize()); err != nil {
			return fmt.Errorf("postgres: scrub: vacuum %s: %w", t, err)
		}
	}
	for range 2 {
		if _, err := db.SQL().ExecContext(ctx, "SELECT pg_switch_wal()"); err != nil {
			return fmt.Errorf("postgres: scrub: switch WAL segment (grant EXECUTE ON FUNCTION pg_switch_wal() to tandem's role): %w", err)
		}
		if _, err := db.SQL().ExecContext(ctx, "CHECKPOINT"); err != nil {
			return fmt.Errorf("postgres: scrub: checkpoint (grant the pg_checkpoint role to tandem's role): %w", err)
		}
	}
	return nil
}
