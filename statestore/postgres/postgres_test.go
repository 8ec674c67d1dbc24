package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"tandem/access"
	"tandem/governance"
	"tandem/quarantine"
	"tandem/statestore"
	"tandem/statestore/postgres"
	"tandem/statestore/postgres/pgtest"
	"tandem/statestore/statetest"
	"tandem/testserver"
)

func TestMain(m *testing.M) { testserver.Main(m) }

// open returns a state store on a fresh database, closed when t ends.
func open(t *testing.T) *statestore.DB { return pgtest.Open(t) }

func openURL(t *testing.T, u string) *statestore.DB {
	t.Helper()
	db, err := postgres.Open(context.Background(), u)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	// Registered after the database's drop, so it runs before it.
	t.Cleanup(func() { db.Close() })
	return db
}

func allMigrations() []statestore.Migration {
	var migs []statestore.Migration
	migs = append(migs, access.Migrations()...)
	migs = append(migs, governance.Migrations()...)
	migs = append(migs, quarantine.Migrations()...)
	return migs
}

func TestContract(t *testing.T) {
	statetest.Run(t, open)
}

func TestDialect(t *testing.T) {
	db := open(t)
	if got := db.Dialect().Name(); got != statestore.Postgres {
		t.Errorf("Name = %q", got)
	}
	if got := db.Dialect().Rebind(`SELECT ? WHERE x = '?' AND y = ?`); got != `SELECT $1 WHERE x = '?' AND y = $2` {
		t.Errorf("Rebind = %q", got)
	}
}

// Every concept package's migrations apply, and applying them again from
// another handle changes nothing.
func TestProductMigrations(t *testing.T) {
	ctx := context.Background()
	u := testserver.Postgres(t)
	a, b := openURL(t, u), openURL(t, u)
	if err := a.Migrate(ctx, allMigrations()...); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	if err := b.Migrate(ctx, allMigrations()...); err != nil {
		t.Fatalf("Migrate again: %v", err)
	}
	var n int
	if err := b.QueryRow(ctx, `SELECT COUNT(*) FROM schema_migrations`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != len(allMigrations()) {
		t.Errorf("schema_migrations has %d rows, want %d", n, len(allMigrations()))
	}
	// The quarantine's payload column is binary in PostgreSQL.
	var typ string
	if err := b.QueryRow(ctx, `SELECT data_type FROM information_schema.columns
		WHERE table_name = 'quarantine_entries' AND udt_name = 'bytea'`).Scan(&typ); err != nil {
		t.Errorf("quarantine_entries has no bytea column: %v", err)
	}
}

// Nodes starting together migrate the same database once, without errors:
// each handle is a separate pool, as separate processes would have.
func TestConcurrentMigrate(t *testing.T) {
	ctx := context.Background()
	u := testserver.Postgres(t)
	const nodes = 4
	dbs := make([]*statestore.DB, nodes)
	for i := range dbs {
		dbs[i] = openURL(t, u)
	}
	// A migration that would fail if run twice (no IF NOT EXISTS, and an
	// insert into a unique column), after the product's own.
	migs := append(allMigrations(), statestore.Migration{Package: "racetest", Version: 1, SQL: `
		CREATE TABLE racetest_once (id TEXT PRIMARY KEY);
		INSERT INTO racetest_once (id) VALUES ('once')`})
	start := make(chan struct{})
	var wg sync.WaitGroup
	errs := make([]error, nodes)
	for i, db := range dbs {
		wg.Go(func() {
			<-start
			errs[i] = db.Migrate(ctx, migs...)
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("node %d: Migrate: %v", i, err)
		}
	}
	var n int
	if err := dbs[0].QueryRow(ctx, `SELECT COUNT(*) FROM racetest_once`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("racetest_once has %d rows (%v), want 1", n, err)
	}
	for _, pkg := range []string{"access", "governance", "quarantine", "racetest"} {
		v, err := dbs[nodes-1].AppliedVersion(ctx, pkg)
		if err != nil || v == 0 {
			t.Errorf("AppliedVersion(%s) = %d, %v", pkg, v, err)
		}
	}
}

func TestConflictMapping(t *testing.T) {
	ctx := context.Background()
	db := open(t)
	if _, err := db.Exec(ctx, `CREATE TABLE items (id TEXT PRIMARY KEY, name TEXT UNIQUE, n BIGINT CHECK (n >= 0))`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, `INSERT INTO items (id, name, n) VALUES (?, ?, ?)`, "a", "alpha", 1); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		args     []any
		conflict bool
	}{
		{"primary key", []any{"a", "other", 1}, true},
		{"unique", []any{"b", "alpha", 1}, true},
		{"check", []any{"c", "gamma", -1}, false},
	} {
		_, err := db.Exec(ctx, `INSERT INTO items (id, name, n) VALUES (?, ?, ?)`, tc.args...)
		if err == nil {
			t.Fatalf("%s: insert succeeded", tc.name)
		}
		if got := errors.Is(err, statestore.ErrConflict); got != tc.conflict {
			t.Errorf("%s: errors.Is(%v, ErrConflict) = %v", tc.name, err, got)
		}
		if errors.Is(err, statestore.ErrBusy) {
			t.Errorf("%s: %v matches ErrBusy", tc.name, err)
		}
	}
}

// Two transactions that lock rows in opposite orders deadlock; PostgreSQL
// aborts one, and its error matches ErrBusy.
func TestDeadlockIsBusy(t *testing.T) {
	ctx := context.Background()
	db := open(t)
	if _, err := db.Exec(ctx, `CREATE TABLE acct (id TEXT PRIMARY KEY, n BIGINT NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, `INSERT INTO acct (id, n) VALUES ('x', 0), ('y', 0)`); err != nil {
		t.Fatal(err)
	}
	var first sync.WaitGroup
	first.Add(2)
	update := func(tx *statestore.Tx, id string) error {
		_, err := tx.Exec(ctx, `UPDATE acct SET n = n + 1 WHERE id = ?`, id)
		return err
	}
	run := func(a, b string) error {
		return db.Tx(ctx, func(tx *statestore.Tx) error {
			if err := update(tx, a); err != nil {
				first.Done()
				return err
			}
			first.Done()
			first.Wait() // both hold their first row
			return update(tx, b)
		})
	}
	errs := make(chan error, 2)
	go func() { errs <- run("x", "y") }()
	go func() { errs <- run("y", "x") }()
	e1, e2 := <-errs, <-errs
	if (e1 == nil) == (e2 == nil) {
		t.Fatalf("want exactly one transaction aborted; got %v and %v", e1, e2)
	}
	err := errors.Join(e1, e2)
	if !errors.Is(err, statestore.ErrBusy) {
		t.Fatalf("deadlock error %v does not match ErrBusy", err)
	}
	if errors.Is(err, statestore.ErrConflict) {
		t.Fatalf("deadlock error %v matches ErrConflict", err)
	}
}

// A serialization failure under SERIALIZABLE isolation matches ErrBusy.
func TestSerializationFailureIsBusy(t *testing.T) {
	ctx := context.Background()
	db := open(t)
	if _, err := db.Exec(ctx, `CREATE TABLE ser (id TEXT PRIMARY KEY, n BIGINT NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, `INSERT INTO ser (id, n) VALUES ('x', 0)`); err != nil {
		t.Fatal(err)
	}
	var both sync.WaitGroup
	both.Add(2)
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			errs <- db.Tx(ctx, func(tx *statestore.Tx) error {
				if _, err := tx.Exec(ctx, `SET TRANSACTION ISOLATION LEVEL SERIALIZABLE`); err != nil {
					both.Done()
					return err
				}
				var n int
				err := tx.QueryRow(ctx, `SELECT n FROM ser WHERE id = 'x'`).Scan(&n)
				both.Done()
				if err != nil {
					return err
				}
				both.Wait() // both read before either writes
				_, err = tx.Exec(ctx, `UPDATE ser SET n = ? WHERE id = 'x'`, n+1)
				return err
			})
		}()
	}
	err := errors.Join(<-errs, <-errs)
	if err == nil {
		t.Fatal("both serializable transactions committed a lost update")
	}
	if !errors.Is(err, statestore.ErrBusy) {
		t.Fatalf("serialization error %v does not match ErrBusy", err)
	}
}

func TestOpenErrorsHidePassword(t *testing.T) {
	good := testserver.Postgres(t)
	u, err := url.Parse(good)
	if err != nil {
		t.Fatal(err)
	}
	password, _ := u.User.Password()
	wrong := *u
	wrong.User = url.UserPassword(u.User.Username(), "S3cret-wrong-pass")
	refused := *u
	refused.Host = "127.0.0.1:1" // nothing listens there
	for _, tc := range []struct {
		name, url, secret string
	}{
		{"wrong password", wrong.String(), "S3cret-wrong-pass"},
		{"refused", refused.String(), password},
		{"bad scheme", strings.Replace(good, "postgres://", "mysql://", 1), password},
		{"unparsable", "postgres://tandem:" + password + "@127.0.0.1:%zz/db", password},
		{"bad option", good + "&connect_timeout=soon", password},
		{"password parameter", "postgres://tandem@127.0.0.1:1/db?password=" + password, password},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			db, err := postgres.Open(ctx, tc.url)
			if err == nil {
				db.Close()
				t.Fatal("Open succeeded")
			}
			t.Log(err)
			if strings.Contains(err.Error(), tc.secret) {
				t.Fatalf("error shows the password: %v", err)
			}
			if !strings.HasPrefix(err.Error(), "postgres: open") {
				t.Errorf("error %q does not say what failed", err)
			}
		})
	}
}

func TestRedact(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"postgres://u:p%40ss@h:5432/db?sslmode=require", "postgres://u:xxxxx@h:5432/db?sslmode=require"},
		{"postgres://u@h/db?password=pw&sslmode=disable", "postgres://u@h/db?password=xxxxx&sslmode=disable"},
		{"postgresql://h/db", "postgresql://h/db"},
	} {
		u, err := url.Parse(tc.in)
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := postgres.Redact(u); got != tc.want {
			t.Errorf("Redact(%s) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

// The server refuses to open a database whose durability settings could
// lose acknowledged commits.
func TestRefusesUnsafeSettings(t *testing.T) {
	u := testserver.Postgres(t)
	parsed, _ := url.Parse(u)
	dbname := strings.TrimPrefix(parsed.Path, "/")
	// The database owner can set synchronous_commit for its database.
	db := openURL(t, u)
	ctx := context.Background()
	if _, err := db.Exec(ctx, fmt.Sprintf(`ALTER DATABASE %s SET synchronous_commit = off`, dbname)); err != nil {
		t.Fatal(err)
	}
	bad, err := postgres.Open(ctx, u)
	if err == nil {
		bad.Close()
		t.Fatal("Open accepted synchronous_commit = off")
	}
	if !strings.Contains(err.Error(), "synchronous_commit") {
		t.Errorf("error %q does not name synchronous_commit", err)
	}
}

// Migrate waits for the migration lock, so that it never interleaves with
// another node's migration.
func TestMigrateTakesLock(t *testing.T) {
	ctx := context.Background()
	u := testserver.Postgres(t)
	holder, migrator := openURL(t, u), openURL(t, u)
	locked := make(chan struct{})
	release := make(chan struct{})
	held := make(chan error, 1)
	go func() {
		held <- holder.Tx(ctx, func(tx *statestore.Tx) error {
			lock := tx.Dialect().(statestore.MigrationLocker).MigrationLockSQL()
			if _, err := tx.Exec(ctx, lock); err != nil {
				close(locked)
				return err
			}
			close(locked)
			<-release
			return nil
		})
	}()
	<-locked
	done := make(chan error, 1)
	go func() { done <- migrator.Migrate(ctx, allMigrations()...) }()
	select {
	case err := <-done:
		close(release)
		t.Fatalf("Migrate finished (%v) while another node held the migration lock", err)
	case <-time.After(500 * time.Millisecond):
	}
	close(release)
	if err := <-held; err != nil {
		t.Fatalf("holding the lock: %v", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Migrate: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Migrate still waiting 30s after the lock was released")
	}
}

// A restart of PostgreSQL makes queries fail while it is down, and the
// pool reconnects by itself once it is back. Not parallel: it stops the
// server every test of this binary shares.
func TestRestart(t *testing.T) {
	ctx := context.Background()
	pg := testserver.PostgresInstance(t)
	db := openURL(t, pg.NewDatabase(t))
	if err := db.Migrate(ctx, allMigrations()...); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, `CREATE TABLE kept (id TEXT PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	// Fill the pool with several connections so that stale ones are in it.
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			if _, err := db.Exec(ctx, `INSERT INTO kept (id) VALUES (?)`, fmt.Sprintf("before-%d", i)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()

	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	if err := db.Ping(qctx); err == nil {
		t.Error("Ping succeeded with the server stopped")
	}
	if _, err := db.Exec(qctx, `INSERT INTO kept (id) VALUES ('during')`); err == nil {
		t.Error("insert succeeded with the server stopped")
	}
	cancel()

	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	// Every pooled connection is stale now; each must be replaced rather
	// than fail a query. Allow a few attempts in case the server is still
	// finishing its start.
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := db.Ping(ctx)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the pool did not reconnect within 30s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for i := range 8 {
		if _, err := db.Exec(ctx, `INSERT INTO kept (id) VALUES (?)`, fmt.Sprintf("after-%d", i)); err != nil {
			t.Errorf("insert %d after the restart: %v", i, err)
		}
	}
	var n int
	if err := db.QueryRow(ctx, `SELECT COUNT(*) FROM kept`).Scan(&n); err != nil || n != 12 {
		t.Fatalf("kept has %d rows (%v), want 12: the committed rows survive the restart", n, err)
	}
	// Migrating after the restart is a no-op.
	if err := db.Migrate(ctx, allMigrations()...); err != nil {
		t.Fatalf("Migrate after restart: %v", err)
	}
}
