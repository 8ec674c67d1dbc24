package duckdb

import (
	"context"
	"fmt"
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
			groupRows: rapid.IntRange(1, 200).Draw(rt, "groupRows")}
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
// rows written in SQL, as by an older build) and loads the filter from it
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
		s, err := open(path, openOptions{loadChunk: chunk})
		if err != nil {
			t.Fatal(err)
		}
		if st := s.DedupStats(); st.IndexRebuilt != (i == 0) || st.IndexHashes != int64(len(hashes)) {
			t.Errorf("chunk %d: rebuilt %v, %d hashes in the index; want rebuilt only at the first open, %d hashes", chunk, st.IndexRebuilt, st.IndexHashes, len(hashes))
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
