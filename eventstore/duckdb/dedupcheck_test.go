package duckdb

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"tandem/event"
)

// The exact check reads the newest rows first and the older ones only
// for the keys not found there: a duplicate of an old event is found
// among the older rows, also when a newer row has its hash under another
// key (a 64-bit collision, made here in SQL), and an event whose hash
// only collides is stored.
func TestDedupCheckOlderRows(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.duckdb")
	s, err := open(path, openOptions{recentRows: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	batch := func(prefix string, n int) []event.Event {
		evs := make([]event.Event, n)
		for i := range evs {
			evs[i] = testEvent("web", fmt.Sprintf("%s%d", prefix, i), base.Add(time.Duration(i)*time.Second))
		}
		return evs
	}
	if n, err := s.Append(ctx, batch("old", 5)); err != nil || n != 5 {
		t.Fatalf("Append = %d, %v", n, err)
	}
	if n, err := s.Append(ctx, batch("new", 50)); err != nil || n != 50 {
		t.Fatalf("Append = %d, %v", n, err)
	}
	// A newer row under another key with old0's hash.
	h, _ := keyHash(nil, "web", "old0")
	if _, err := s.db.Exec(fmt.Sprintf(`INSERT INTO events (source_id, message_id, type, timestamp, received_at, raw, key_hash, touch)
		VALUES ('web', 'collider', 'track', now(), now(), '{}', %d::UBIGINT, 0)`, h)); err != nil {
		t.Fatal(err)
	}
	s.tableRows++
	// old0..4 (old0's hash also newest), new45..49 (among the newest):
	// all stored.
	redelivered := append(batch("old", 5), batch("new", 50)[45:]...)
	before := s.DedupStats().CheckQueries
	if n, err := s.Append(ctx, redelivered); err != nil || n != 0 {
		t.Fatalf("redelivery: %d stored (%v), want 0", n, err)
	}
	if q := s.DedupStats().CheckQueries - before; q != 2 {
		t.Errorf("%d check queries, want 2 (newest rows, then older)", q)
	}
	// The same through Stage, committed or not.
	if n, _, err := s.Stage(ctx, redelivered); err != nil || n != 0 {
		t.Fatalf("staged redelivery: %d stored (%v), want 0", n, err)
	}
	// Recent duplicates alone: one query.
	before = s.DedupStats().CheckQueries
	if n, err := s.Append(ctx, batch("new", 50)[48:]); err != nil || n != 0 {
		t.Fatalf("recent redelivery: %d stored (%v), want 0", n, err)
	}
	if q := s.DedupStats().CheckQueries - before; q != 1 {
		t.Errorf("%d check queries for duplicates of the newest rows, want 1", q)
	}
	n, err := s.Count(ctx)
	if err != nil || n != 56 {
		t.Fatalf("Count = %d, %v; want 56", n, err)
	}
	got, err := s.Get(ctx, "web", "old0")
	if err != nil || len(got) != 1 {
		t.Fatalf("Get(old0) = %d events, %v", len(got), err)
	}
}
