package bench

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"tandem/eventstore/duckdb"
)

// A window filled in bulk (rows in SQL, the key index written from the
// known messageIds) is what a node would have: its open uses the index as
// it is (no rebuild), rejects a redelivered id of the window and stores a
// new one, and the index's run is byte for byte the one a node's rebuild
// from the table writes.
func TestBulkWindowIndexAsRebuilt(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	const n = 30_000
	logf := func(string, ...any) {}

	bulk := filepath.Join(dir, "bulk.duckdb")
	if err := fillFile(ctx, bulk, n, logf); err != nil {
		t.Fatal(err)
	}
	bulkRun, err := os.ReadFile(filepath.Join(bulk+".keys", "run-1-1"))
	if err != nil {
		t.Fatal(err)
	}

	// The same window without the bulk index: the first open rebuilds it.
	rebuilt := filepath.Join(dir, "rebuilt.duckdb")
	s, err := duckdb.Open(rebuilt)
	if err != nil {
		t.Fatal(err)
	}
	if err := fillWindow(ctx, s, n, logf); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err = duckdb.Open(rebuilt); err != nil {
		t.Fatal(err)
	}
	if !s.DedupStats().IndexRebuilt {
		t.Fatal("open of a window filled in SQL without its index did not rebuild it")
	}
	s.Close()
	rebuiltRun, err := os.ReadFile(filepath.Join(rebuilt+".keys", "run-1-1"))
	if err != nil {
		t.Fatal(err)
	}
	if len(bulkRun) != 8*n || !bytes.Equal(bulkRun, rebuiltRun) {
		t.Fatalf("bulk run: %d bytes, rebuilt run: %d bytes, equal %v (want %d, equal)", len(bulkRun), len(rebuiltRun), bytes.Equal(bulkRun, rebuiltRun), 8*n)
	}

	s, err = duckdb.Open(bulk)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if st := s.DedupStats(); st.IndexRebuilt || st.IndexHashes != n {
		t.Fatalf("open of the bulk window: rebuilt %v, %d hashes (want the bulk index as it is, %d)", st.IndexRebuilt, st.IndexHashes, n)
	}
	old := dedupBatch(3, "w", n-2)[:1] // w29998, stored by the fill
	if stored, err := s.Append(ctx, old); err != nil || stored != 0 {
		t.Fatalf("redelivered window id: stored %d, %v (want 0)", stored, err)
	}
	if stored, err := s.Append(ctx, dedupBatch(2, "w", n)); err != nil || stored != 2 {
		t.Fatalf("new ids: stored %d, %v (want 2)", stored, err)
	}
	if stored, err := s.Append(ctx, dedupBatch(1, "w", n+1)); err != nil || stored != 0 {
		t.Fatalf("new id sent again: stored %d, %v (want 0)", stored, err)
	}
}

// The bulk index refuses keys that cannot cover the table, changing nothing.
func TestBulkWindowIndexRefusesTooFewKeys(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "w.duckdb")
	if err := fillFile(ctx, path, 5_000, func(string, ...any) {}); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(filepath.Join(path+".keys", "run-1-1"))
	if err != nil {
		t.Fatal(err)
	}
	if err := writeWindowIndex(path, 4_000); err == nil {
		t.Fatal("an index of 4,000 keys for 5,000 rows was written")
	}
	after, err := os.ReadFile(filepath.Join(path+".keys", "run-1-1"))
	if err != nil || !bytes.Equal(before, after) {
		t.Fatalf("the refused write changed the index (%v)", err)
	}
}
