package eventlog_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tandem/event"
	"tandem/eventlog"
)

// memLog is a Log in memory for the Committer's tests. Only Append and
// MaxRecordBytes work.
type memLog struct {
	max   int
	delay time.Duration
	gate  chan struct{} // when set, each Append waits for a receive from it
	err   error         // returned by Append when set

	mu       sync.Mutex
	records  [][]byte
	inFlight atomic.Int32
	overlap  atomic.Bool
}

func (l *memLog) Append(ctx context.Context, rec []byte) (uint64, error) {
	if l.inFlight.Add(1) > 1 {
		l.overlap.Store(true)
	}
	defer l.inFlight.Add(-1)
	if l.gate != nil {
		select {
		case <-l.gate:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	if l.delay > 0 {
		time.Sleep(l.delay)
	}
	if len(rec) > l.max {
		return 0, eventlog.ErrTooLarge
	}
	if l.err != nil {
		return 0, l.err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.records = append(l.records, bytes.Clone(rec))
	return uint64(len(l.records)), nil
}

func (l *memLog) MaxRecordBytes() int { return l.max }
func (l *memLog) Consumer(context.Context, string) (eventlog.Consumer, error) {
	return nil, errors.New("not implemented")
}
func (l *memLog) Ready(context.Context) error { return nil }
func (l *memLog) Close() error                { return nil }

func (l *memLog) recs() [][]byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.records)
}

// chunk returns a chunk of n events with ids tag-0..n-1.
func chunk(tag string, n int) []byte {
	evs := make([]event.Event, n)
	for i := range evs {
		evs[i] = event.Event{MessageID: fmt.Sprintf("%s-%d", tag, i), Type: "track", Raw: []byte(`{"x":1}`)}
	}
	return event.AppendEntries(nil, "src", evs, nil)
}

// eventIDs decodes records and counts the events they hold by id.
func eventIDs(t *testing.T, recs [][]byte, max int) map[string]int {
	t.Helper()
	ids := make(map[string]int)
	for i, r := range recs {
		if len(r) > max {
			t.Fatalf("record %d has %d bytes, over the max %d", i, len(r), max)
		}
		evs, _, err := event.DecodeRecord(r)
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		for _, e := range evs {
			ids[e.MessageID]++
		}
	}
	return ids
}

func TestCommitterGroups(t *testing.T) {
	l := &memLog{max: 1 << 20, delay: 2 * time.Millisecond}
	var hooks atomic.Int64
	cm := eventlog.NewCommitter(l, eventlog.CommitterOptions{
		OnAppend: func(d time.Duration, n, chunks int, err error) {
			if err != nil || n <= len(event.RecordHeader) || chunks < 1 || d <= 0 {
				t.Errorf("OnAppend(%v, %d, %d, %v)", d, n, chunks, err)
			}
			hooks.Add(1)
		},
	})
	defer cm.Close()
	const workers, per = 50, 4
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range per {
				if err := cm.Append(context.Background(), chunk(fmt.Sprintf("w%d-%d", w, i), 3)); err != nil {
					t.Errorf("Append: %v", err)
				}
			}
		})
	}
	wg.Wait()
	recs := l.recs()
	ids := eventIDs(t, recs, l.max)
	for w := range workers {
		for i := range per {
			for e := range 3 {
				if id := fmt.Sprintf("w%d-%d-%d", w, i, e); ids[id] != 1 {
					t.Fatalf("event %s found %d times", id, ids[id])
				}
			}
		}
	}
	st := cm.Stats()
	if st.Chunks != workers*per || st.Records != uint64(len(recs)) || st.Failed != 0 || hooks.Load() != int64(st.Records) {
		t.Fatalf("stats %+v, %d records, %d hook calls", st, len(recs), hooks.Load())
	}
	if len(recs) >= workers*per/2 {
		t.Fatalf("%d chunks from %d concurrent callers took %d records", workers*per, workers, len(recs))
	}
	if l.overlap.Load() {
		t.Fatal("the committer ran Appends concurrently")
	}
	t.Logf("%d chunks in %d records", st.Chunks, st.Records)
}

// TestCommitterSplits: chunks that do not fit in one record go in several,
// none over the max, each chunk whole.
func TestCommitterSplits(t *testing.T) {
	one := len(chunk("w00-00", 4))
	max := len(event.RecordHeader) + 3*one + one/2 // room for 3 chunks
	l := &memLog{max: max, delay: time.Millisecond}
	cm := eventlog.NewCommitter(l, eventlog.CommitterOptions{})
	defer cm.Close()
	const workers, per = 20, 5
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range per {
				if err := cm.Append(context.Background(), chunk(fmt.Sprintf("w%02d-%02d", w, i), 4)); err != nil {
					t.Errorf("Append: %v", err)
				}
			}
		})
	}
	wg.Wait()
	recs := l.recs()
	ids := eventIDs(t, recs, max)
	if len(ids) != workers*per*4 {
		t.Fatalf("%d distinct events, want %d", len(ids), workers*per*4)
	}
	for id, n := range ids {
		if n != 1 {
			t.Fatalf("event %s found %d times", id, n)
		}
	}
	full := 0
	for _, r := range recs {
		if len(r) == len(event.RecordHeader)+3*one {
			full++
		}
	}
	if full == 0 {
		t.Fatalf("no record holds 3 chunks: %d records for %d chunks", len(recs), workers*per)
	}
}

func TestCommitterTooLarge(t *testing.T) {
	l := &memLog{max: 1000}
	cm := eventlog.NewCommitter(l, eventlog.CommitterOptions{})
	defer cm.Close()
	room := 1000 - len(event.RecordHeader)
	if err := cm.Append(context.Background(), make([]byte, room+1)); !errors.Is(err, eventlog.ErrTooLarge) {
		t.Fatalf("Append over the max: %v", err)
	}
	if err := cm.Append(context.Background(), make([]byte, room)); err != nil {
		t.Fatalf("Append of a full record: %v", err)
	}
	if err := cm.Append(context.Background(), nil); err != nil {
		t.Fatalf("Append of nothing: %v", err)
	}
	if recs := l.recs(); len(recs) != 1 || len(recs[0]) != 1000 {
		t.Fatalf("records: %d", len(recs))
	}
}

// TestCommitterError: every caller whose chunk was in a failed record gets
// the log's error.
func TestCommitterError(t *testing.T) {
	fail := fmt.Errorf("%w: disk full", eventlog.ErrUnavailable)
	l := &memLog{max: 1 << 20, err: fail, delay: time.Millisecond}
	cm := eventlog.NewCommitter(l, eventlog.CommitterOptions{})
	defer cm.Close()
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			if err := cm.Append(context.Background(), chunk(fmt.Sprint(i), 1)); !errors.Is(err, eventlog.ErrUnavailable) {
				t.Errorf("Append: %v, want ErrUnavailable", err)
			}
		})
	}
	wg.Wait()
	if st := cm.Stats(); st.Records != 0 || st.FailedChunks != 20 || st.Failed == 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestCommitterContext: a caller whose context ends stops waiting; its
// chunk is still written.
func TestCommitterContext(t *testing.T) {
	l := &memLog{max: 1 << 20, gate: make(chan struct{})}
	cm := eventlog.NewCommitter(l, eventlog.CommitterOptions{})
	defer cm.Close()

	// The first Append blocks in the log.
	first := make(chan error, 1)
	go func() { first <- cm.Append(context.Background(), chunk("first", 1)) }()
	for l.inFlight.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	buf := chunk("second", 1)
	if err := cm.Append(ctx, buf); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Append with a context that ends: %v", err)
	}
	clear(buf) // the committer copied it
	if err := cm.Append(ctx, chunk("third", 1)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Append with an ended context: %v", err)
	}
	l.gate <- struct{}{}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	l.gate <- struct{}{}
	if err := cm.Close(); err != nil {
		t.Fatal(err)
	}
	ids := eventIDs(t, l.recs(), l.max)
	if ids["first-0"] != 1 || ids["second-0"] != 1 || ids["third-0"] != 0 {
		t.Fatalf("events written: %v", ids)
	}
}

// TestCommitterClose: Close writes what is queued before it returns.
func TestCommitterClose(t *testing.T) {
	l := &memLog{max: 1 << 20, gate: make(chan struct{})}
	cm := eventlog.NewCommitter(l, eventlog.CommitterOptions{})
	errs := make(chan error, 10)
	for i := range 10 {
		go func() { errs <- cm.Append(context.Background(), chunk(fmt.Sprint(i), 1)) }()
	}
	for cm.Stats().Records == 0 && l.inFlight.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(10 * time.Millisecond) // let the others queue
	closed := make(chan error)
	go func() { closed <- cm.Close() }()
	go func() {
		for {
			select {
			case l.gate <- struct{}{}:
			case <-time.After(time.Second):
				return
			}
		}
	}()
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	for range 10 {
		if err := <-errs; err != nil && !errors.Is(err, eventlog.ErrClosed) {
			t.Fatalf("Append: %v", err)
		}
	}
	st := cm.Stats()
	if got := len(eventIDs(t, l.recs(), l.max)); uint64(got) != st.Chunks {
		t.Fatalf("%d events written, stats %+v", got, st)
	}
	if err := cm.Append(context.Background(), chunk("late", 1)); !errors.Is(err, eventlog.ErrClosed) {
		t.Fatalf("Append after Close: %v", err)
	}
	if err := cm.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestCommitterAllocs(t *testing.T) {
	l := &memLog{max: 1 << 20}
	cm := eventlog.NewCommitter(l, eventlog.CommitterOptions{})
	defer cm.Close()
	c := chunk("a", 10)
	ctx := context.Background()
	// memLog.Append clones each record (1-2 allocations); the committer
	// adds a batch and its channel, and the Append's context.
	allocs := testing.AllocsPerRun(200, func() {
		if err := cm.Append(ctx, c); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 10 {
		t.Fatalf("%.1f allocations per Append", allocs)
	}
	t.Logf("%.1f allocations per Append", allocs)
}
