package duckdb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"path/filepath"
	"testing"
	"time"
)

// TestMigrationForcedCompression opens a store file written at schema
// version 5 (before the events table had per-column compression): the
// migration keeps every row as it was, the dedup still knows the old
// events, and the copied table compresses raw with FSST, which DuckDB's
// own choice would not be for rows whose raw is always the same.
func TestMigrationForcedCompression(t *testing.T) {
	ctx := context.Background()
	file := filepath.Join(t.TempDir(), "events.duckdb")
	db, err := sql.Open("duckdb", file)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE schema_version (version INTEGER NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp)`); err != nil {
		t.Fatal(err)
	}
	for v := 1; v <= 5; v++ {
		if err := applyMigration(ctx, db, v); err != nil {
			t.Fatal(err)
		}
	}
	at := time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)
	old := e2eEvents("m", 3000, at)
	for i := range old {
		// One raw for every row: DuckDB would store it as a
		// dictionary of one string, or a constant.
		old[i].Raw = []byte(`{"type":"track","event":"Same"}`)
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The rows as that version's Append wrote them (its columns are
	// these, in this order), without its dedup index: the store
	// rebuilds one for a file without it.
	err = conn.Raw(func(dc any) error {
		tx, err := dc.(driver.ConnBeginTx).BeginTx(ctx, driver.TxOptions{})
		if err != nil {
			return err
		}
		if err := (&Store{}).appendRows(ctx, dc.(driver.Conn), prepare(old)); err != nil {
			tx.Rollback()
			return err
		}
		return tx.Commit()
	})
	if err == nil {
		_, err = conn.ExecContext(ctx, `CHECKPOINT`)
	}
	conn.Close()
	if err != nil {
		t.Fatal(err)
	}
	const digest = `SELECT count(*), md5(string_agg(e::VARCHAR, chr(10) ORDER BY message_id)) FROM events AS e`
	var n0 int
	var d0 string
	if err := db.QueryRowContext(ctx, digest).Scan(&n0, &d0); err != nil || n0 != len(old) {
		t.Fatalf("before: %d rows, %v", n0, err)
	}
	compression := func(q interface {
		QueryRowContext(context.Context, string, ...any) *sql.Row
	}, col string) string {
		var c string
		if err := q.QueryRowContext(ctx, `SELECT string_agg(DISTINCT compression, ',') FROM pragma_storage_info('events') WHERE column_name = ? AND segment_type <> 'VALIDITY'`, col).Scan(&c); err != nil {
			t.Fatal(err)
		}
		return c
	}
	if c := compression(db, "raw"); c == "FSST" {
		t.Fatalf("raw compressed %s before the migration: the test's data do not tell", c)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s, err := Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var v int
	if err := s.db.QueryRowContext(ctx, `SELECT max(version) FROM schema_version`).Scan(&v); err != nil || v != len(migrations) {
		t.Fatalf("schema version %d (%v), want %d", v, err, len(migrations))
	}
	var n1 int
	var d1 string
	if err := s.db.QueryRowContext(ctx, digest).Scan(&n1, &d1); err != nil || n1 != n0 || d1 != d0 {
		t.Fatalf("after the migration: %d rows, digest %s (%v); before %d, %s", n1, d1, err, n0, d0)
	}
	if _, err := s.db.ExecContext(ctx, `CHECKPOINT`); err != nil {
		t.Fatal(err)
	}
	for col, want := range map[string]string{"raw": "FSST", "key_hash": "Uncompressed", "type": "Dictionary"} {
		if c := compression(s.db, col); c != want {
			t.Errorf("%s compressed %s after the migration, want %s", col, c, want)
		}
	}
	// The old events are known to the dedup (its index was rebuilt from
	// the copied table), new ones are stored.
	if n, err := s.Append(ctx, old[:100]); err != nil || n != 0 {
		t.Fatalf("Append of stored events = %d, %v; want 0", n, err)
	}
	if n, _, err := s.Stage(ctx, e2eEvents("m2", 100, at)); err != nil || n != 100 {
		t.Fatalf("Stage of new events = %d, %v; want 100", n, err)
	}
	if err := s.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if c, err := s.Count(ctx); err != nil || c != int64(len(old)+100) {
		t.Fatalf("Count = %d, %v", c, err)
	}
}
