// Package quarantinetest is the test suite of package quarantine, run
// against any state store backend: by quarantine's own tests on SQLite and
// by the backend contract suite (statestore/statetest).
package quarantinetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"tandem/event"
	"tandem/quarantine"
	"tandem/statestore"
)

// Run runs the suite; open must return a new, empty database for each call.
func Run(t *testing.T, open func(t *testing.T) *statestore.DB) {
	t.Run("AddGet", func(t *testing.T) { t.Parallel(); testAddGet(t, newStore(t, open)) })
	t.Run("Idempotent", func(t *testing.T) { t.Parallel(); testIdempotent(t, newStore(t, open)) })
	t.Run("ListFilterPage", func(t *testing.T) { t.Parallel(); testList(t, newStore(t, open)) })
	t.Run("MarkReplayed", func(t *testing.T) { t.Parallel(); testMarkReplayed(t, newStore(t, open)) })
	t.Run("LargeBatch", func(t *testing.T) { t.Parallel(); testLargeBatch(t, newStore(t, open)) })
	t.Run("ConcurrentAdd", func(t *testing.T) { t.Parallel(); testConcurrentAdd(t, newStore(t, open)) })
	t.Run("Erase", func(t *testing.T) { t.Parallel(); testErase(t, newStore(t, open)) })
}

func newStore(t *testing.T, open func(t *testing.T) *statestore.DB) *quarantine.Store {
	t.Helper()
	db := open(t)
	for range 2 { // migrations are idempotent
		if err := db.Migrate(context.Background(), quarantine.Migrations()...); err != nil {
			t.Fatalf("Migrate: %v", err)
		}
	}
	return quarantine.NewStore(db)
}

var base = time.Date(2025, 3, 1, 12, 0, 0, 123456789, time.UTC)

func problem(src string, i int, at time.Time) event.Problem {
	return event.Problem{
		SourceID:   src,
		MessageID:  fmt.Sprintf("m-%s-%d", src, i),
		ReceivedAt: at,
		Index:      i,
		Code:       "missing_field",
		Field:      fmt.Sprintf("batch[%d].userId", i),
		Message:    "userId or anonymousId is required",
		Raw:        fmt.Appendf(nil, `{"type":"track","event":"e%d"}`, i),
	}
}

func all(t *testing.T, s *quarantine.Store, f quarantine.Filter, limit int) []quarantine.Entry {
	t.Helper()
	var out []quarantine.Entry
	cursor := ""
	for range 10000 {
		page, next, err := s.List(context.Background(), f, limit, cursor)
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		if len(page) > statestore.Limit(limit) {
			t.Fatalf("page of %d, limit %d", len(page), limit)
		}
		out = append(out, page...)
		if next == "" {
			return out
		}
		cursor = next
	}
	t.Fatal("pagination does not end")
	return nil
}

func testAddGet(t *testing.T, s *quarantine.Store) {
	ctx := context.Background()
	probs := []event.Problem{
		problem("src_a", 0, base),
		{SourceID: "src_a", ReceivedAt: base, Index: 1, Code: "invalid_json", Field: "batch[1]",
			Message: "not JSON", Raw: []byte("{\"type\": tr\xff\x00ck")},
		{SourceID: "src_a", ReceivedAt: base, Index: 2, Code: "too_large", Field: "batch[2]", Message: "empty", Raw: nil},
		{SourceID: "src_a", MessageID: "bad\x00id\xff", ReceivedAt: base, Index: 3, Code: "bad_type",
			Field: "batch[3].type", Message: "unknown type \"x\x00\"", Raw: []byte(`{}`)},
	}
	if err := s.Add(ctx, 7, probs); err != nil {
		t.Fatalf("Add: %v", err)
	}
	if err := s.Add(ctx, 8, nil); err != nil {
		t.Fatalf("Add(no problems): %v", err)
	}
	entries := all(t, s, quarantine.Filter{}, 0)
	if len(entries) != len(probs) {
		t.Fatalf("%d entries, want %d", len(entries), len(probs))
	}
	byIndex := map[int]quarantine.Entry{}
	for _, e := range entries {
		byIndex[e.Index] = e
	}
	for i, p := range probs {
		e := byIndex[p.Index]
		got, err := s.Get(ctx, e.ID)
		if err != nil {
			t.Fatalf("Get(%s): %v", e.ID, err)
		}
		if !equal(got, e) {
			t.Fatalf("Get = %+v, List gave %+v", got, e)
		}
		wantRaw := p.Raw
		if wantRaw == nil {
			wantRaw = []byte{}
		}
		if !strings.HasPrefix(e.ID, "qe_") || e.SourceID != p.SourceID || e.Code != p.Code || e.Field != p.Field ||
			!e.ReceivedAt.Equal(p.ReceivedAt) || !bytes.Equal(e.Raw, wantRaw) || e.Raw == nil ||
			e.Status != quarantine.Held || !e.ReplayedAt.IsZero() || e.LogSeq != 7 || e.Position != i {
			t.Errorf("entry %d = %+v, from %+v", i, e, p)
		}
		if i < 3 && (e.MessageID != p.MessageID || e.Message != p.Message) {
			t.Errorf("entry %d: message id %q, message %q; want %q, %q", i, e.MessageID, e.Message, p.MessageID, p.Message)
		}
	}
	// Text that no backend could store is cleaned; the raw bytes are not.
	e := byIndex[3]
	if e.MessageID != "bad\uFFFDid\uFFFD" || e.Message != "unknown type \"x\uFFFD\"" {
		t.Errorf("cleaned text: message id %q, message %q", e.MessageID, e.Message)
	}
	if _, err := s.Get(ctx, "qe_missing"); !errors.Is(err, statestore.ErrNotFound) {
		t.Fatalf("Get(missing): %v, want ErrNotFound", err)
	}
	if err := s.Add(ctx, math.MaxUint64, probs[:1]); err == nil {
		t.Fatal("Add accepted a log sequence beyond BIGINT")
	}
	if n, err := s.Count(ctx, quarantine.Filter{}); err != nil || n != len(probs) {
		t.Fatalf("Count = %d, %v; want %d", n, err, len(probs))
	}
}

func equal(a, b quarantine.Entry) bool {
	return a.ID == b.ID && a.SourceID == b.SourceID && a.MessageID == b.MessageID && a.Index == b.Index &&
		a.Code == b.Code && a.Field == b.Field && a.Message == b.Message && a.ReceivedAt.Equal(b.ReceivedAt) &&
		bytes.Equal(a.Raw, b.Raw) && a.Status == b.Status && a.ReplayedAt.Equal(b.ReplayedAt) &&
		a.LogSeq == b.LogSeq && a.Position == b.Position
}

func testIdempotent(t *testing.T, s *quarantine.Store) {
	ctx := context.Background()
	first := []event.Problem{problem("src_a", 0, base), problem("src_a", 1, base)}
	for range 3 {
		if err := s.Add(ctx, 1, first); err != nil {
			t.Fatalf("Add: %v", err)
		}
	}
	if n, err := s.Count(ctx, quarantine.Filter{}); err != nil || n != 2 {
		t.Fatalf("Count after adding record 1 three times = %d, %v; want 2", n, err)
	}
	before := all(t, s, quarantine.Filter{}, 0)
	// A redelivery with different content keeps the first entries; a new
	// position is added.
	changed := []event.Problem{problem("src_b", 0, base.Add(time.Hour)), problem("src_b", 1, base), problem("src_b", 2, base)}
	if err := s.Add(ctx, 1, changed); err != nil {
		t.Fatalf("Add: %v", err)
	}
	after := all(t, s, quarantine.Filter{}, 0)
	if len(after) != 3 {
		t.Fatalf("%d entries, want 3", len(after))
	}
	for _, b := range before {
		got, err := s.Get(ctx, b.ID)
		if err != nil || !equal(got, b) {
			t.Fatalf("entry %s changed by a redelivery: %+v, %v", b.ID, got, err)
		}
	}
	// Another record's positions are separate.
	if err := s.Add(ctx, 2, first); err != nil {
		t.Fatalf("Add: %v", err)
	}
	if n, err := s.Count(ctx, quarantine.Filter{}); err != nil || n != 5 {
		t.Fatalf("Count = %d, %v; want 5", n, err)
	}
}

func testList(t *testing.T, s *quarantine.Store) {
	ctx := context.Background()
	// Records 1..6, from two sources, received one second apart, 3 problems
	// each; record 4 has a different code.
	for seq := 1; seq <= 6; seq++ {
		src := "src_a"
		if seq%2 == 0 {
			src = "src_b"
		}
		at := base.Add(time.Duration(seq) * time.Second)
		probs := []event.Problem{problem(src, 0, at), problem(src, 1, at), problem(src, 2, at)}
		if seq == 4 {
			for i := range probs {
				probs[i].Code = "bad_timestamp"
			}
		}
		if err := s.Add(ctx, uint64(seq), probs); err != nil {
			t.Fatalf("Add: %v", err)
		}
	}
	// One more record received earlier than all, but logged later.
	if err := s.Add(ctx, 7, []event.Problem{problem("src_a", 0, base)}); err != nil {
		t.Fatalf("Add: %v", err)
	}
	for _, tc := range []struct {
		name string
		f    quarantine.Filter
		want int
	}{
		{"all", quarantine.Filter{}, 19},
		{"source a", quarantine.Filter{SourceID: "src_a"}, 10},
		{"source b", quarantine.Filter{SourceID: "src_b"}, 9},
		{"code", quarantine.Filter{Code: "bad_timestamp"}, 3},
		{"source and code", quarantine.Filter{SourceID: "src_a", Code: "bad_timestamp"}, 0},
		{"held", quarantine.Filter{Status: quarantine.Held}, 19},
		{"replayed", quarantine.Filter{Status: quarantine.Replayed}, 0},
		{"unknown source", quarantine.Filter{SourceID: "src_z"}, 0},
	} {
		for _, limit := range []int{1, 2, 5, 19, 0} {
			t.Run(fmt.Sprintf("%s limit %d", tc.name, limit), func(t *testing.T) {
				got := all(t, s, tc.f, limit)
				if len(got) != tc.want {
					t.Fatalf("%d entries, want %d", len(got), tc.want)
				}
				if n, err := s.Count(ctx, tc.f); err != nil || n != tc.want {
					t.Fatalf("Count = %d, %v; want %d", n, err, tc.want)
				}
				seen := map[string]bool{}
				for i, e := range got {
					if seen[e.ID] {
						t.Fatalf("entry %s listed twice", e.ID)
					}
					seen[e.ID] = true
					if (tc.f.SourceID != "" && e.SourceID != tc.f.SourceID) || (tc.f.Code != "" && e.Code != tc.f.Code) {
						t.Fatalf("entry %+v does not match %+v", e, tc.f)
					}
					if i == 0 {
						continue
					}
					p := got[i-1]
					// Newest first: by time received, then log position.
					newer := p.ReceivedAt.After(e.ReceivedAt) ||
						p.ReceivedAt.Equal(e.ReceivedAt) && (p.LogSeq > e.LogSeq || p.LogSeq == e.LogSeq && p.Position > e.Position)
					if !newer {
						t.Fatalf("entry %d (%v seq %d pos %d) listed after %v seq %d pos %d",
							i, e.ReceivedAt, e.LogSeq, e.Position, p.ReceivedAt, p.LogSeq, p.Position)
					}
				}
			})
		}
	}
	first, _, err := s.List(ctx, quarantine.Filter{}, 1, "")
	if err != nil || len(first) != 1 || first[0].LogSeq != 6 || first[0].Position != 2 {
		t.Fatalf("newest entry = %+v, %v; want record 6 position 2", first, err)
	}
	for _, tc := range []struct {
		name   string
		f      quarantine.Filter
		cursor string
		field  string
	}{
		{"bad status", quarantine.Filter{Status: "deleted"}, "", "status"},
		{"bad cursor", quarantine.Filter{}, "nope", "cursor"},
		{"cursor of another list", quarantine.Filter{}, statestore.EncodeCursor("x"), "cursor"},
		{"cursor with text", quarantine.Filter{}, statestore.EncodeCursor("a", "b", "c"), "cursor"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := s.List(ctx, tc.f, 10, tc.cursor)
			var fe *quarantine.FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field {
				t.Fatalf("List: %v, want a FieldError for %q", err, tc.field)
			}
		})
	}
	if _, err := s.Count(ctx, quarantine.Filter{Status: "x"}); err == nil {
		t.Fatal("Count accepted a bad status")
	}
}

func testMarkReplayed(t *testing.T, s *quarantine.Store) {
	ctx := context.Background()
	var probs []event.Problem
	for i := range 10 {
		probs = append(probs, problem("src_a", i, base))
	}
	if err := s.Add(ctx, 3, probs); err != nil {
		t.Fatalf("Add: %v", err)
	}
	entries := all(t, s, quarantine.Filter{}, 0)
	ids := func(es []quarantine.Entry) []string {
		var out []string
		for _, e := range es {
			out = append(out, e.ID)
		}
		return out
	}
	for _, tc := range []struct {
		name     string
		ids      []string
		want     int
		replayed int // total replayed afterwards
	}{
		{"none", nil, 0, 0},
		{"unknown", []string{"qe_nope"}, 0, 0},
		{"three", ids(entries[:3]), 3, 3},
		{"again", ids(entries[:3]), 0, 3},
		{"overlapping, duplicated and unknown", append(ids(entries[2:6]), entries[5].ID, "qe_nope"), 3, 6},
		{"rest", ids(entries), 4, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, err := s.MarkReplayed(ctx, tc.ids...)
			if err != nil || n != tc.want {
				t.Fatalf("MarkReplayed = %d, %v; want %d", n, err, tc.want)
			}
			if got, err := s.Count(ctx, quarantine.Filter{Status: quarantine.Replayed}); err != nil || got != tc.replayed {
				t.Fatalf("replayed count = %d, %v; want %d", got, err, tc.replayed)
			}
			if got, err := s.Count(ctx, quarantine.Filter{Status: quarantine.Held}); err != nil || got != 10-tc.replayed {
				t.Fatalf("held count = %d, %v; want %d", got, err, 10-tc.replayed)
			}
		})
	}
	e, err := s.Get(ctx, entries[0].ID)
	if err != nil || e.Status != quarantine.Replayed || e.ReplayedAt.IsZero() {
		t.Fatalf("Get after MarkReplayed = %+v, %v", e, err)
	}
	if got := all(t, s, quarantine.Filter{Status: quarantine.Replayed}, 3); len(got) != 10 {
		t.Fatalf("List(replayed) = %d entries, want 10", len(got))
	}
	// A redelivery of the record does not bring replayed entries back.
	if err := s.Add(ctx, 3, probs); err != nil {
		t.Fatalf("Add: %v", err)
	}
	if n, err := s.Count(ctx, quarantine.Filter{Status: quarantine.Held}); err != nil || n != 0 {
		t.Fatalf("held after redelivery = %d, %v; want 0", n, err)
	}
}

func testLargeBatch(t *testing.T, s *quarantine.Store) {
	ctx := context.Background()
	probs := make([]event.Problem, event.MaxBatchEvents)
	for i := range probs {
		probs[i] = problem("src_big", i, base)
	}
	for range 2 {
		if err := s.Add(ctx, 42, probs); err != nil {
			t.Fatalf("Add(%d problems): %v", len(probs), err)
		}
	}
	if n, err := s.Count(ctx, quarantine.Filter{SourceID: "src_big"}); err != nil || n != len(probs) {
		t.Fatalf("Count = %d, %v; want %d", n, err, len(probs))
	}
	var ids []string
	for _, e := range all(t, s, quarantine.Filter{}, statestore.MaxLimit) {
		ids = append(ids, e.ID)
	}
	if n, err := s.MarkReplayed(ctx, ids...); err != nil || n != len(probs) {
		t.Fatalf("MarkReplayed(%d ids) = %d, %v", len(ids), n, err)
	}
}

func testConcurrentAdd(t *testing.T, s *quarantine.Store) {
	ctx := context.Background()
	// Several pipeline workers, with redeliveries of the same records.
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for seq := range 20 {
				probs := []event.Problem{problem("src_c", 0, base), problem("src_c", 1, base)}
				if err := s.Add(ctx, uint64(100+seq+w%2), probs); err != nil {
					t.Errorf("Add: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	if n, err := s.Count(ctx, quarantine.Filter{}); err != nil || n != 42 {
		t.Fatalf("Count = %d, %v; want 42 (records 100..120, 2 each)", n, err)
	}
}

// testErase: Erase deletes the entries the matcher picks (a data
// subject's), and keeps the others.
func testErase(t *testing.T, s *quarantine.Store) {
	ctx := context.Background()
	at := time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)
	var ps []event.Problem
	for i, raw := range []string{`{"userId":"ann"}`, `{"userId":"bob"}`, `not json ann`, `{"anonymousId":"ann"}`} {
		ps = append(ps, event.Problem{SourceID: "src", MessageID: fmt.Sprint("m", i), ReceivedAt: at, Index: i, Code: "missing_field", Message: "x", Raw: []byte(raw)})
	}
	if err := s.Add(ctx, 1, ps); err != nil {
		t.Fatal(err)
	}
	n, err := s.Erase(ctx, func(raw []byte) bool { return bytes.Contains(raw, []byte("ann")) })
	if err != nil || n != 3 {
		t.Fatalf("Erase = %d, %v; want 3", n, err)
	}
	left, _, err := s.List(ctx, quarantine.Filter{}, 100, "")
	if err != nil || len(left) != 1 || string(left[0].Raw) != `{"userId":"bob"}` {
		t.Fatalf("left: %+v, %v", left, err)
	}
}
