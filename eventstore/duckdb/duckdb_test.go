package duckdb

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"path/filepath"
	"testing"
	"time"

	"tandem/event"
	"tandem/eventstore"
	"tandem/eventstore/storetest"
)

func openMem(t *testing.T) *Store {
	t.Helper()
	s, err := Open(":memory:")
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) eventstore.Store { return openMem(t) })
}

func TestContractFile(t *testing.T) {
	storetest.RunDurable(t, func(t *testing.T, dir string) eventstore.Store {
		s, err := Open(filepath.Join(dir, "events.duckdb"))
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return s
	})
}

func testEvent(src, msg string, ts time.Time) event.Event {
	return event.Event{
		SourceID: src, MessageID: msg, Type: "track", Name: "Viewed", UserID: "u1",
		Timestamp: ts, ReceivedAt: ts,
		Raw: []byte(`{"type":"track","event":"Viewed","userId":"u1"}`),
	}
}

func TestRawByteExact(t *testing.T) {
	s := openMem(t)
	raw := []byte("{ \"type\":\"track\" ,\n\t\"event\":\"Viewed\", \"userId\" : \"u1\", \"x\": 1.0e0, \"s\":\"\\u00e9é\" }")
	e := testEvent("src", "m1", time.Now())
	e.Raw = raw
	if _, err := s.Append(context.Background(), []event.Event{e}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(context.Background(), "src", "m1")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got[0].Raw, raw) {
		t.Fatalf("Raw = %q, want %q", got[0].Raw, raw)
	}
}

// DuckDB strings must be UTF-8: invalid bytes are replaced, not rejected
// (a rejected event would block the pipeline's batch forever).
func TestInvalidUTF8(t *testing.T) {
	s := openMem(t)
	e := testEvent("src", "m\xff1", time.Now())
	e.Name = "bad\xfe"
	e.Raw = []byte("{\"type\":\"track\",\"event\":\"bad\xfe\"}")
	n, err := s.Append(context.Background(), []event.Event{e})
	if err != nil || n != 1 {
		t.Fatalf("Append = %d, %v", n, err)
	}
	got, err := s.Get(context.Background(), "src", "m\xff1")
	if err != nil {
		t.Fatal(err)
	}
	if got[0].MessageID != "m\uFFFD1" || got[0].Name != "bad\uFFFD" || string(got[0].Raw) != "{\"type\":\"track\",\"event\":\"bad\uFFFD\"}" {
		t.Fatalf("got %q %q %q", got[0].MessageID, got[0].Name, got[0].Raw)
	}
	// Same key again: a duplicate.
	if n, err := s.Append(context.Background(), []event.Event{e}); err != nil || n != 0 {
		t.Fatalf("second Append = %d, %v", n, err)
	}
}

// Duplicates found through the fingerprint set are verified exactly, so a
// fingerprint in the set for a key that is not stored (a collision, or a
// deleted event) does not drop the event.
func TestFingerprintCollisionIsVerified(t *testing.T) {
	s := openMem(t)
	e := testEvent("src", "m1", time.Now())
	h, _ := keyHash(nil, "src", "m1")
	s.keys.add(h)
	if n, err := s.Append(context.Background(), []event.Event{e}); err != nil || n != 1 {
		t.Fatalf("Append = %d, %v; want 1 new", n, err)
	}
	if n, err := s.Append(context.Background(), []event.Event{e}); err != nil || n != 0 {
		t.Fatalf("second Append = %d, %v; want 0", n, err)
	}
}

// The key_hash column must be recomputable in SQL (documented in schema.go).
func TestKeyHashSQL(t *testing.T) {
	s := openMem(t)
	evs := []event.Event{testEvent("src", "m1", time.Now()), testEvent("ü", "ñ-2", time.Now()), testEvent("", "x", time.Now())}
	if _, err := s.Append(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	var bad int
	err := s.db.QueryRow(`SELECT count(*) FROM events WHERE key_hash <>
		('0x' || left(sha256(strlen(source_id)::VARCHAR || ':' || source_id || message_id), 16))::UBIGINT`).Scan(&bad)
	if err != nil || bad != 0 {
		t.Fatalf("%d rows with a key_hash SQL does not reproduce (err %v)", bad, err)
	}
}

func TestSchemaVersion(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.duckdb")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	var v int
	if err := s.db.QueryRow(`SELECT max(version) FROM schema_version`).Scan(&v); err != nil || v != len(migrations) {
		t.Fatalf("schema version %d (%v), want %d", v, err, len(migrations))
	}
	if _, err := s.db.Exec(`INSERT INTO schema_version (version) VALUES (?)`, len(migrations)+1); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := Open(path); err == nil {
		t.Fatal("Open of a database with a newer schema succeeded")
	}
}

func TestClosed(t *testing.T) {
	s, err := Open("")
	if err != nil {
		t.Fatal(err)
	}
	storetest.RunClosed(t, s, ErrClosed)
}

func TestCursorRoundTrip(t *testing.T) {
	for _, ts := range []time.Time{
		time.Date(2025, 1, 2, 3, 4, 5, 6000, time.UTC),
		time.Time{}.UTC(),
		time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC),
	} {
		c := eventstore.Cursor{Micros: ts.UnixMicro(), Source: "ü/🎉", MessageID: "a\x00b"}
		got, gotTS, err := decodeCursor(c.Encode(cursorVersion))
		if err != nil || got != c || !gotTS.Equal(ts) {
			t.Errorf("decode(encode(%+v)) = %+v, %v, %v", c, got, gotTS, err)
		}
	}
}

// Cursors issued before the encoding moved to package eventstore still
// decode: the bytes are the same.
func TestCursorCompatible(t *testing.T) {
	const old = "AYzNyKONrJUGA3NyY21zZw" // {2025-01-02T03:04:05.000006Z, "src", "msg"}
	want := eventstore.Cursor{Micros: time.Date(2025, 1, 2, 3, 4, 5, 6000, time.UTC).UnixMicro(), Source: "src", MessageID: "msg"}
	if got := want.Encode(cursorVersion); got != old {
		t.Errorf("Encode = %s, want %s", got, old)
	}
	if got, _, err := decodeCursor(old); err != nil || got != want {
		t.Errorf("decodeCursor(%s) = %+v, %v", old, got, err)
	}
}

func FuzzDecodeCursor(f *testing.F) {
	f.Add(eventstore.Cursor{Micros: time.Now().UnixMicro(), Source: "s", MessageID: "m"}.Encode(cursorVersion))
	f.Add("AAAA")
	f.Add(eventstore.Cursor{Micros: 1, Source: "\xff", MessageID: "m"}.Encode(cursorVersion))
	f.Fuzz(func(t *testing.T, s string) {
		c, ts, err := decodeCursor(s)
		if err != nil {
			if !errors.Is(err, eventstore.ErrBadCursor) {
				t.Fatalf("error %v is not ErrBadCursor", err)
			}
			return
		}
		if d, dts, err := decodeCursor(c.Encode(cursorVersion)); err != nil || d != c || !dts.Equal(ts) {
			t.Fatalf("re-encoding %+v: %+v, %v", c, d, err)
		}
	})
}

// A From/To with nanoseconds selects by the stored, microsecond, times.
func TestTimeRangeSubMicro(t *testing.T) {
	s := openMem(t)
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	e := testEvent("src", "m", base.Add(1500*time.Nanosecond)) // stored as base+1µs
	if _, err := s.Append(context.Background(), []event.Event{e}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		from, to time.Time
		want     int
	}{
		{base.Add(time.Microsecond), time.Time{}, 1},
		{base.Add(1001 * time.Nanosecond), time.Time{}, 0},
		{time.Time{}, base.Add(1001 * time.Nanosecond), 1},
		{time.Time{}, base.Add(time.Microsecond), 0},
	} {
		p, err := s.List(context.Background(), eventstore.Query{From: c.from, To: c.to})
		if err != nil || len(p.Events) != c.want {
			t.Errorf("From %v To %v: %d events (%v), want %d", c.from, c.to, len(p.Events), err, c.want)
		}
	}
}

// Cancellations at random moments of Append (before BEGIN, during the
// appender flush, around COMMIT) must leave every batch all-or-nothing and
// the store usable; this once found a connection returned to the pool
// inside a half-begun transaction.
func TestCancelStress(t *testing.T) {
	s := openMem(t)
	ctx := context.Background()
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	var want int64
	var failed []string
	for b := range 150 {
		src := fmt.Sprintf("s%03d", b)
		evs := make([]event.Event, 2000)
		for i := range evs {
			evs[i] = testEvent(src, fmt.Sprint(i), base.Add(time.Duration(i)*time.Second))
		}
		cctx, cancel := context.WithTimeout(ctx, time.Duration(b%50)*300*time.Microsecond)
		n, err := s.Append(cctx, evs)
		cancel()
		if err != nil {
			failed = append(failed, src)
			continue
		}
		want += int64(n)
	}
	if got, err := s.Count(ctx); err != nil || got != want {
		t.Fatalf("Count = %d, %v; want %d", got, err, want)
	}
	for _, src := range failed {
		if p, err := s.List(ctx, eventstore.Query{SourceID: src}); err != nil || len(p.Events) != 0 {
			t.Fatalf("failed batch %s: %d events visible (%v)", src, len(p.Events), err)
		}
	}
	t.Logf("%d of 150 Appends cancelled", len(failed))
}

// With more sources than maxGetSources, Get without a source scans
// message_id instead of probing fingerprints.
func TestGetManySources(t *testing.T) {
	s := openMem(t)
	ctx := context.Background()
	evs := []event.Event{testEvent("a", "m", time.Now()), testEvent("b", "m", time.Now()), testEvent("b", "x", time.Now())}
	if _, err := s.Append(ctx, evs); err != nil {
		t.Fatal(err)
	}
	for _, many := range []bool{false, true} {
		if many {
			for i := range maxGetSources {
				s.sources[fmt.Sprint("fake-", i)] = struct{}{}
			}
		}
		got, err := s.Get(ctx, "", "m")
		if err != nil || len(got) != 2 || got[0].SourceID != "a" || got[1].SourceID != "b" {
			t.Fatalf("many=%v: Get = %v, %v", many, got, err)
		}
		if _, err := s.Get(ctx, "", "nope"); !errors.Is(err, eventstore.ErrNotFound) {
			t.Fatalf("many=%v: Get(nope) = %v", many, err)
		}
	}
}

func TestOpenTwice(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.duckdb")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if s2, err := Open(path); err == nil {
		s2.Close()
		t.Fatal("second Open of the same file succeeded")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(path)
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	s.Close()
}
