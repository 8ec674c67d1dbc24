package pipeline

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"tandem/event"
	"tandem/eventlog/jetstream"
	"tandem/eventstore"
	"tandem/eventstore/duckdb"
	"tandem/quarantine"
	"tandem/statestore"
	"tandem/statestore/sqlite"
	"tandem/trackingplan"
)

type rig struct {
	log *jetstream.Log
	ev  *duckdb.Store
	q   *quarantine.Store
	db  *statestore.DB
}

func newRig(t *testing.T, dir string) *rig {
	t.Helper()
	log, err := jetstream.OpenEmbedded(jetstream.EmbeddedOptions{Dir: filepath.Join(dir, "log")})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := duckdb.Open(filepath.Join(dir, "events.duckdb"))
	if err != nil {
		t.Fatal(err)
	}
	db, err := sqlite.Open(filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Migrate(context.Background(), append(quarantine.Migrations(), trackingplan.Migrations()...)...); err != nil {
		t.Fatal(err)
	}
	r := &rig{log: log, ev: ev, q: quarantine.NewStore(db), db: db}
	t.Cleanup(func() { ev.Close(); db.Close(); log.Close() })
	return r
}

func track(i int) event.Event {
	ts := time.Date(2026, 1, 1, 0, 0, i, 0, time.UTC)
	return event.Event{MessageID: fmt.Sprintf("m%d", i), Type: "track", Name: "e", UserID: "u",
		Timestamp: ts, ReceivedAt: ts, Raw: []byte(`{"type":"track","event":"e","userId":"u"}`)}
}

func TestRedeliveryStoresOnce(t *testing.T) {
	ctx := context.Background()
	r := newRig(t, t.TempDir())
	var evs []event.Event
	for i := 0; i < 10; i++ {
		evs = append(evs, track(i))
	}
	bad := []event.Problem{{Code: "missing_field", Field: "batch[3].userId", Message: "m", Raw: []byte(`{}`), Index: 3}}
	for _, rec := range [][]byte{
		event.EncodeRecord("s1", evs[:5], bad),
		event.EncodeRecord("s1", evs[3:], nil), // overlaps: a client retry
		[]byte("not a record"),
	} {
		if _, err := r.log.Append(ctx, rec); err != nil {
			t.Fatal(err)
		}
	}
	p, err := New(ctx, Options{Log: r.log, Events: r.ev, Quarantine: r.q})
	if err != nil {
		t.Fatal(err)
	}
	// Process everything but do not acknowledge, as if the process died
	// between writing and acking; then process the redelivery.
	c, _ := r.log.Consumer(ctx, "other")
	msgs, err := c.Fetch(ctx, 10, time.Second)
	if err != nil || len(msgs) != 3 {
		t.Fatalf("fetch: %d %v", len(msgs), err)
	}
	if err := p.process(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	if err := p.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if n, _ := r.ev.Count(ctx); n != 10 {
		t.Errorf("stored %d events, want 10", n)
	}
	entries, _, err := r.q.List(ctx, quarantine.Filter{}, 100, "")
	if err != nil {
		t.Fatal(err)
	}
	codes := map[string]int{}
	for _, e := range entries {
		codes[e.Code]++
	}
	if codes["missing_field"] != 1 || codes["corrupt_record"] != 1 || len(entries) != 2 {
		t.Errorf("quarantine after redelivery: %v", codes)
	}
	if p.Lag() != 0 {
		t.Errorf("lag %d after drain", p.Lag())
	}
}

func TestRunResumesAfterRestart(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	r := newRig(t, dir)
	for i := 0; i < 5; i++ {
		if _, err := r.log.Append(ctx, event.EncodeRecord("s", []event.Event{track(i)}, nil)); err != nil {
			t.Fatal(err)
		}
	}
	p, err := New(ctx, Options{Log: r.log, Events: r.ev, Quarantine: r.q, Linger: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- p.Run(rctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for n, _ := r.ev.Count(ctx); n < 5 && time.Now().Before(deadline); n, _ = r.ev.Count(ctx) {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// New records after the stop are picked up by the next pipeline, and
	// the old ones are not processed again.
	if _, err := r.log.Append(ctx, event.EncodeRecord("s", []event.Event{track(99)}, nil)); err != nil {
		t.Fatal(err)
	}
	p2, err := New(ctx, Options{Log: r.log, Events: r.ev, Quarantine: r.q, Metrics: nil})
	if err != nil {
		t.Fatal(err)
	}
	if err := p2.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if n, _ := r.ev.Count(ctx); n != 6 {
		t.Errorf("stored %d, want 6", n)
	}
	if d := p2.duplicates.Value(); d != 0 {
		t.Errorf("%d records processed twice after a clean stop", d)
	}
}

// The tracking-plan step: an event that fails its source's plan is
// quarantined with the record's other problems and never stored; a
// redelivered record quarantines it once; a source without a plan is not
// affected.
func TestTrackingPlanStep(t *testing.T) {
	ctx := context.Background()
	r := newRig(t, t.TempDir())
	plans := trackingplan.NewStore(r.db)
	if _, err := plans.Put(ctx, trackingplan.Plan{SourceID: "s1", Unplanned: trackingplan.Block,
		Events: map[string]trackingplan.EventPlan{"e": {Properties: []byte(`{"required":["price"]}`)}}}); err != nil {
		t.Fatal(err)
	}
	good, bad, other := track(1), track(2), track(3)
	good.Raw = []byte(`{"type":"track","event":"e","userId":"u","properties":{"price":1}}`)
	other.Name, other.Raw = "unplanned", []byte(`{"type":"track","event":"unplanned","userId":"u"}`)
	invalid := []event.Problem{{Code: "missing_field", Field: "batch[3].userId", Message: "m", Raw: []byte(`{}`), Index: 3}}
	free := track(4)
	for _, rec := range [][]byte{
		event.EncodeRecord("s1", []event.Event{good, bad, other}, invalid),
		event.EncodeRecord("s2", []event.Event{free}, nil),
	} {
		if _, err := r.log.Append(ctx, rec); err != nil {
			t.Fatal(err)
		}
	}
	p, err := New(ctx, Options{Log: r.log, Events: r.ev, Quarantine: r.q, Plans: trackingplan.NewChecker(plans, 0, nil)})
	if err != nil {
		t.Fatal(err)
	}
	c, _ := r.log.Consumer(ctx, "other")
	msgs, err := c.Fetch(ctx, 10, time.Second)
	if err != nil || len(msgs) != 2 {
		t.Fatalf("fetch: %d %v", len(msgs), err)
	}
	if err := p.process(ctx, msgs); err != nil { // not acked by "pipeline": redelivered below
		t.Fatal(err)
	}
	if err := p.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if n, _ := r.ev.Count(ctx); n != 2 {
		t.Errorf("stored %d events, want 2 (the valid one and the one of the source without a plan)", n)
	}
	entries, _, err := r.q.List(ctx, quarantine.Filter{}, 100, "")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, e := range entries {
		got[e.Code] = e.Field
	}
	want := map[string]string{"missing_field": "batch[3].userId", trackingplan.CodeViolation: "properties", trackingplan.CodeUnplanned: "event"}
	if len(entries) != 3 || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("quarantine: %d entries %v, want %v", len(entries), got, want)
	}
}

// checkingStore is an event store that checks, as each chunk arrives,
// that its events are the ones the log holds (a chunk buffer reused too
// early would show other events or cleared ones), and notes the buffers
// it was given.
type checkingStore struct {
	eventstore.Store
	t       *testing.T
	want    map[string]string // messageId → Raw
	buffers map[*event.Event]int
	checked int
}

func (s *checkingStore) Append(ctx context.Context, events []event.Event) (int, error) {
	s.buffers[&events[:1][0]]++
	for _, e := range events {
		if raw, ok := s.want[e.MessageID]; !ok || raw != string(e.Raw) || e.UserID != "u-"+e.MessageID {
			s.t.Errorf("event %q (user %q) is not one appended to the log: %s", e.MessageID, e.UserID, e.Raw)
		}
		s.checked++
	}
	return s.Store.Append(ctx, events)
}

// The event buffers of full chunks are reused by the batches after: every
// event still reaches the event store as the log holds it, through the
// plain write and through staging.
func TestChunksReused(t *testing.T) {
	ctx := context.Background()
	r := newRig(t, t.TempDir())
	want := map[string]string{}
	const records, perRecord = 60, 7
	for i := range records {
		var evs []event.Event
		for j := range perRecord {
			e := track(i*perRecord + j)
			e.MessageID = fmt.Sprintf("m-%d-%d", i, j)
			e.UserID = "u-" + e.MessageID
			e.Raw = fmt.Appendf(nil, `{"type":"track","event":"e","userId":%q,"properties":{"n":%d}}`, e.UserID, i*perRecord+j)
			want[e.MessageID] = string(e.Raw)
			evs = append(evs, e)
		}
		if _, err := r.log.Append(ctx, event.EncodeRecord("s", evs, nil)); err != nil {
			t.Fatal(err)
		}
	}
	// Drain: the plain write, records a few at a time.
	cs := &checkingStore{Store: r.ev, t: t, want: want, buffers: map[*event.Event]int{}}
	p, err := New(ctx, Options{Log: r.log, Events: cs, Quarantine: r.q, Consumer: "plain", MaxRecords: 5, MaxEvents: 8})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if cs.checked != records*perRecord {
		t.Errorf("the store was given %d events, want %d", cs.checked, records*perRecord)
	}
	reused := 0
	for _, n := range cs.buffers {
		reused += n - 1
	}
	if reused == 0 {
		t.Errorf("no chunk buffer was used twice in %d appends", len(cs.buffers))
	}

	// Run with the embedded store, which stages: another consumer reads
	// the same records into a fresh store.
	ev2, err := duckdb.Open(filepath.Join(t.TempDir(), "events.duckdb"))
	if err != nil {
		t.Fatal(err)
	}
	defer ev2.Close()
	p2, err := New(ctx, Options{Log: r.log, Events: ev2, Quarantine: r.q, Consumer: "staged", MaxRecords: 5, MaxEvents: 8, Linger: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- p2.Run(rctx) }()
	deadline := time.Now().Add(30 * time.Second)
	for p2.stored.Value() < records*perRecord && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for id, raw := range want {
		got, err := ev2.Get(ctx, "s", id)
		if err != nil || len(got) != 1 {
			t.Fatalf("event %s: %d found, %v", id, len(got), err)
		}
		if string(got[0].Raw) != raw || got[0].UserID != "u-"+id {
			t.Errorf("event %s stored as user %q, %s; want %s", id, got[0].UserID, got[0].Raw, raw)
		}
	}
}
