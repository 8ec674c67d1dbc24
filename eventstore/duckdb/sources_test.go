package duckdb

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"tandem/event"
)

// getSources returns the sources of the events Get finds for msg without
// a source, sorted.
func getSources(t *testing.T, s *Store, msg string) []string {
	t.Helper()
	got, err := s.Get(context.Background(), "", msg)
	if err != nil {
		t.Fatalf("Get(%q) without a source: %v", msg, err)
	}
	var out []string
	for _, e := range got {
		out = append(out, e.SourceID)
	}
	slices.Sort(out)
	return out
}

// The sources of appended and staged events are kept in the file: after
// a reopen that reads the key index from its files (no scan of the
// table), Get without a source finds the events of every source, those of
// the first Append, of a Stage committed later and of a Stage committed
// by Close.
func TestSourcesKeptAcrossReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.duckdb")
	ctx := context.Background()
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if _, err := s.Append(ctx, []event.Event{testEvent("web", "m1", now), testEvent("ios", "m1", now)}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Stage(ctx, []event.Event{testEvent("server", "m1", now)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Stage(ctx, []event.Event{testEvent("import", "m1", now)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	want := []string{"import", "ios", "server", "web"}
	for range 2 {
		if s, err = Open(path); err != nil {
			t.Fatal(err)
		}
		if s.DedupStats().IndexRebuilt {
			t.Fatal("the key index was rebuilt: the open scanned the table")
		}
		if got := getSources(t, s, "m1"); !slices.Equal(got, want) {
			t.Fatalf("after reopen: Get without a source found the sources %q, want %q", got, want)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// A store written by a build without event_sources (schema version 5)
// gets the list from its events at the upgrade; rows written in SQL to a
// store (as `tandem bench` fills one) get theirs at the next open that
// rebuilds the key index for them.
func TestSourcesMigratedAndRebuilt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.duckdb")
	old, err := sql.Open("duckdb", path)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range append(migrations[:5:5],
		`CREATE TABLE schema_version (version INTEGER NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp)`,
		`INSERT INTO schema_version (version) VALUES (1), (2), (3), (4), (5)`) {
		if _, err := old.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	insert := func(db *sql.DB, src, msg string) {
		t.Helper()
		h, _ := keyHash(nil, src, msg)
		if _, err := db.Exec(fmt.Sprintf(`INSERT INTO events (source_id, message_id, type, timestamp, received_at, raw, key_hash, touch)
			VALUES (?, ?, 'track', now(), now(), '{}', %d::UBIGINT, 0)`, h), src, msg); err != nil {
			t.Fatal(err)
		}
	}
	insert(old, "web", "m1")
	insert(old, "ios", "m1")
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := getSources(t, s, "m1"), []string{"ios", "web"}; !slices.Equal(got, want) {
		t.Fatalf("after the upgrade: sources %q, want %q", got, want)
	}
	// Enough rows that the index does not cover the table (it allows for
	// a collision or two).
	for _, msg := range []string{"m1", "m2", "m3"} {
		insert(s.DB(), "filled", msg)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err = Open(path); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got, want := getSources(t, s, "m1"), []string{"filled", "ios", "web"}; !slices.Equal(got, want) {
		t.Fatalf("after rows written in SQL: sources %q, want %q", got, want)
	}
	// Redelivered, they are duplicates.
	now := time.Now()
	if n, err := s.Append(context.Background(), []event.Event{testEvent("filled", "m1", now), testEvent("web", "m1", now)}); err != nil || n != 0 {
		t.Fatalf("Append of stored events = %d, %v; want 0 stored", n, err)
	}
}
