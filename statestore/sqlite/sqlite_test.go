package sqlite_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tandem/statestore"
	"tandem/statestore/sqlite"
	"tandem/statestore/sqlite/sqlitetest"
	"tandem/statestore/statetest"
)

func TestContract(t *testing.T) {
	statetest.Run(t, sqlitetest.Open)
}

func TestPragmas(t *testing.T) {
	db := sqlitetest.Open(t)
	ctx := context.Background()
	// Every pooled connection has the settings, not just the first.
	conns := make([]interface{ Close() error }, 0, 4)
	for range 4 {
		c, err := db.SQL().Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		for _, tc := range []struct{ pragma, want string }{
			{"journal_mode", "wal"},
			{"synchronous", "2"},
			{"foreign_keys", "1"},
			{"secure_delete", "1"},
			{"busy_timeout", "10000"},
			{"wal_autocheckpoint", "0"},
		} {
			var got string
			if err := c.QueryRowContext(ctx, "PRAGMA "+tc.pragma).Scan(&got); err != nil {
				t.Fatalf("PRAGMA %s: %v", tc.pragma, err)
			}
			if !strings.EqualFold(got, tc.want) {
				t.Errorf("PRAGMA %s = %q, want %q", tc.pragma, got, tc.want)
			}
		}
	}
	for _, c := range conns {
		c.Close()
	}
	if db.Dialect().Name() != statestore.SQLite {
		t.Errorf("dialect %q", db.Dialect().Name())
	}
}

func TestFileMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	db, err := sqlite.Open(path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer db.Close()
	if _, err := db.Exec(context.Background(), `CREATE TABLE t (id TEXT PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, path + "-wal"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if mode := fi.Mode().Perm(); mode&0o077 != 0 {
			t.Errorf("%s has mode %v, want no group or other access", filepath.Base(p), mode)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	for _, path := range []string{
		"",
		":memory:",
		"file:x.db",
		filepath.Join(dir, "what?.db"),
		filepath.Join(dir, "missing-dir", "state.db"),
		dir, // a directory
	} {
		if db, err := sqlite.Open(path); err == nil {
			db.Close()
			t.Errorf("Open(%q) succeeded", path)
		}
	}
}

func TestReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	mig := statestore.Migration{Package: "p", Version: 1, SQL: `CREATE TABLE p_items (id TEXT PRIMARY KEY)`}
	for i := range 2 {
		db, err := sqlite.Open(path)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		if err := db.Migrate(ctx, mig); err != nil {
			t.Fatalf("Migrate (open %d): %v", i+1, err)
		}
		if _, err := db.Exec(ctx, `INSERT INTO p_items (id) VALUES (?)`, statestore.NewID("p")); err != nil {
			t.Fatal(err)
		}
		var n int
		if err := db.QueryRow(ctx, `SELECT COUNT(*) FROM p_items`).Scan(&n); err != nil || n != i+1 {
			t.Fatalf("open %d: %d rows, %v", i+1, n, err)
		}
		db.Close()
	}
}

// TestSecureDelete checks that deleted personal data does not linger in
// the database or its write-ahead log once checkpointed.
func TestSecureDelete(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	db, err := sqlite.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	marker := "erase-me-4f9c2b7d-jane.doe@example.com"
	for _, q := range []string{
		`CREATE TABLE people (id TEXT PRIMARY KEY, email TEXT NOT NULL)`,
		`INSERT INTO people (id, email) VALUES ('keep', 'someone@example.com')`,
	} {
		if _, err := db.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Exec(ctx, `INSERT INTO people (id, email) VALUES (?, ?)`, "gone", marker); err != nil {
		t.Fatal(err)
	}
	if err := sqlite.Checkpoint(ctx, db); err != nil {
		t.Fatal(err)
	}
	if !fileContains(t, path, marker) {
		t.Fatal("marker not in the database file before deletion; the test proves nothing")
	}
	if _, err := db.Exec(ctx, `DELETE FROM people WHERE id = ?`, "gone"); err != nil {
		t.Fatal(err)
	}
	if err := sqlite.Checkpoint(ctx, db); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, path + "-wal"} {
		if fileContains(t, p, marker) {
			t.Errorf("deleted data still in %s", filepath.Base(p))
		}
	}
}

func fileContains(t *testing.T, path, s string) bool {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Contains(b, []byte(s))
}

// TestBackgroundCheckpoint: commits append to the write-ahead log only;
// the log reaches the database file in the background while the database
// stays open, and the log does not grow without bound: back-to-back
// commits, which keep a checkpoint beside them from ever finding the log
// all copied, are held to the bound (here 2 MiB, a quarter of what is
// written) by a checkpoint through the write slot.
func TestBackgroundCheckpoint(t *testing.T) {
	defer sqlite.SetRestartFrames(512)()
	path := filepath.Join(t.TempDir(), "state.db")
	db, err := sqlite.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	if _, err := db.Exec(ctx, `CREATE TABLE blobs (id INTEGER PRIMARY KEY, b BLOB NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	size := func(p string) int64 {
		fi, err := os.Stat(p)
		if err != nil {
			return 0
		}
		return fi.Size()
	}
	before := size(path)
	row := bytes.Repeat([]byte{1}, 4000)
	var maxWAL int64
	for i := range 2000 {
		if err := db.Tx(ctx, func(tx *statestore.Tx) error {
			_, err := tx.Exec(ctx, `INSERT INTO blobs (id, b) VALUES (?, ?)`, i, row)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		maxWAL = max(maxWAL, size(path+"-wal"))
	}
	// About 8 MB were committed. Without checkpoints the database file
	// would keep its first pages and the log would hold all of it.
	deadline := time.Now().Add(10 * time.Second)
	for size(path) < before+6<<20 {
		if time.Now().After(deadline) {
			t.Fatalf("database file %d bytes (was %d), log %d: the log was not copied in the background", size(path), before, size(path+"-wal"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The bound, and what commits add while the last copy runs.
	if maxWAL > 3<<20 {
		t.Errorf("the log grew to %d bytes: checkpoints did not keep it near 512 pages (2 MiB) under 4 kB commits", maxWAL)
	}
}

// TestBusyMatchesErrBusy: a write SQLite refuses because another
// connection holds the database's write lock matches statestore.ErrBusy,
// so callers decide to retry with errors.Is, not by reading messages.
func TestBusyMatchesErrBusy(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	db, err := sqlite.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	if _, err := db.Exec(ctx, "CREATE TABLE t (x INTEGER)"); err != nil {
		t.Fatal(err)
	}
	// A second handle on the file that does not wait for locks.
	raw, err := sql.Open("sqlite3", path+"?_busy_timeout=0&_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	other := statestore.New(raw, sqlite.Dialect{})
	defer other.Close()

	held := make(chan struct{})
	release := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- db.Tx(ctx, func(tx *statestore.Tx) error {
			if _, err := tx.Exec(ctx, "INSERT INTO t VALUES (1)"); err != nil {
				return err
			}
			close(held)
			<-release
			return nil
		})
	}()
	<-held
	_, err = other.Exec(ctx, "INSERT INTO t VALUES (2)")
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !errors.Is(err, statestore.ErrBusy) {
		t.Fatalf("write while another connection holds the lock: %v, want ErrBusy", err)
	}
	if errors.Is(err, statestore.ErrConflict) {
		t.Fatalf("busy error also matches ErrConflict: %v", err)
	}
}
