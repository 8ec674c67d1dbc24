package pipeline

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tandem/event"
	"tandem/eventlog"
)

// fetchCountLog counts the fetches of its consumers that brought records.
type fetchCountLog struct {
	eventlog.Log
	fetches atomic.Int64
}

func (l *fetchCountLog) Consumer(ctx context.Context, name string) (eventlog.Consumer, error) {
	c, err := l.Log.Consumer(ctx, name)
	return &fetchCountConsumer{Consumer: c, l: l}, err
}

type fetchCountConsumer struct {
	eventlog.Consumer
	l *fetchCountLog
}

func (c *fetchCountConsumer) Fetch(ctx context.Context, max int, wait time.Duration) ([]eventlog.Message, error) {
	msgs, err := c.Consumer.Fetch(ctx, max, wait)
	if len(msgs) > 0 {
		c.l.fetches.Add(1)
	}
	return msgs, err
}

// heldPlans is a tracking-plan step that, on its first call, waits until
// the log has been fetched from twice.
type heldPlans struct {
	l        *fetchCountLog
	once     sync.Once
	overlaps atomic.Bool
}

func (h *heldPlans) Check(ctx context.Context, events []event.Event) ([]event.Event, []event.Problem, error) {
	h.once.Do(func() {
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			if h.l.fetches.Load() >= 2 {
				h.overlaps.Store(true)
				return
			}
		}
	})
	return events, nil, nil
}

// Run reads the next batch from the log while it decodes the one before
// (the read and decode stages overlap), and the events still reach every
// step in the log's order.
func TestRunReadsWhileDecoding(t *testing.T) {
	ctx := context.Background()
	r := newRig(t, t.TempDir())
	const records = 12
	var want []string
	for i := range records {
		evs := []event.Event{track(2 * i), track(2*i + 1)}
		for _, e := range evs {
			want = append(want, e.MessageID)
		}
		if _, err := r.log.Append(ctx, event.EncodeRecord("s", evs, nil)); err != nil {
			t.Fatal(err)
		}
	}
	l := &fetchCountLog{Log: r.log}
	plans := &heldPlans{l: l}
	var mu sync.Mutex
	var resolved []string
	identity := stepFunc(func(ctx context.Context, events []event.Event) error {
		mu.Lock()
		defer mu.Unlock()
		for _, e := range events {
			resolved = append(resolved, e.MessageID)
		}
		return nil
	})
	// One record a fetch, one fetch a batch.
	p, err := New(ctx, Options{Log: l, Events: r.ev, Quarantine: r.q, Plans: plans, Identity: identity,
		MaxRecords: 1, MaxBytes: 1, Linger: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(runCtx) }()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if n, _ := r.ev.Count(ctx); n == 2*records {
			break
		}
		if time.Now().After(deadline) {
			n, _ := r.ev.Count(ctx)
			t.Fatalf("stored %d events of %d", n, 2*records)
		}
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !plans.overlaps.Load() {
		t.Error("the second batch was not fetched while the first was decoded")
	}
	// Redeliveries may repeat a batch (at least once), never reorder one.
	mu.Lock()
	defer mu.Unlock()
	if got := slices.Compact(slices.Clone(resolved)); !slices.Equal(got, want) {
		t.Errorf("identity saw %v\nwant %v", resolved, want)
	}
}
