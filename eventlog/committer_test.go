package eventlog_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
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

// TestCommitterContext: a caller whose context ends stops waiting. Its
// chunk leaves the queue if the writer had not taken it yet; a chunk in the
// record being appended is written all the same.
func TestCommitterContext(t *testing.T) {
	l := &memLog{max: 1 << 20, gate: make(chan struct{})}
	cm := eventlog.NewCommitter(l, eventlog.CommitterOptions{})
	defer cm.Close()

	// The first Append blocks in the log; its caller gives up.
	fctx, fcancel := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() { first <- cm.Append(fctx, chunk("first", 1)) }()
	for l.inFlight.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	fcancel()
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Fatalf("Append whose caller gave up while it was written: %v", err)
	}

	// The second queues behind it and gives up too, the third keeps
	// waiting and lands in the same record as the second did.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	third := make(chan error, 1)
	buf := chunk("second", 1)
	go func() {
		for cm.Stats().QueuedBytes < int64(len(chunk("first", 1))+len(buf)) {
			time.Sleep(time.Millisecond)
		}
		third <- cm.Append(context.Background(), chunk("third", 1))
	}()
	if err := cm.Append(ctx, buf); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Append with a context that ends: %v", err)
	}
	clear(buf) // the committer copied it
	if err := cm.Append(ctx, chunk("fourth", 1)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Append with an ended context: %v", err)
	}
	l.gate <- struct{}{} // the first record
	l.gate <- struct{}{} // the record the second and third shared
	if err := <-third; err != nil {
		t.Fatal(err)
	}
	if err := cm.Close(); err != nil {
		t.Fatal(err)
	}
	recs := l.recs()
	ids := eventIDs(t, recs, l.max)
	if ids["first-0"] != 1 || ids["second-0"] != 0 || ids["third-0"] != 1 || ids["fourth-0"] != 0 || len(ids) != 2 {
		t.Fatalf("events written: %v", ids)
	}
	if len(recs) != 2 || len(recs[1]) != len(event.RecordHeader)+len(chunk("third", 1)) {
		t.Fatalf("%d records; the second has %d bytes", len(recs), len(recs[len(recs)-1]))
	}
	if st := cm.Stats(); st.Withdrawn != 1 || st.QueuedBytes != 0 {
		t.Fatalf("stats %+v, want 1 withdrawn and nothing queued", st)
	}
}

// TestCommitterWithdrawnBatch: when every caller of a queued record gives
// up, nothing is written for it.
func TestCommitterWithdrawnBatch(t *testing.T) {
	l := &memLog{max: 1 << 20, gate: make(chan struct{})}
	cm := eventlog.NewCommitter(l, eventlog.CommitterOptions{})
	first := make(chan error, 1)
	go func() { first <- cm.Append(context.Background(), chunk("first", 1)) }()
	for l.inFlight.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range 5 {
		wg.Go(func() {
			if err := cm.Append(ctx, chunk(fmt.Sprint("gone", i), 2)); !errors.Is(err, context.Canceled) {
				t.Errorf("Append: %v", err)
			}
		})
	}
	for cm.Stats().QueuedBytes <= int64(len(chunk("first", 1))) {
		time.Sleep(time.Millisecond)
	}
	cancel()
	wg.Wait()
	l.gate <- struct{}{}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if err := cm.Close(); err != nil {
		t.Fatal(err)
	}
	if recs := l.recs(); len(recs) != 1 {
		t.Fatalf("%d records written, want only the first", len(recs))
	}
	if st := cm.Stats(); st.Withdrawn != 5 || st.Records != 1 || st.QueuedBytes != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestCommitterBudget: with MaxQueueBytes reached, Append fails at once
// with ErrOverloaded and queues nothing; once the log catches up it takes
// chunks again.
func TestCommitterBudget(t *testing.T) {
	l := &memLog{max: 1 << 20, gate: make(chan struct{})}
	one := len(chunk("c0", 4))
	var refused atomic.Int64
	cm := eventlog.NewCommitter(l, eventlog.CommitterOptions{
		MaxQueueBytes: int64(3 * one),
		OnOverload:    func(n int) { refused.Add(int64(n)) },
	})
	defer cm.Close()
	errs := make(chan error, 3)
	for i := range 3 {
		go func() { errs <- cm.Append(context.Background(), chunk(fmt.Sprint("c", i), 4)) }()
	}
	for cm.Stats().QueuedBytes < int64(3*one) {
		time.Sleep(time.Millisecond)
	}
	// Over the budget, whether the first record is being written or not.
	for i := range 3 {
		err := cm.Append(context.Background(), chunk(fmt.Sprint("over", i), 4))
		if !errors.Is(err, eventlog.ErrOverloaded) {
			t.Fatalf("Append over the budget: %v, want ErrOverloaded", err)
		}
	}
	overBytes := 3 * len(chunk("over0", 4))
	if st := cm.Stats(); st.Overloaded != 3 || st.QueuedBytes != int64(3*one) || refused.Load() != int64(overBytes) {
		t.Fatalf("stats %+v, OnOverload saw %d bytes", st, refused.Load())
	}
	// A small chunk that fits still goes in.
	go func() {
		for range 3 {
			l.gate <- struct{}{}
		}
	}()
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if st := cm.Stats(); st.QueuedBytes != 0 {
		t.Fatalf("queued bytes %d after the log caught up", st.QueuedBytes)
	}
	// A chunk over the whole budget is taken when nothing else waits.
	go func() { l.gate <- struct{}{} }()
	if err := cm.Append(context.Background(), chunk("big", 16)); err != nil {
		t.Fatalf("Append of a chunk over the budget into an empty queue: %v", err)
	}
	ids := eventIDs(t, l.recs(), l.max)
	for id := range ids {
		if strings.HasPrefix(id, "over") {
			t.Fatalf("refused event %s was written", id)
		}
	}
	if len(ids) != 3*4+16 {
		t.Fatalf("%d events written, want %d", len(ids), 3*4+16)
	}
}

// TestCommitterCloseError: an append that fails during Close's final flush
// makes Close fail.
func TestCommitterCloseError(t *testing.T) {
	fail := fmt.Errorf("%w: fsync: input/output error", eventlog.ErrUnavailable)
	l := &memLog{max: 1 << 20, gate: make(chan struct{}), err: fail}
	cm := eventlog.NewCommitter(l, eventlog.CommitterOptions{})
	appended := make(chan error, 1)
	go func() { appended <- cm.Append(context.Background(), chunk("last", 1)) }()
	for l.inFlight.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	closed := make(chan error, 1)
	go func() { closed <- cm.Close() }()
	// Close has marked the committer closed once Append refuses.
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
		err := cm.Append(ctx, chunk("x", 1)) // withdrawn if it queues
		cancel()
		if errors.Is(err, eventlog.ErrClosed) {
			break
		}
	}
	l.gate <- struct{}{}
	if err := <-appended; !errors.Is(err, eventlog.ErrUnavailable) {
		t.Fatalf("Append: %v", err)
	}
	err := <-closed
	if !errors.Is(err, eventlog.ErrUnavailable) || !strings.Contains(err.Error(), "final flush") {
		t.Fatalf("Close: %v, want the final flush's failure", err)
	}
	if err2 := cm.Close(); err2 == nil || err2.Error() != err.Error() {
		t.Fatalf("second Close: %v", err2)
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
