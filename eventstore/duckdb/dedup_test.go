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
// with hashes masked to a few bits before the filter sees them, nearly every new key collides
// with a stored one and must be told apart by the exact check. Batches mix
// new keys, keys stored earlier, repeats within the batch and keys that
// differ only in their source; the store is reopened (reloading the
// filter from the table) at random points. No duplicate may be stored and
// no unique event dropped, and the first stored copy must win.
func TestDedupExactWithCollidingFingerprints(t *testing.T) {
	dir := t.TempDir()
	run := 0
	rapid.Check(t, func(rt *rapid.T) {
		run++
		kept := rapid.UintRange(1, 10).Draw(rt, "keptBits")
		// Load the filter in ranges of a few keys, as with many millions.
		opts := openOptions{fpMask: ^uint64(0) << (64 - kept), loadChunk: int64(rapid.IntRange(1, 100).Draw(rt, "loadChunk"))}
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
		var checked int64 // ids the filter sent to the exact check, over all opens
		for b := range batches {
			if b > 0 && rapid.IntRange(0, 4).Draw(rt, "reopen") == 0 {
				checked += s.DedupStats().CheckedIDs
				if err := s.Close(); err != nil {
					rt.Fatal(err)
				}
				if s, err = open(path, opts); err != nil {
					rt.Fatal(err)
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
			n, err := s.Append(ctx, evs)
			if err != nil {
				rt.Fatal(err)
			}
			if n != wantNew {
				rt.Fatalf("batch %d: Append stored %d, want %d new", b, n, wantNew)
			}
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
		if checked += s.DedupStats().CheckedIDs; len(first) > 50 && checked == 0 {
			rt.Fatalf("no exact checks with %d-bit hashes: the test hook is not in effect", kept)
		}
	})
}

// Open loads the filter in ranges of key_hash; keys at the edges of the
// ranges, and at both ends of the hash space, are all loaded.
func TestLoadKeysRanges(t *testing.T) {
	s := openMem(t)
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
	distinct := map[uint64]bool{}
	for _, h := range hashes {
		distinct[h>>(64-defaultWidth)] = true
	}
	for _, chunk := range []int64{1, 2, 3, 5, 1000} {
		keys, err := loadKeys(context.Background(), s.db, defaultWidth, ^uint64(0), chunk)
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range hashes {
			if !keys.mayContain(h) {
				t.Errorf("chunk %d: hash %#x not loaded", chunk, h)
			}
		}
		if keys.n != int64(len(distinct)) {
			t.Errorf("chunk %d: %d fingerprints loaded, want %d", chunk, keys.n, len(distinct))
		}
	}
}
