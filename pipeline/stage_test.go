package pipeline

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tandem/event"
	"tandem/eventlog"
)

// ackWatchLog hands out consumers that check, at every acknowledgement,
// that the acked records' events are stored (committed: visible to a
// reader of the event store).
type ackWatchLog struct {
	eventlog.Log
	check func(msgs []eventlog.Message) error
	acked atomic.Int64
	bad   atomic.Value // first error
	data  sync.Map     // seq → the record's bytes, as fetched
}

func (l *ackWatchLog) Consumer(ctx context.Context, name string) (eventlog.Consumer, error) {
	c, err := l.Log.Consumer(ctx, name)
	return &ackWatchConsumer{Consumer: c, l: l}, err
}

type ackWatchConsumer struct {
	eventlog.Consumer
	l *ackWatchLog
}

// Fetch remembers each record's bytes: the pipeline drops them from the
// records it holds once their events are staged (Ack needs only Seq).
func (c *ackWatchConsumer) Fetch(ctx context.Context, max int, wait time.Duration) ([]eventlog.Message, error) {
	msgs, err := c.Consumer.Fetch(ctx, max, wait)
	for _, m := range msgs {
		c.l.data.Store(m.Seq, bytes.Clone(m.Data))
	}
	return msgs, err
}

func (c *ackWatchConsumer) Ack(ctx context.Context, msgs ...eventlog.Message) error {
	fetched := make([]eventlog.Message, len(msgs))
	for i, m := range msgs {
		fetched[i] = m
		if d, ok := c.l.data.Load(m.Seq); ok {
			fetched[i].Data = d.([]byte)
		}
	}
	if err := c.l.check(fetched); err != nil {
		c.l.bad.CompareAndSwap(nil, err)
	}
	c.l.acked.Add(int64(len(msgs)))
	return c.Consumer.Ack(ctx, msgs...)
}

// With the embedded store (a Stager) Run holds batches while their events
// are staged: a record is acknowledged only once its events are
// committed, and what is staged is committed as soon as the pipeline has
// nothing else to do.
func TestRunAcksOnlyCommittedEvents(t *testing.T) {
	ctx := context.Background()
	r := newRig(t, t.TempDir())
	const records, perRecord = 60, 50
	for i := range records {
		evs := make([]event.Event, perRecord)
		for j := range evs {
			evs[j] = track(i*perRecord + j)
		}
		if _, err := r.log.Append(ctx, event.EncodeRecord("s", evs, nil)); err != nil {
			t.Fatal(err)
		}
	}
	l := &ackWatchLog{Log: r.log}
	l.check = func(msgs []eventlog.Message) error {
		for _, m := range msgs {
			evs, _, err := event.DecodeRecord(m.Data)
			if err != nil {
				return err
			}
			for _, e := range evs {
				if got, err := r.ev.Get(ctx, "s", e.MessageID); err != nil || len(got) != 1 {
					return fmt.Errorf("record %d acknowledged before its event %s was stored (%d found, %v)", m.Seq, e.MessageID, len(got), err)
				}
			}
		}
		return nil
	}
	// Small batches, so that several are held at once.
	p, err := New(ctx, Options{Log: l, Events: r.ev, Quarantine: r.q, MaxRecords: 3, MaxBytes: 1, Linger: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- p.Run(rctx) }()
	deadline := time.Now().Add(20 * time.Second)
	for l.acked.Load() < records && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err, _ := l.bad.Load().(error); err != nil {
		t.Fatal(err)
	}
	if n := l.acked.Load(); n != records {
		t.Fatalf("%d records acknowledged, want %d", n, records)
	}
	if n, _ := r.ev.Count(ctx); n != records*perRecord {
		t.Fatalf("%d events stored, want %d", n, records*perRecord)
	}
	if got := p.stored.Value(); got != records*perRecord {
		t.Fatalf("tandem_pipeline_events_stored_total = %v, want %d", got, records*perRecord)
	}
}

// slowResolver keeps the state-store stage busy, so that the pipeline is
// never idle while records are pending.
type slowResolver struct{ d time.Duration }

func (r slowResolver) Resolve(ctx context.Context, events []event.Event) error {
	time.Sleep(r.d)
	return nil
}

// Barrier returns only once the batches begun before it are acknowledged,
// even while the pipeline, never idle, would hold them staged for
// CommitWait (an erasure rewrites the log after Barrier: a record still
// held would be delivered again).
func TestBarrierWaitsForStagedBatches(t *testing.T) {
	ctx := context.Background()
	r := newRig(t, t.TempDir())
	const records = 80
	for i := range records {
		if _, err := r.log.Append(ctx, event.EncodeRecord("s", []event.Event{track(i)}, nil)); err != nil {
			t.Fatal(err)
		}
	}
	l := &ackWatchLog{Log: r.log, check: func([]eventlog.Message) error { return nil }}
	p, err := New(ctx, Options{Log: l, Events: r.ev, Quarantine: r.q, Identity: slowResolver{40 * time.Millisecond},
		MaxRecords: 1, MaxBytes: 1, Linger: time.Millisecond, CommitWait: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- p.Run(rctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	for p.begun.Load() < 10 {
		time.Sleep(5 * time.Millisecond)
	}
	target := p.begun.Load()
	bctx, bcancel := context.WithTimeout(ctx, 20*time.Second)
	defer bcancel()
	if err := p.Barrier(bctx); err != nil {
		t.Fatal(err)
	}
	// One record a batch: batch k is record k.
	if acked := l.acked.Load(); uint64(acked) < target {
		t.Fatalf("Barrier returned with %d records acknowledged; the %d batches begun before it were not all", acked, target)
	}
	if p.begun.Load() >= records {
		t.Fatal("Barrier returned only after the pipeline ran out of records (and committed, idle): it did not have the staged batches committed")
	}
}
