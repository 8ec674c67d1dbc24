// Package statetest is the contract suite every state store
// backend must pass. [Run] checks the [statestore.DB] behaviour the concept
// packages rely on (migrations, conflicts, transactions, concurrent writers,
// placeholder rebinding).
//
// The concept packages (access, governance, quarantine, identity, audit) each
// have their own suite (access/accesstest, …), and their tests run it on
// every backend with [Each]: a new backend is added to Each, and so is
// tested with everything that runs on it. This package imports no concept
// package, so no package below the concepts imports one above.
package statetest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"tandem/statestore"
	"tandem/statestore/postgres/pgtest"
	"tandem/statestore/sqlite/sqlitetest"
)

// Each runs suite once on every state store backend, as subtests named
// after it: "sqlite", and "postgres" on the test server (skipped when
// PostgreSQL is not installed, unless TANDEM_TEST_SERVERS=require). A
// test binary that calls it stops the test servers with testserver.Main
// in its TestMain.
func Each(t *testing.T, suite func(t *testing.T, open func(t *testing.T) *statestore.DB)) {
	t.Run("sqlite", func(t *testing.T) { suite(t, sqlitetest.Open) })
	t.Run("postgres", func(t *testing.T) { suite(t, pgtest.Open) })
}

// Run runs the contract suite. open must return a new, empty database for
// each call and register its cleanup (the suite closes nothing); it is
// called from parallel subtests.
func Run(t *testing.T, open func(t *testing.T) *statestore.DB) {
	t.Run("Migrations", func(t *testing.T) { t.Parallel(); testMigrations(t, open) })
	t.Run("MigrationFailure", func(t *testing.T) { t.Parallel(); testMigrationFailure(t, open) })
	t.Run("MigrationValidation", func(t *testing.T) { t.Parallel(); testMigrationValidation(t, open) })
	t.Run("Conflict", func(t *testing.T) { t.Parallel(); testConflict(t, open) })
	t.Run("NotFound", func(t *testing.T) { t.Parallel(); testNotFound(t, open) })
	t.Run("Tx", func(t *testing.T) { t.Parallel(); testTx(t, open) })
	t.Run("Batch", func(t *testing.T) { t.Parallel(); testBatch(t, open) })
	t.Run("Await", func(t *testing.T) { t.Parallel(); testAwait(t, open) })
	t.Run("ConcurrentWriters", func(t *testing.T) { t.Parallel(); testConcurrentWriters(t, open) })
	t.Run("ReadDuringWrite", func(t *testing.T) { t.Parallel(); testReadDuringWrite(t, open) })
	t.Run("Rebind", func(t *testing.T) { t.Parallel(); testRebind(t, open) })
	t.Run("Bytes", func(t *testing.T) { t.Parallel(); testBytes(t, open) })
	t.Run("Cached", func(t *testing.T) { t.Parallel(); testCached(t, open) })
}

func count(t *testing.T, db *statestore.DB, query string, args ...any) int {
	t.Helper()
	var n int
	if err := db.QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

func mustExec(t *testing.T, db *statestore.DB, query string, args ...any) {
	t.Helper()
	if _, err := db.Exec(context.Background(), query, args...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

func testMigrations(t *testing.T, open func(t *testing.T) *statestore.DB) {
	ctx := context.Background()
	db := open(t)
	migs := []statestore.Migration{
		// Given out of order: v2 needs v1's table.
		{Package: "alpha", Version: 2, SQL: `INSERT INTO alpha_items (id, note) VALUES ('b', 'from v2');`},
		{Package: "alpha", Version: 1, SQL: `
			-- two statements and a comment; a literal with a semicolon
			CREATE TABLE alpha_items (id TEXT PRIMARY KEY, note TEXT NOT NULL);
			INSERT INTO alpha_items (id, note) VALUES ('a', 'semi; colon');
		`},
		{Package: "beta", Version: 1, SQL: `CREATE TABLE beta_generic (id TEXT PRIMARY KEY)`,
			DialectSQL: map[string]string{db.Dialect().Name(): `CREATE TABLE beta_variant (id TEXT PRIMARY KEY)`}},
	}
	for run := range 3 {
		if err := db.Migrate(ctx, migs...); err != nil {
			t.Fatalf("Migrate (run %d): %v", run+1, err)
		}
		if n := count(t, db, `SELECT COUNT(*) FROM alpha_items`); n != 2 {
			t.Fatalf("run %d: alpha_items has %d rows, want 2 (each migration once)", run+1, n)
		}
		if n := count(t, db, `SELECT COUNT(*) FROM schema_migrations`); n != 3 {
			t.Fatalf("run %d: schema_migrations has %d rows, want 3", run+1, n)
		}
	}
	var note string
	if err := db.QueryRow(ctx, `SELECT note FROM alpha_items WHERE id = ?`, "a").Scan(&note); err != nil || note != "semi; colon" {
		t.Fatalf("note = %q, %v; want %q", note, err, "semi; colon")
	}
	if n := count(t, db, `SELECT COUNT(*) FROM beta_variant`); n != 0 {
		t.Fatalf("beta_variant has %d rows", n)
	}
	if _, err := db.Exec(ctx, `SELECT COUNT(*) FROM beta_generic`); err == nil {
		t.Fatal("the generic SQL ran although the dialect has a variant")
	}
	for pkg, want := range map[string]int{"alpha": 2, "beta": 1, "gamma": 0} {
		if v, err := db.AppliedVersion(ctx, pkg); err != nil || v != want {
			t.Errorf("AppliedVersion(%s) = %d, %v; want %d", pkg, v, err, want)
		}
	}

	// A later migration of a package applies on its own.
	migs = append(migs, statestore.Migration{Package: "alpha", Version: 3, SQL: `ALTER TABLE alpha_items ADD COLUMN extra TEXT`})
	if err := db.Migrate(ctx, migs...); err != nil {
		t.Fatalf("Migrate with v3: %v", err)
	}
	if n := count(t, db, `SELECT COUNT(*) FROM alpha_items WHERE extra IS NULL`); n != 2 {
		t.Fatalf("after v3: %d rows with extra NULL, want 2", n)
	}

	// Whitespace around statements does not count as a change...
	migs[0].SQL = "\n\t" + migs[0].SQL + "\n"
	if err := db.Migrate(ctx, migs...); err != nil {
		t.Fatalf("Migrate with reformatted v2: %v", err)
	}
	// ...but changing an applied migration is refused.
	migs[0].SQL = `INSERT INTO alpha_items (id, note) VALUES ('c', 'changed')`
	if err := db.Migrate(ctx, migs...); err == nil || !strings.Contains(err.Error(), "alpha/2") {
		t.Fatalf("Migrate with changed alpha/2: err = %v, want an error naming alpha/2", err)
	}

	// Concurrent migrators apply each migration once.
	db2 := open(t)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			errs <- db2.Migrate(ctx, statestore.Migration{Package: "gamma", Version: 1, SQL: `
				CREATE TABLE gamma_items (id TEXT PRIMARY KEY);
				INSERT INTO gamma_items (id) VALUES ('only-once')`})
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent Migrate: %v", err)
		}
	}
	if n := count(t, db2, `SELECT COUNT(*) FROM gamma_items`); n != 1 {
		t.Fatalf("gamma_items has %d rows after concurrent migrations, want 1", n)
	}
}

func testMigrationFailure(t *testing.T, open func(t *testing.T) *statestore.DB) {
	ctx := context.Background()
	db := open(t)
	good := statestore.Migration{Package: "fail", Version: 1, SQL: `CREATE TABLE fail_items (id TEXT PRIMARY KEY)`}
	bad := statestore.Migration{Package: "fail", Version: 2, SQL: `
		INSERT INTO fail_items (id) VALUES ('partial');
		CREATE TABLE fail_more (id TEXT PRIMARY KEY);
		THIS IS NOT SQL`}
	err := db.Migrate(ctx, good, bad)
	if err == nil || !strings.Contains(err.Error(), "fail/2") {
		t.Fatalf("Migrate with a bad migration: err = %v, want an error naming fail/2", err)
	}
	if v, err := db.AppliedVersion(ctx, "fail"); err != nil || v != 1 {
		t.Fatalf("AppliedVersion = %d, %v; want 1 (the good migration stays, the bad one is not recorded)", v, err)
	}
	if n := count(t, db, `SELECT COUNT(*) FROM fail_items`); n != 0 {
		t.Fatalf("the failed migration left %d rows", n)
	}
	if _, err := db.Exec(ctx, `INSERT INTO fail_more (id) VALUES ('x')`); err == nil {
		t.Fatal("the failed migration left its table")
	}
	// Fixed, it applies.
	bad.SQL = `CREATE TABLE fail_more (id TEXT PRIMARY KEY)`
	if err := db.Migrate(ctx, good, bad); err != nil {
		t.Fatalf("Migrate after fixing: %v", err)
	}
	mustExec(t, db, `INSERT INTO fail_more (id) VALUES ('x')`)
}

func testMigrationValidation(t *testing.T, open func(t *testing.T) *statestore.DB) {
	ctx := context.Background()
	db := open(t)
	ok := statestore.Migration{Package: "v", Version: 1, SQL: `CREATE TABLE v_items (id TEXT PRIMARY KEY)`}
	for _, tc := range []struct {
		name string
		migs []statestore.Migration
	}{
		{"no package", []statestore.Migration{{Version: 1, SQL: ok.SQL}}},
		{"version 0", []statestore.Migration{{Package: "v", SQL: ok.SQL}}},
		{"negative version", []statestore.Migration{{Package: "v", Version: -1, SQL: ok.SQL}}},
		{"no SQL", []statestore.Migration{{Package: "v", Version: 1, SQL: " -- nothing\n"}}},
		{"duplicate", []statestore.Migration{ok, ok}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := db.Migrate(ctx, tc.migs...); err == nil {
				t.Fatal("Migrate succeeded")
			}
		})
	}
	if v, err := db.AppliedVersion(ctx, "v"); err != nil || v != 0 {
		t.Fatalf("AppliedVersion = %d, %v after invalid migrations; want 0", v, err)
	}
}

func setup(t *testing.T, open func(t *testing.T) *statestore.DB) *statestore.DB {
	t.Helper()
	db := open(t)
	if err := db.Migrate(context.Background(), statestore.Migration{Package: "contract", Version: 1, SQL: `
		CREATE TABLE contract_items (
			id TEXT PRIMARY KEY,
			name TEXT NOT NULL UNIQUE,
			n BIGINT NOT NULL,
			f DOUBLE PRECISION NOT NULL DEFAULT 0
		)`}); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	return db
}

func testConflict(t *testing.T, open func(t *testing.T) *statestore.DB) {
	ctx := context.Background()
	db := setup(t, open)
	mustExec(t, db, `INSERT INTO contract_items (id, name, n) VALUES (?, ?, ?)`, "1", "one", 1)
	for _, tc := range []struct {
		name     string
		query    string
		args     []any
		conflict bool
	}{
		{"primary key", `INSERT INTO contract_items (id, name, n) VALUES (?, ?, ?)`, []any{"1", "other", 2}, true},
		{"unique column", `INSERT INTO contract_items (id, name, n) VALUES (?, ?, ?)`, []any{"2", "one", 2}, true},
		{"not null", `INSERT INTO contract_items (id, name, n) VALUES (?, ?, ?)`, []any{"3", nil, 3}, false},
		{"no such table", `INSERT INTO contract_nothing (id) VALUES (?)`, []any{"4"}, false},
		{"on conflict do nothing", `INSERT INTO contract_items (id, name, n) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`, []any{"1", "one", 1}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := db.Exec(ctx, tc.query, tc.args...)
			if tc.name == "on conflict do nothing" {
				if err != nil {
					t.Fatalf("Exec: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Exec succeeded")
			}
			if got := errors.Is(err, statestore.ErrConflict); got != tc.conflict {
				t.Errorf("errors.Is(%v, ErrConflict) = %v, want %v", err, got, tc.conflict)
			}
			if got := db.IsConflict(err); got != tc.conflict {
				t.Errorf("db.IsConflict = %v, want %v", got, tc.conflict)
			}
			if got := db.Dialect().IsConflict(errors.Unwrap(err)); tc.conflict && !got {
				t.Errorf("Dialect.IsConflict(driver error) = false, want true")
			}
			if errors.Is(err, statestore.ErrNotFound) {
				t.Errorf("%v matches ErrNotFound", err)
			}
		})
	}
	// Inside a transaction, and through the transaction's commit.
	err := db.Tx(ctx, func(tx *statestore.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO contract_items (id, name, n) VALUES (?, ?, ?)`, "1", "dup", 9)
		return fmt.Errorf("inserting: %w", err)
	})
	if !errors.Is(err, statestore.ErrConflict) {
		t.Fatalf("Tx error %v does not match ErrConflict", err)
	}
	if db.Dialect().IsConflict(errors.New("UNIQUE constraint failed")) {
		t.Error("Dialect.IsConflict matched a plain error by its text")
	}
	if db.IsConflict(nil) {
		t.Error("IsConflict(nil) = true")
	}
}

func testNotFound(t *testing.T, open func(t *testing.T) *statestore.DB) {
	ctx := context.Background()
	db := setup(t, open)
	var n int
	err := db.QueryRow(ctx, `SELECT n FROM contract_items WHERE id = ?`, "missing").Scan(&n)
	if !errors.Is(err, statestore.ErrNotFound) || !errors.Is(err, sql.ErrNoRows) {
		t.Fatalf("Scan of no row: %v, want ErrNotFound and sql.ErrNoRows", err)
	}
	err = db.Tx(ctx, func(tx *statestore.Tx) error {
		return tx.QueryRow(ctx, `SELECT n FROM contract_items WHERE id = ?`, "missing").Scan(&n)
	})
	if !errors.Is(err, statestore.ErrNotFound) {
		t.Fatalf("Tx Scan of no row: %v, want ErrNotFound", err)
	}
}

func testTx(t *testing.T, open func(t *testing.T) *statestore.DB) {
	ctx := context.Background()
	db := setup(t, open)
	errBoom := errors.New("boom")
	insert := func(tx *statestore.Tx, id string) error {
		_, err := tx.Exec(ctx, `INSERT INTO contract_items (id, name, n) VALUES (?, ?, ?)`, id, "name-"+id, 1)
		return err
	}
	for _, tc := range []struct {
		name    string
		fn      func(tx *statestore.Tx) error
		wantErr error
		panics  bool
		rows    int // rows with id LIKE name%
	}{
		{"commit", func(tx *statestore.Tx) error {
			if err := insert(tx, "commit-1"); err != nil {
				return err
			}
			return insert(tx, "commit-2")
		}, nil, false, 2},
		{"error rolls back", func(tx *statestore.Tx) error {
			if err := insert(tx, "error rolls back-1"); err != nil {
				return err
			}
			if err := insert(tx, "error rolls back-2"); err != nil {
				return err
			}
			return errBoom
		}, errBoom, false, 0},
		{"failed statement rolls back", func(tx *statestore.Tx) error {
			if err := insert(tx, "failed statement rolls back-1"); err != nil {
				return err
			}
			return insert(tx, "failed statement rolls back-1")
		}, statestore.ErrConflict, false, 0},
		{"panic rolls back", func(tx *statestore.Tx) error {
			if err := insert(tx, "panic rolls back-1"); err != nil {
				return err
			}
			panic(errBoom)
		}, nil, true, 0},
		{"reads its own writes", func(tx *statestore.Tx) error {
			if err := insert(tx, "reads its own writes-1"); err != nil {
				return err
			}
			var n int
			if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM contract_items WHERE id = ?`, "reads its own writes-1").Scan(&n); err != nil {
				return err
			}
			if n != 1 {
				return fmt.Errorf("own write not visible")
			}
			rows, err := tx.Query(ctx, `SELECT id FROM contract_items WHERE id = ?`, "reads its own writes-1")
			if err != nil {
				return err
			}
			defer rows.Close()
			if !rows.Next() {
				return fmt.Errorf("tx.Query found nothing")
			}
			return rows.Err()
		}, nil, false, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			func() {
				defer func() {
					r := recover()
					if tc.panics && r == nil {
						t.Error("the panic did not propagate")
					}
					if !tc.panics && r != nil {
						t.Errorf("panic: %v", r)
					}
				}()
				err = db.Tx(ctx, tc.fn)
			}()
			if tc.wantErr == nil && err != nil {
				t.Fatalf("Tx: %v", err)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("Tx: %v, want %v", err, tc.wantErr)
			}
			if n := count(t, db, `SELECT COUNT(*) FROM contract_items WHERE id LIKE ?`, tc.name+"-%"); n != tc.rows {
				t.Fatalf("%d rows after Tx, want %d", n, tc.rows)
			}
		})
	}
	// The write slot (or lock) is free again after a panic and an error.
	ctx2, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := db.Exec(ctx2, `INSERT INTO contract_items (id, name, n) VALUES (?, ?, ?)`, "after", "after", 1); err != nil {
		t.Fatalf("Exec after failed transactions: %v", err)
	}
	// A cancelled context fails the transaction without running fn.
	cancelled, cancel2 := context.WithCancel(ctx)
	cancel2()
	ran := false
	if err := db.Tx(cancelled, func(tx *statestore.Tx) error { ran = true; return nil }); err == nil || ran {
		t.Fatalf("Tx with a cancelled context: err = %v, fn ran = %v", err, ran)
	}
}

// testBatch checks DB.Batch: the transactions and statements made with
// its ctx commit together or not at all, AfterCommit hooks run only after
// that commit, and a batch that loses a race runs again.
func testBatch(t *testing.T, open func(t *testing.T) *statestore.DB) {
	db := setup(t, open)
	insert := func(ctx context.Context, id string) error {
		return db.Tx(ctx, func(tx *statestore.Tx) error {
			_, err := tx.Exec(ctx, `INSERT INTO contract_items (id, name, n) VALUES (?, ?, ?)`, id, "name-"+id, 1)
			return err
		})
	}
	ctx := context.Background()
	if db.InBatch(ctx) {
		t.Fatal("InBatch outside a batch")
	}
	// Two steps, each a transaction of its own when alone, and a plain
	// Exec: one commit.
	var hooks []string
	err := db.Batch(ctx, func(ctx context.Context) error {
		if !db.InBatch(ctx) {
			t.Error("InBatch false inside a batch")
		}
		if err := insert(ctx, "b-1"); err != nil {
			return err
		}
		if err := db.Tx(ctx, func(tx *statestore.Tx) error {
			tx.AfterCommit(func() { hooks = append(hooks, "second") })
			_, err := tx.Exec(ctx, `INSERT INTO contract_items (id, name, n) VALUES (?, ?, ?)`, "b-2", "name-b-2", 1)
			return err
		}); err != nil {
			return err
		}
		if _, err := db.Exec(ctx, `UPDATE contract_items SET n = 2 WHERE id = ?`, "b-1"); err != nil {
			return err
		}
		// Not committed yet: a read outside the batch does not see it,
		// and no hook ran.
		if n := count(t, db, `SELECT COUNT(*) FROM contract_items WHERE id LIKE 'b-%'`); n != 0 {
			t.Errorf("%d rows visible before the batch committed", n)
		}
		if len(hooks) != 0 {
			t.Errorf("hooks ran before the commit: %v", hooks)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := count(t, db, `SELECT COUNT(*) FROM contract_items WHERE id LIKE 'b-%'`); n != 2 {
		t.Errorf("%d rows after the batch, want 2", n)
	}
	if n := count(t, db, `SELECT n FROM contract_items WHERE id = 'b-1'`); n != 2 {
		t.Errorf("n = %d after the batch's update, want 2", n)
	}
	if !slices.Equal(hooks, []string{"second"}) {
		t.Errorf("hooks after the commit: %v", hooks)
	}

	// A step that fails rolls the steps before it back, and their hooks
	// never run.
	hooks = nil
	errBoom := errors.New("boom")
	err = db.Batch(ctx, func(ctx context.Context) error {
		if err := db.Tx(ctx, func(tx *statestore.Tx) error {
			tx.AfterCommit(func() { hooks = append(hooks, "rolled back") })
			_, err := tx.Exec(ctx, `INSERT INTO contract_items (id, name, n) VALUES (?, ?, ?)`, "r-1", "name-r-1", 1)
			return err
		}); err != nil {
			return err
		}
		return db.Tx(ctx, func(*statestore.Tx) error { return errBoom })
	})
	if !errors.Is(err, errBoom) {
		t.Fatalf("batch error %v, want boom", err)
	}
	if n := count(t, db, `SELECT COUNT(*) FROM contract_items WHERE id = 'r-1'`); n != 0 {
		t.Errorf("the failed batch left %d rows", n)
	}
	if len(hooks) != 0 {
		t.Errorf("hooks of a rolled back batch ran: %v", hooks)
	}

	// A batch that loses a race (here: says so once) runs again, whole.
	attempts := 0
	err = db.Batch(ctx, func(ctx context.Context) error {
		attempts++
		if err := insert(ctx, fmt.Sprintf("again-%d", attempts)); err != nil {
			return err
		}
		if attempts == 1 {
			return fmt.Errorf("lost a race: %w", statestore.ErrBusy)
		}
		return nil
	})
	if err != nil || attempts != 2 {
		t.Fatalf("retried batch: %v after %d attempts, want success after 2", err, attempts)
	}
	if n := count(t, db, `SELECT COUNT(*) FROM contract_items WHERE id LIKE 'again-%'`); n != 1 {
		t.Errorf("%d rows after a retried batch, want the second attempt's 1", n)
	}
	// Other errors are not retried.
	attempts = 0
	if err := db.Batch(ctx, func(context.Context) error { attempts++; return errBoom }); !errors.Is(err, errBoom) || attempts != 1 {
		t.Errorf("batch failing with boom: %v after %d attempts, want boom after 1", err, attempts)
	}
}

// testAwait checks Tx.Await: the work beside a transaction is waited for
// before it commits (in a batch, after the batch's last step), its failure
// rolls the transaction back, and it is waited for when the transaction
// fails otherwise too.
func testAwait(t *testing.T, open func(t *testing.T) *statestore.DB) {
	db := setup(t, open)
	ctx := context.Background()
	errBeside := errors.New("beside failed")
	insert := func(ctx context.Context, id string, beside func() error) error {
		return db.Tx(ctx, func(tx *statestore.Tx) error {
			if beside != nil {
				tx.Await(beside)
			}
			_, err := tx.Exec(ctx, `INSERT INTO contract_items (id, name, n) VALUES (?, ?, ?)`, id, "name-"+id, 1)
			return err
		})
	}

	// Alone: waited for after fn, before the commit.
	var order []string
	err := db.Tx(ctx, func(tx *statestore.Tx) error {
		tx.Await(func() error {
			if n := count(t, db, `SELECT COUNT(*) FROM contract_items WHERE id = 'a-1'`); n != 0 {
				t.Errorf("the row is visible before the wait: %d", n)
			}
			order = append(order, "wait")
			return nil
		})
		tx.AfterCommit(func() { order = append(order, "after commit") })
		_, err := tx.Exec(ctx, `INSERT INTO contract_items (id, name, n) VALUES (?, ?, ?)`, "a-1", "name-a-1", 1)
		order = append(order, "fn")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(order, []string{"fn", "wait", "after commit"}) {
		t.Errorf("order %v, want fn, wait, after commit", order)
	}
	if n := count(t, db, `SELECT COUNT(*) FROM contract_items WHERE id = 'a-1'`); n != 1 {
		t.Errorf("%d rows after the commit, want 1", n)
	}

	// The work beside fails: the transaction rolls back with its error.
	if err := insert(ctx, "a-2", func() error { return errBeside }); !errors.Is(err, errBeside) {
		t.Errorf("Tx with failing work beside: %v, want %v", err, errBeside)
	}
	if n := count(t, db, `SELECT COUNT(*) FROM contract_items WHERE id = 'a-2'`); n != 0 {
		t.Errorf("the failed transaction left %d rows", n)
	}

	// fn fails: the work beside is waited for all the same, and fn's
	// error is the one returned.
	errBoom := errors.New("boom")
	waited := false
	err = db.Tx(ctx, func(tx *statestore.Tx) error {
		tx.Await(func() error { waited = true; return errBeside })
		return errBoom
	})
	if !errors.Is(err, errBoom) || !waited {
		t.Errorf("failing fn: %v (waited %v), want boom, waited", err, waited)
	}

	// In a batch: waited for after the batch's last step, and a failure
	// rolls every step back.
	order = nil
	err = db.Batch(ctx, func(ctx context.Context) error {
		if err := insert(ctx, "a-3", func() error { order = append(order, "wait"); return nil }); err != nil {
			return err
		}
		order = append(order, "first step done")
		err := insert(ctx, "a-4", nil)
		order = append(order, "second step done")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(order, []string{"first step done", "second step done", "wait"}) {
		t.Errorf("batch order %v, want the wait after both steps", order)
	}
	if n := count(t, db, `SELECT COUNT(*) FROM contract_items WHERE id IN ('a-3', 'a-4')`); n != 2 {
		t.Errorf("%d rows after the batch, want 2", n)
	}
	err = db.Batch(ctx, func(ctx context.Context) error {
		if err := insert(ctx, "a-5", func() error { return errBeside }); err != nil {
			return err
		}
		return insert(ctx, "a-6", nil)
	})
	if !errors.Is(err, errBeside) {
		t.Errorf("batch with failing work beside: %v, want %v", err, errBeside)
	}
	if n := count(t, db, `SELECT COUNT(*) FROM contract_items WHERE id IN ('a-5', 'a-6')`); n != 0 {
		t.Errorf("the failed batch left %d rows", n)
	}
}

func testConcurrentWriters(t *testing.T, open func(t *testing.T) *statestore.DB) {
	ctx := context.Background()
	db := setup(t, open)
	const writers, each = 8, 200
	var wg sync.WaitGroup
	errs := make(chan error, writers*2)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				id := fmt.Sprintf("w%d-%d", w, i)
				if _, err := db.Exec(ctx, `INSERT INTO contract_items (id, name, n) VALUES (?, ?, ?)`, id, id, i); err != nil {
					errs <- fmt.Errorf("writer %d insert %d: %w", w, i, err)
					return
				}
			}
		})
		// Transactions that read then write, interleaved with the inserts.
		wg.Go(func() {
			for i := range each / 10 {
				err := db.Tx(ctx, func(tx *statestore.Tx) error {
					var n int
					if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM contract_items`).Scan(&n); err != nil {
						return err
					}
					id := fmt.Sprintf("t%d-%d", w, i)
					_, err := tx.Exec(ctx, `INSERT INTO contract_items (id, name, n) VALUES (?, ?, ?)`, id, id, n)
					return err
				})
				if err != nil {
					errs <- fmt.Errorf("tx writer %d tx %d: %w", w, i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := count(t, db, `SELECT COUNT(*) FROM contract_items`); n != writers*each+writers*each/10 {
		t.Fatalf("%d rows, want %d", n, writers*each+writers*each/10)
	}
}

func testReadDuringWrite(t *testing.T, open func(t *testing.T) *statestore.DB) {
	ctx := context.Background()
	db := setup(t, open)
	mustExec(t, db, `INSERT INTO contract_items (id, name, n) VALUES (?, ?, ?)`, "before", "before", 1)
	inTx := make(chan struct{})
	done := make(chan struct{})
	var txErr error
	go func() {
		defer close(done)
		txErr = db.Tx(ctx, func(tx *statestore.Tx) error {
			if _, err := tx.Exec(ctx, `INSERT INTO contract_items (id, name, n) VALUES (?, ?, ?)`, "during", "during", 2); err != nil {
				return err
			}
			close(inTx)
			time.Sleep(300 * time.Millisecond)
			return nil
		})
	}()
	<-inTx
	start := time.Now()
	// Readers are not blocked by an open write transaction, and do not see
	// its uncommitted rows.
	if n := count(t, db, `SELECT COUNT(*) FROM contract_items`); n != 1 {
		t.Errorf("reader saw %d rows during the write, want 1", n)
	}
	if d := time.Since(start); d > 200*time.Millisecond {
		t.Errorf("read took %v during an open write transaction", d)
	}
	<-done
	if txErr != nil {
		t.Fatalf("Tx: %v", txErr)
	}
	if n := count(t, db, `SELECT COUNT(*) FROM contract_items`); n != 2 {
		t.Errorf("%d rows after the write, want 2", n)
	}
}

func testRebind(t *testing.T, open func(t *testing.T) *statestore.DB) {
	ctx := context.Background()
	db := setup(t, open)
	// Question marks in literals are not placeholders.
	mustExec(t, db, `INSERT INTO contract_items (id, name, n) VALUES (?, 'what?', ?) -- a comment?`, "q1", 7)
	mustExec(t, db, `INSERT INTO contract_items /* really? */ (id, name, n, f) VALUES (?, ?, ?, ?)`, "q2", "it's ?", 8, 2.5)
	for _, tc := range []struct {
		query string
		args  []any
		want  int
	}{
		{`SELECT COUNT(*) FROM contract_items WHERE name = 'what?' AND n = ?`, []any{7}, 1},
		{`SELECT COUNT(*) FROM contract_items WHERE name = ? AND n = ?`, []any{"it's ?", 8}, 1},
		{`SELECT COUNT(*) FROM contract_items WHERE id IN (?, ?, ?) AND name <> '?'`, []any{"q1", "q2", "q3"}, 2},
		{`SELECT COUNT(*) FROM contract_items WHERE n > ? AND f >= ?`, []any{7, 2.5}, 1},
		{`SELECT COUNT(*) FROM "contract_items" WHERE id = ?`, []any{"q2"}, 1},
	} {
		if n := count(t, db, tc.query, tc.args...); n != tc.want {
			t.Errorf("%s %v: %d, want %d", tc.query, tc.args, n, tc.want)
		}
		// The same through a transaction.
		var n int
		err := db.Tx(ctx, func(tx *statestore.Tx) error { return tx.QueryRow(ctx, tc.query, tc.args...).Scan(&n) })
		if err != nil || n != tc.want {
			t.Errorf("in Tx: %s %v: %d, %v; want %d", tc.query, tc.args, n, err, tc.want)
		}
	}
}

func testBytes(t *testing.T, open func(t *testing.T) *statestore.DB) {
	ctx := context.Background()
	db := open(t)
	if err := db.Migrate(ctx, statestore.Migration{Package: "bytes", Version: 1,
		SQL:        `CREATE TABLE bytes_items (id TEXT PRIMARY KEY, b BLOB NOT NULL, at BIGINT NOT NULL)`,
		DialectSQL: map[string]string{statestore.Postgres: `CREATE TABLE bytes_items (id TEXT PRIMARY KEY, b BYTEA NOT NULL, at BIGINT NOT NULL)`},
	}); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	now := time.Now()
	for _, b := range [][]byte{{}, {0}, []byte("{\"bad json"), {0xff, 0xfe, 0, 1, '\'', '?'}} {
		id := statestore.NewID("b")
		mustExec(t, db, `INSERT INTO bytes_items (id, b, at) VALUES (?, ?, ?)`, id, b, statestore.TimeToDB(now))
		var got []byte
		var at int64
		if err := db.QueryRow(ctx, `SELECT b, at FROM bytes_items WHERE id = ?`, id).Scan(&got, &at); err != nil {
			t.Fatalf("Scan: %v", err)
		}
		if string(got) != string(b) {
			t.Errorf("bytes %q read back as %q", b, got)
		}
		if !statestore.TimeFromDB(at).Equal(now) {
			t.Errorf("time %v read back as %v", now, statestore.TimeFromDB(at))
		}
	}
}

// testCached: statements run through the statement cache behave as
// uncached ones, across transactions (and so connections), rollbacks
// included, inside and outside transactions.
func testCached(t *testing.T, open func(t *testing.T) *statestore.DB) {
	db := setup(t, open)
	ctx := context.Background()
	for i := range 6 {
		err := db.Tx(ctx, func(tx *statestore.Tx) error {
			if _, err := tx.ExecCached(ctx, `INSERT INTO contract_items (id, name, n) VALUES (?, ?, ?), (?, ?, ?)`,
				fmt.Sprintf("c%d-a", i), fmt.Sprintf("c%d-a", i), 7, fmt.Sprintf("c%d-b", i), fmt.Sprintf("c%d-b", i), 7); err != nil {
				return err
			}
			rows, err := tx.QueryCached(ctx, `SELECT count(*) FROM contract_items WHERE n = ?`, 7)
			if err != nil {
				return err
			}
			defer rows.Close()
			var n int
			if !rows.Next() {
				return fmt.Errorf("count: no row: %v", rows.Err())
			}
			if err := rows.Scan(&n); err != nil {
				return err
			}
			if want := 2*((i+1)/2) + 2; n != want {
				return fmt.Errorf("round %d: %d rows inside the transaction, want %d", i, n, want)
			}
			if i%2 == 1 {
				return errRollback // odd rounds roll back
			}
			return nil
		})
		if err != nil && !errors.Is(err, errRollback) {
			t.Fatalf("round %d: %v", i, err)
		}
	}
	if n := count(t, db, `SELECT count(*) FROM contract_items WHERE n = 7`); n != 6 {
		t.Errorf("%d rows kept, want 6 (three committed rounds of two)", n)
	}
	// A conflict through a cached statement is a conflict.
	err := db.Tx(ctx, func(tx *statestore.Tx) error {
		_, err := tx.ExecCached(ctx, `INSERT INTO contract_items (id, name, n) VALUES (?, ?, ?), (?, ?, ?)`, "c0-a", "again", 0, "new", "new", 0)
		return err
	})
	if !errors.Is(err, statestore.ErrConflict) {
		t.Errorf("duplicate id through a cached statement: %v, want ErrConflict", err)
	}
	rows, err := db.QueryCached(ctx, `SELECT id FROM contract_items WHERE n = ? ORDER BY id`, 7)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if want := []string{"c0-a", "c0-b", "c2-a", "c2-b", "c4-a", "c4-b"}; !slices.Equal(ids, want) {
		t.Errorf("ids = %v, want %v", ids, want)
	}
}

var errRollback = errors.New("roll back")
