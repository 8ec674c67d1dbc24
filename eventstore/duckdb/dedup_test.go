package duckdb

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"pgregory.net/rapid"

	"tandem/event"
)

// Dedup stays exact when the in-memory filter is wrong most of the time:
// with hashes masked to a few bits before the filter sees them, nearly
// every new key collides with a stored one and must be told apart by the
// exact index, and, when the index's hashes are masked too, by the check
// against the table. Batches mix new keys, keys stored earlier, repeats
// within the batch and keys that differ only in their source; they go
// through Append or Stage (committed at once, later, or at the next
// writer); the index writes runs of a few hashes and merges them in the
// background; the store is reopened at random points (the index read back
// from its files, merges cut short). No duplicate may be stored and no
// unique event dropped, and the first stored copy must win.
func TestDedupExactWithCollidingFingerprints(t *testing.T) {
	dir := t.TempDir()
	run := 0
	rapid.Check(t, func(rt *rapid.T) {
		run++
		kept := rapid.UintRange(1, 10).Draw(rt, "keptBits")
		mask := ^uint64(0) << (64 - kept)
		opts := openOptions{fpMask: mask, indexMask: ^uint64(0),
			loadChunk: int64(rapid.IntRange(1, 100).Draw(rt, "loadChunk")),
			flushLen:  rapid.IntRange(1, 64).Draw(rt, "flushLen"),
			groupRows: rapid.IntRange(1, 200).Draw(rt, "groupRows"),
			// The exact check's first query reads this many of the
			// newest rows, the second the rest.
			recentRows: int64(rapid.IntRange(1, 300).Draw(rt, "recentRows"))}
		indexMasked := rapid.Bool().Draw(rt, "indexMasked")
		if indexMasked {
			opts.indexMask = mask
		}
		path := filepath.Join(dir, fmt.Sprintf("r%d.duckdb", run))
		s, err := open(path, opts)
		if err != nil {
			rt.Fatal(err)
		}
		defer func() { s.Close() }()
		ctx := context.Background()
		type key struct{ src, msg string }
		first := map[key]string{} // key -> Name of the copy stored first
		base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		keyGen := rapid.Custom(func(t *rapid.T) key {
			return key{
				src: rapid.SampledFrom([]string{"a", "b", "ab"}).Draw(t, "src"),
				msg: fmt.Sprint(rapid.IntRange(0, 400).Draw(t, "msg")),
			}
		})
		batches := rapid.IntRange(1, 12).Draw(rt, "batches")
		serial := 0
		var st DedupStats // summed over all opens
		sum := func() {
			d := s.DedupStats()
			st.CheckedIDs += d.CheckedIDs
			st.FilterHits += d.FilterHits
		}
		for b := range batches {
			if b > 0 && rapid.IntRange(0, 4).Draw(rt, "reopen") == 0 {
				sum()
				if err := s.Close(); err != nil {
					rt.Fatal(err)
				}
				if s, err = open(path, opts); err != nil {
					rt.Fatal(err)
				}
				if s.DedupStats().IndexRebuilt {
					rt.Fatalf("the index was rebuilt at a reopen: it did not cover the table")
				}
			}
			keys := rapid.SliceOfN(keyGen, 1, 120).Draw(rt, "batch")
			evs := make([]event.Event, len(keys))
			wantNew := 0
			inBatch := map[key]bool{}
			for i, k := range keys {
				serial++
				e := testEvent(k.src, k.msg, base.Add(time.Duration(serial)*time.Second))
				e.Name = fmt.Sprintf("copy-%d", serial)
				evs[i] = e
				if _, stored := first[k]; !stored && !inBatch[k] {
					inBatch[k] = true
					first[k] = e.Name
					wantNew++
				}
			}
			var n int
			switch rapid.IntRange(0, 2).Draw(rt, "write") {
			case 0:
				n, err = s.Append(ctx, evs)
			case 1:
				n, _, err = s.Stage(ctx, evs)
			default:
				if n, _, err = s.Stage(ctx, evs); err == nil {
					err = s.Commit(ctx)
				}
			}
			if err != nil {
				rt.Fatal(err)
			}
			if n != wantNew {
				rt.Fatalf("batch %d: stored %d, want %d new", b, n, wantNew)
			}
		}
		if err := s.Commit(ctx); err != nil {
			rt.Fatal(err)
		}
		count, err := s.Count(ctx)
		if err != nil || count != int64(len(first)) {
			rt.Fatalf("Count = %d (%v), want %d", count, err, len(first))
		}
		for k, name := range first {
			got, err := s.Get(ctx, k.src, k.msg)
			if err != nil || len(got) != 1 || got[0].Name != name {
				rt.Fatalf("Get(%q, %q) = %d events (%v), want the one named %s", k.src, k.msg, len(got), err, name)
			}
		}
		sum()
		if len(first) > 50 && st.FilterHits == 0 {
			rt.Fatalf("no filter hits with %d-bit hashes: the test hook is not in effect", kept)
		}
		if indexMasked && len(first) > 50 && st.CheckedIDs == 0 {
			rt.Fatalf("no exact checks with %d-bit index hashes: the test hook is not in effect", kept)
		}
	})
}

// Open rebuilds the index from the table when it does not cover it (here:
// rows written in SQL, as by an older build, or the index removed) and loads the filter from it
// in chunks; keys at the edges of the chunks, and at both ends of the hash
// space, are all found, and an index that covers the table is reused.
func TestOpenRebuildsIndex(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "events.duckdb")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	var hashes []uint64
	for _, p := range []uint64{0, 1, 2, 7, 100, 2047, 2048, 4094, 4095} {
		base := p << (64 - partBits)
		hashes = append(hashes, base, base+1, base|(1<<(64-partBits)-1))
	}
	hashes = append(hashes, ^uint64(0))
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, h := range hashes {
		if _, err := s.db.Exec(fmt.Sprintf(`INSERT INTO events (source_id, message_id, type, timestamp, received_at, raw, key_hash)
			VALUES ('s', 'm%d', 'track', ?, ?, '{}', %d::UBIGINT)`, i, h), base, base); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	distinct := map[uint64]bool{}
	for _, h := range hashes {
		distinct[h>>(64-defaultWidth)] = true
	}
	for i, chunk := range []int64{1, 2, 3, 5, 1000} {
		// Rebuilt at the first open, and whenever its directory is gone,
		// sorting the hashes in parts of chunk.
		rebuild := i == 0 || i%2 == 0
		if rebuild {
			if err := os.RemoveAll(indexDir(path)); err != nil {
				t.Fatal(err)
			}
		}
		s, err := open(path, openOptions{loadChunk: chunk, rebuildChunk: int(chunk)})
		if err != nil {
			t.Fatal(err)
		}
		if st := s.DedupStats(); st.IndexRebuilt != rebuild || st.IndexHashes != int64(len(hashes)) {
			t.Errorf("chunk %d: rebuilt %v, %d hashes in the index; want rebuilt %v, %d hashes", chunk, st.IndexRebuilt, st.IndexHashes, rebuild, len(hashes))
		}
		for _, h := range hashes {
			if !s.keys.mayContain(h) {
				t.Errorf("chunk %d: hash %#x not in the filter", chunk, h)
			}
			if got, err := s.index.containsAny([]uint64{h}); err != nil || len(got) != 1 {
				t.Errorf("chunk %d: hash %#x not in the index (%v)", chunk, h, err)
			}
		}
		if s.keys.n != int64(len(distinct)) {
			t.Errorf("chunk %d: %d fingerprints loaded, want %d", chunk, s.keys.n, len(distinct))
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// copyStore copies a store's files (database, write-ahead log, key index)
// while it is open: what a crash at this moment would leave on disk.
func copyStore(t *testing.T, from, to string) {
	t.Helper()
	for _, suffix := range []string{"", ".wal"} {
		b, err := os.ReadFile(from + suffix)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to+suffix, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The background merger may remove a run between the listing of the
	// index's directory and its copy: a copy that finds a file gone is
	// made again (one that finds every file listed is a state a crash
	// could leave: runs are written whole before older ones are removed).
	for try := 1; ; try++ {
		if err := os.RemoveAll(indexDir(to)); err != nil {
			t.Fatal(err)
		}
		err := os.CopyFS(indexDir(to), os.DirFS(indexDir(from)))
		if err == nil {
			return
		}
		if !errors.Is(err, os.ErrNotExist) || try == 20 {
			t.Fatal(err)
		}
	}
}

// After a crash the index and the table agree: a store reopened from the
// files as they were while it ran (committed batches, a staged batch not
// yet committed, runs written and merging) neither stores a committed
// event again nor drops the staged events that never committed.
func TestDedupAfterCrash(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "events.duckdb")
	ctx := context.Background()
	s, err := open(path, openOptions{flushLen: 50})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	batch := func(from, n int) []event.Event {
		evs := make([]event.Event, n)
		for i := range evs {
			evs[i] = testEvent("src", fmt.Sprint("m", from+i), base.Add(time.Duration(from+i)*time.Second))
		}
		return evs
	}
	for b := range 10 {
		if n, err := s.Append(ctx, batch(b*100, 100)); err != nil || n != 100 {
			t.Fatalf("Append = %d, %v", n, err)
		}
	}
	// Staged, not committed: its keys are in the index's log already.
	if n, left, err := s.Stage(ctx, batch(1000, 100)); err != nil || n != 100 || left != 100 {
		t.Fatalf("Stage = %d, %d, %v; want 100 staged, 100 left", n, left, err)
	}
	crashed := filepath.Join(dir, "crashed.duckdb")
	copyStore(t, path, crashed)

	c, err := open(crashed, openOptions{flushLen: 50})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if st := c.DedupStats(); st.IndexRebuilt {
		t.Errorf("the index was rebuilt after the crash; it should have been read back")
	}
	if n, _ := c.Count(ctx); n != 1000 {
		t.Fatalf("%d events after the crash, want the 1000 committed", n)
	}
	// Everything again: only the staged batch is new.
	for b := range 11 {
		n, err := c.Append(ctx, batch(b*100, 100))
		want := 0
		if b == 10 {
			want = 100
		}
		if err != nil || n != want {
			t.Fatalf("batch %d again after the crash: stored %d (%v), want %d", b, n, err, want)
		}
	}
	if n, _ := c.Count(ctx); n != 1100 {
		t.Fatalf("%d events, want 1100", n)
	}
	if st := c.DedupStats(); st.CheckedIDs < 1000 {
		t.Errorf("%d ids checked against the table, want the 1000 committed ones at least", st.CheckedIDs)
	}
}

// Erased and expired events leave the index consistent: their ids sent
// again are stored again (once), before and after a reopen.
func TestDedupAfterEraseAndExpire(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "events.duckdb")
	ctx := context.Background()
	s, err := open(path, openOptions{flushLen: 30})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Close() }()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	batch := func(user string, from, n int) []event.Event {
		evs := make([]event.Event, n)
		for i := range evs {
			evs[i] = testEvent("src", fmt.Sprint("m", from+i), base.Add(time.Duration(from+i)*time.Hour))
			evs[i].UserID = user
		}
		return evs
	}
	appendWant := func(what string, evs []event.Event, want int) {
		t.Helper()
		if n, err := s.Append(ctx, evs); err != nil || n != want {
			t.Fatalf("%s: stored %d (%v), want %d", what, n, err, want)
		}
	}
	appendWant("u1", batch("u1", 0, 40), 40)
	appendWant("u2", batch("u2", 40, 40), 40)
	if n, err := s.Erase(ctx, []string{"user_id:u1"}); err != nil || n != 40 {
		t.Fatalf("Erase = %d, %v", n, err)
	}
	// Events 40-59 are before 60 h: expired.
	if n, err := s.Expire(ctx, "src", base.Add(60*time.Hour)); err != nil || n != 20 {
		t.Fatalf("Expire = %d, %v", n, err)
	}
	for round := range 2 {
		if round == 1 {
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if s, err = open(path, openOptions{flushLen: 30}); err != nil {
				t.Fatal(err)
			}
			// Erased again: round 0 stored them back.
			if _, err := s.Erase(ctx, []string{"user_id:u1"}); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Expire(ctx, "src", base.Add(60*time.Hour)); err != nil {
				t.Fatal(err)
			}
		}
		appendWant("erased ids again", batch("u1", 0, 40), 40)
		appendWant("expired and kept ids again", batch("u2", 40, 40), 20)
		appendWant("all of them once more", append(batch("u1", 0, 40), batch("u2", 40, 40)...), 0)
		if n, _ := s.Count(ctx); n != 80 {
			t.Fatalf("round %d: %d events, want 80", round, n)
		}
	}
}
