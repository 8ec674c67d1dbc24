package duckdb

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"tandem/event"
)

// TestEraseLeavesNoBytes: after Erase, no file of the store's directory
// holds the erased person's values, though DuckDB alone would leave them
// in freed blocks; the other events stay readable, through the same
// handle, and the store takes appends and reopens.
func TestEraseLeavesNoBytes(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "events.duckdb")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	secret := "zoe.quixote-7f3a@example.com"
	var evs []event.Event
	ts := time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)
	for i := range 3000 {
		user := fmt.Sprintf("u-%d", i%50)
		raw := fmt.Sprintf(`{"type":"track","event":"Viewed","userId":%q,"properties":{"n":%d}}`, user, i)
		if i%50 == 7 {
			user = "u-zoe"
			raw = fmt.Sprintf(`{"type":"track","event":"Viewed","userId":"u-zoe","properties":{"email":%q,"n":%d}}`, secret, i)
		}
		evs = append(evs, event.Event{SourceID: "src", MessageID: fmt.Sprintf("m-%d", i), Type: "track", Name: "Viewed",
			UserID: user, Timestamp: ts.Add(time.Duration(i) * time.Second), ReceivedAt: ts, Raw: []byte(raw)})
	}
	if _, err := s.Append(ctx, evs); err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.ExecContext(ctx, "CHECKPOINT"); err != nil {
		t.Fatal(err)
	}
	found := func() []string {
		var in []string
		// Every file, the dedup key index's included.
		err := filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
			if err != nil || e.IsDir() {
				return err
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			if bytes.Contains(b, []byte(secret)) || bytes.Contains(b, []byte("u-zoe")) {
				in = append(in, e.Name())
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return in
	}
	if len(found()) == 0 {
		t.Fatal("the values are not in the files before the erasure: the search cannot fail")
	}
	// What a plain DELETE and CHECKPOINT leave: the reason for compacting.
	if _, err := s.delete(ctx, []string{"user_id:u-zoe"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.ExecContext(ctx, "CHECKPOINT"); err != nil {
		t.Fatal(err)
	}
	t.Logf("after DELETE and CHECKPOINT, found in %v", found())
	// As if that had been an erasure cut short before its compaction:
	// filed again, it finds nothing to delete, and compacts all the same.
	if n, err := s.Erase(ctx, []string{"user_id:u-zoe"}); err != nil || n != 0 {
		t.Fatalf("Erase = %d, %v", n, err)
	}
	if in := found(); len(in) > 0 {
		t.Fatalf("after the erasure the values are still in %v", in)
	}
	if n, err := s.Count(ctx); err != nil || n != 3000-60 {
		t.Fatalf("Count = %d, %v", n, err)
	}
	if got, err := s.Get(ctx, "src", "m-8"); err != nil || len(got) != 1 {
		t.Fatalf("Get m-8 = %v, %v", got, err)
	}
	// Still a working store: appends dedup against what is left, and it
	// reopens.
	if n, err := s.Append(ctx, evs[:10]); err != nil || n != 1 {
		t.Fatalf("Append again = %d, %v (want 1: m-7 was erased)", n, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if n, err := s.Count(ctx); err != nil || n != 3000-60+1 {
		t.Fatalf("Count after reopen = %d, %v", n, err)
	}
}

// BenchmarkErase is an erasure of one person's 20 events among 200,000:
// "compact" as Erase does it (delete, then the file copied and swapped),
// "checkpoint" the baseline it replaced (delete and CHECKPOINT, which
// leaves the bytes in free blocks).
func BenchmarkErase(b *testing.B) {
	for _, mode := range []string{"checkpoint", "compact"} {
		b.Run(mode, func(b *testing.B) {
			s, err := Open(filepath.Join(b.TempDir(), "events.duckdb"))
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			ctx := context.Background()
			ts := time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)
			var evs []event.Event
			for i := range 200000 {
				evs = append(evs, event.Event{SourceID: "src", MessageID: fmt.Sprintf("m-%d", i), Type: "track", Name: "Viewed",
					UserID: fmt.Sprintf("u-%d", i%10000), Timestamp: ts.Add(time.Duration(i) * time.Second), ReceivedAt: ts,
					Raw: []byte(fmt.Sprintf(`{"type":"track","event":"Viewed","userId":"u-%d","properties":{"path":"/p/%d"}}`, i%10000, i))})
			}
			if _, err := s.Append(ctx, evs); err != nil {
				b.Fatal(err)
			}
			if _, err := s.db.ExecContext(ctx, "CHECKPOINT"); err != nil {
				b.Fatal(err)
			}
			i := 0
			for b.Loop() {
				key := []string{fmt.Sprintf("user_id:u-%d", i)}
				i++
				if mode == "compact" {
					if n, err := s.Erase(ctx, key); err != nil || n != 20 {
						b.Fatalf("Erase = %d, %v", n, err)
					}
					continue
				}
				if n, err := s.delete(ctx, key); err != nil || n != 20 {
					b.Fatalf("delete = %d, %v", n, err)
				}
				if _, err := s.db.ExecContext(ctx, "CHECKPOINT"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
