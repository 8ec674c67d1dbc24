package duckdb

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"pgregory.net/rapid"

	"tandem/event"
	"tandem/eventstore/storetest"
)

// Stage keeps exactly what Append would: a random run of Stage, Commit,
// Append and reopen calls (a row group of a few rows, so that Stage
// commits on its own often; fingerprints that collide often) must store
// each key once, the first copy, and Stage's pending count must say
// exactly which events are committed: the store holds the keys of every
// event passed before the pending ones, and none staged after them.
func TestStageCommitsWhatItSays(t *testing.T) {
	dir := t.TempDir()
	run := 0
	rapid.Check(t, func(rt *rapid.T) {
		run++
		opts := openOptions{
			groupRows: rapid.IntRange(1, 60).Draw(rt, "groupRows"),
			fpMask:    ^uint64(0) << (64 - rapid.UintRange(2, 48).Draw(rt, "keptBits")),
		}
		path := filepath.Join(dir, fmt.Sprintf("r%d.duckdb", run))
		s, err := open(path, opts)
		if err != nil {
			rt.Fatal(err)
		}
		defer func() { s.Close() }()
		ctx := context.Background()
		type key struct{ src, msg string }
		first := map[key]string{}   // key -> Name of the copy that must win
		committed := map[key]bool{} // keys the store must hold
		var staged []event.Event    // passed to Stage, maybe not committed
		base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		serial := 0
		commitAll := func() {
			for _, e := range staged {
				committed[key{e.SourceID, e.MessageID}] = true
			}
			staged = nil
		}
		check := func(what string) {
			n, err := s.Count(ctx)
			if err != nil {
				rt.Fatal(err)
			}
			if n != int64(len(committed)) {
				rt.Fatalf("after %s: %d events stored, want %d", what, n, len(committed))
			}
			for k := range committed {
				got, err := s.Get(ctx, k.src, k.msg)
				if err != nil || len(got) != 1 || got[0].Name != first[k] {
					rt.Fatalf("after %s: Get(%v) = %+v, %v; want the one copy %q", what, k, got, err, first[k])
				}
			}
			// Staged but uncommitted rows never reach a row group.
			if open := len(first) - len(committed); open >= opts.groupRows {
				rt.Fatalf("after %s: %d new events staged uncommitted, a row group is %d", what, open, opts.groupRows)
			}
		}
		for range rapid.IntRange(1, 15).Draw(rt, "ops") {
			op := rapid.IntRange(0, 9).Draw(rt, "op")
			switch {
			case op <= 5, op == 6:
				keys := rapid.SliceOfN(rapid.IntRange(0, 150), 1, 80).Draw(rt, "batch")
				evs := make([]event.Event, len(keys))
				for i, m := range keys {
					serial++
					src := []string{"a", "b"}[m%2]
					evs[i] = event.Event{SourceID: src, MessageID: fmt.Sprint(m), Type: "track",
						Name: fmt.Sprint("copy-", serial), Timestamp: base.Add(time.Duration(serial%7) * time.Second),
						ReceivedAt: base, Raw: []byte(`{}`)}
					k := key{src, fmt.Sprint(m)}
					if _, ok := first[k]; !ok {
						first[k] = evs[i].Name
					}
				}
				if op == 6 {
					if _, err := s.Append(ctx, evs); err != nil {
						rt.Fatal(err)
					}
					commitAll()
					staged = evs
					commitAll()
					check("Append")
					continue
				}
				_, pending, err := s.Stage(ctx, evs)
				if err != nil {
					rt.Fatal(err)
				}
				staged = append(staged, evs...)
				if pending > len(staged) {
					rt.Fatalf("pending %d of %d staged", pending, len(staged))
				}
				done := staged[:len(staged)-pending]
				for _, e := range done {
					committed[key{e.SourceID, e.MessageID}] = true
				}
				staged = staged[len(done):]
				// The pending events are not visible yet, except those
				// stored before.
				for _, e := range staged {
					k := key{e.SourceID, e.MessageID}
					if got, _ := s.Get(ctx, k.src, k.msg); len(got) > 0 && !committed[k] {
						rt.Fatalf("pending event %v visible before its commit", k)
					}
				}
				check("Stage")
			case op == 7:
				if err := s.Commit(ctx); err != nil {
					rt.Fatal(err)
				}
				commitAll()
				check("Commit")
			default:
				if err := s.Close(); err != nil {
					rt.Fatal(err)
				}
				commitAll()
				if s, err = open(path, opts); err != nil {
					rt.Fatal(err)
				}
				check("reopen")
			}
		}
	})
}

// A failed Stage rolls back what was staged since the last commit, and
// the store goes on.
func TestStageErrorDropsUncommitted(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "e.duckdb"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ctx := context.Background()
	if _, pending, err := s.Stage(ctx, storetest.BenchEvents("a", 100, at)); err != nil || pending != 100 {
		t.Fatalf("Stage = pending %d, %v; want 100 pending", pending, err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, err := s.Stage(cancelled, storetest.BenchEvents("b", 100, at)); err == nil {
		t.Fatal("Stage with a cancelled context succeeded")
	}
	if err := s.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.Count(ctx); n != 0 {
		t.Fatalf("%d events stored after a failed Stage; want 0 (the staged ones are rolled back)", n)
	}
	// Staged again, they are stored: the filter's leftovers only cost
	// an exact check.
	if n, _, err := s.Stage(ctx, storetest.BenchEvents("a", 100, at)); err != nil || n != 100 {
		t.Fatalf("Stage again = %d, %v; want 100 new", n, err)
	}
	if err := s.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.Count(ctx); n != 100 {
		t.Fatalf("%d events stored, want 100", n)
	}
}

// A transaction of a whole row group goes straight to the database file:
// the WAL stays small (with 20,000-row commits it holds every row until a
// checkpoint, about 40 MB here).
func TestStageWritesRowGroupsPastTheWAL(t *testing.T) {
	if testing.Short() {
		t.Skip("appends a row group of events")
	}
	path := filepath.Join(t.TempDir(), "e.duckdb")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	staged := 0
	for i := 0; staged < rowGroupSize; i++ {
		evs := storetest.BenchEvents(fmt.Sprint("b", i), 20_000, at)
		_, pending, err := s.Stage(ctx, evs)
		if err != nil {
			t.Fatal(err)
		}
		staged += len(evs)
		if staged < rowGroupSize && pending != staged {
			t.Fatalf("after %d events, %d pending; want all (no commit before a row group)", staged, pending)
		}
		if staged >= rowGroupSize && pending != staged-rowGroupSize {
			t.Fatalf("after %d events, %d pending; want %d (a commit at the row group)", staged, pending, staged-rowGroupSize)
		}
	}
	if n, _ := s.Count(ctx); n != rowGroupSize {
		t.Fatalf("%d events committed, want %d", n, rowGroupSize)
	}
	fi, err := os.Stat(path + ".wal")
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() > 4<<20 {
		t.Fatalf("WAL holds %d bytes after a row group's commit; want the rows in the file, not the WAL", fi.Size())
	}
}

// A batch prepared ahead (Prepare, as the pipeline's decode stage does)
// is stored exactly as Stage stores it: the same rows, facts and all;
// repeats within it and a second staging of it are dropped.
func TestStagePreparedStoresWhatStageStores(t *testing.T) {
	ctx := context.Background()
	at := time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC)
	evs := e2eEvents("prep", 200, at)
	// A page view from a campaign (touch columns), an event whose JSON is
	// not valid UTF-8, and a repeat of a key within the batch.
	evs[0].Raw = []byte(`{"type":"page","name":"Home","context":{"page":{"url":"https://shop.example/?utm_source=news&utm_medium=email&utm_campaign=dec","referrer":"https://mail.example/"}}}`)
	evs[1].Raw = []byte("{\"type\":\"page\",\"name\":\"bad \xff\"}")
	dup := evs[7]
	dup.Name = "a later copy"
	evs = append(evs, dup)
	const digest = `SELECT count(*), md5(string_agg(e::VARCHAR, chr(10) ORDER BY message_id)) FROM events AS e`
	stored := func(stage func(s *Store) error) (int, string) {
		s, err := Open(filepath.Join(t.TempDir(), "e.duckdb"))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if err := stage(s); err != nil {
			t.Fatal(err)
		}
		if err := s.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		var n int
		var d string
		if err := s.db.QueryRowContext(ctx, digest).Scan(&n, &d); err != nil {
			t.Fatal(err)
		}
		return n, d
	}
	n0, d0 := stored(func(s *Store) error {
		n, _, err := s.Stage(ctx, evs)
		if err == nil && n != len(evs)-1 {
			err = fmt.Errorf("Stage = %d new, want %d", n, len(evs)-1)
		}
		return err
	})
	n1, d1 := stored(func(s *Store) error {
		p := s.Prepare(evs)
		if len(p.Events()) != len(evs) {
			return fmt.Errorf("prepared %d events, want %d", len(p.Events()), len(evs))
		}
		n, _, err := s.StagePrepared(ctx, p)
		if err == nil && n != len(evs)-1 {
			err = fmt.Errorf("StagePrepared = %d new, want %d", n, len(evs)-1)
		}
		if err != nil {
			return err
		}
		// Staged again (a retry): all of them duplicates now.
		if n, _, err = s.StagePrepared(ctx, p); err == nil && n != 0 {
			err = fmt.Errorf("StagePrepared again = %d new, want 0", n)
		}
		return err
	})
	if n0 != len(evs)-1 || n1 != n0 || d1 != d0 {
		t.Fatalf("prepared: %d rows, digest %s; Stage: %d rows, digest %s", n1, d1, n0, d0)
	}
}
