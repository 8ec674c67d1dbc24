// Package logtest is the contract test suite that every [eventlog.Log]
// implementation must pass.
package logtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"tandem/event"
	"tandem/eventlog"
)

// Run runs the suite. open returns the log stored under dir: empty the
// first time it is called with a dir, the same log again (everything
// appended and acknowledged before) when called again with that dir after
// the previous one was closed. Each subtest uses its own dir; open may fail
// t instead of returning an error.
//
// Beyond the interface documentation the suite expects of a Log:
//   - Close may be called more than once;
//   - after Close, Append returns an error wrapping [eventlog.ErrClosed];
//   - a record fetched and not acknowledged when its consumer (or the log)
//     is closed is delivered again within a few seconds of reopening it;
//   - Pending reaches its value within a few seconds of the Append or Ack
//     that changed it;
//   - Fetch returns soon after a record becomes available, not after the
//     whole wait.
func Run(t *testing.T, open func(t *testing.T, dir string) eventlog.Log) {
	s := &suite{open: open}
	t.Run("AppendSeqIncreases", s.appendSeqIncreases)
	t.Run("ConsumeInOrder", s.consumeInOrder)
	t.Run("ConsumerReopen", s.consumerReopen)
	t.Run("LogReopen", s.logReopen)
	t.Run("TwoConsumers", s.twoConsumers)
	t.Run("AppendDurableAcrossReopen", s.appendDurable)
	t.Run("TooLarge", s.tooLarge)
	t.Run("AfterClose", s.afterClose)
	t.Run("Pending", s.pending)
	t.Run("Backlog", s.backlog)
	t.Run("FetchEmpty", s.fetchEmpty)
	t.Run("FetchWakesOnAppend", s.fetchWakes)
	t.Run("ConcurrentAppends", s.concurrentAppends)
	t.Run("Committer", s.committer)
	t.Run("CommitterTooLarge", s.committerTooLarge)
}

type suite struct {
	open func(t *testing.T, dir string) eventlog.Log
}

// redeliverTimeout is how long the suite waits for records to be delivered
// again after a reopen.
const redeliverTimeout = 10 * time.Second

// openLog opens the log in dir and closes it when the test ends.
func (s *suite) openLog(t *testing.T, dir string) eventlog.Log {
	t.Helper()
	l := s.open(t, dir)
	if l == nil {
		t.Fatal("open returned a nil Log")
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

func openConsumer(t *testing.T, l eventlog.Log, name string) eventlog.Consumer {
	t.Helper()
	c, err := l.Consumer(t.Context(), name)
	if err != nil {
		t.Fatalf("Consumer(%q): %v", name, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func payload(tag string, i int) []byte {
	return fmt.Appendf(nil, "%s-%06d", tag, i)
}

// appendN appends n records tag-000000... and returns their seqs.
func appendN(t *testing.T, l eventlog.Log, tag string, n int) []uint64 {
	t.Helper()
	seqs := make([]uint64, n)
	for i := range n {
		seq, err := l.Append(t.Context(), payload(tag, i))
		if err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
		seqs[i] = seq
	}
	return seqs
}

// fetchN fetches until it has n records; it fails t if they do not come
// within timeout.
func fetchN(t *testing.T, c eventlog.Consumer, n int, timeout time.Duration) []eventlog.Message {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var out []eventlog.Message
	for len(out) < n {
		left := time.Until(deadline)
		if left <= 0 {
			t.Fatalf("fetched %d of %d records in %v: %v", len(out), n, timeout, seqsOf(out))
		}
		msgs, err := c.Fetch(t.Context(), n-len(out), min(left, time.Second))
		if err != nil {
			t.Fatalf("Fetch: %v", err)
		}
		if len(msgs) > n-len(out) {
			t.Fatalf("Fetch(max=%d) returned %d records", n-len(out), len(msgs))
		}
		out = append(out, msgs...)
	}
	return out
}

// expectNothing fails t if c delivers anything within wait.
func expectNothing(t *testing.T, c eventlog.Consumer, wait time.Duration) {
	t.Helper()
	msgs, err := c.Fetch(t.Context(), 100, wait)
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if len(msgs) > 0 {
		t.Fatalf("unexpected records delivered: %v", seqsOf(msgs))
	}
}

func ack(t *testing.T, c eventlog.Consumer, msgs ...eventlog.Message) {
	t.Helper()
	if err := c.Ack(t.Context(), msgs...); err != nil {
		t.Fatalf("Ack: %v", err)
	}
}

// expectPending fails t unless Pending reaches want within a few seconds:
// it may trail appends and acks by a moment.
func expectPending(t *testing.T, c eventlog.Consumer, want uint64) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		got, err := c.Pending(t.Context())
		if err != nil {
			t.Fatalf("Pending: %v", err)
		}
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Pending = %d, want %d", got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func seqsOf(msgs []eventlog.Message) []uint64 {
	seqs := make([]uint64, len(msgs))
	for i, m := range msgs {
		seqs[i] = m.Seq
	}
	return seqs
}

// expectRecords checks that msgs are exactly the records with seqs, in
// order, holding tag-i payloads for the given indexes.
func expectRecords(t *testing.T, msgs []eventlog.Message, seqs []uint64, tag string, idx []int) {
	t.Helper()
	if len(msgs) != len(idx) {
		t.Fatalf("got %d records %v, want %d", len(msgs), seqsOf(msgs), len(idx))
	}
	for k, i := range idx {
		if msgs[k].Seq != seqs[i] {
			t.Fatalf("record %d: seq %d, want %d (got %v)", k, msgs[k].Seq, seqs[i], seqsOf(msgs))
		}
		if want := payload(tag, i); !bytes.Equal(msgs[k].Data, want) {
			t.Fatalf("record seq %d: data %q, want %q", msgs[k].Seq, msgs[k].Data, want)
		}
	}
}

func span(from, to int) []int {
	var idx []int
	for i := from; i < to; i++ {
		idx = append(idx, i)
	}
	return idx
}

func (s *suite) appendSeqIncreases(t *testing.T) {
	l := s.openLog(t, t.TempDir())
	seqs := appendN(t, l, "seq", 20)
	for i := 1; i < len(seqs); i++ {
		if seqs[i] <= seqs[i-1] {
			t.Fatalf("seqs not increasing: %v", seqs)
		}
	}
	if err := l.Ready(t.Context()); err != nil {
		t.Fatalf("Ready: %v", err)
	}
}

func (s *suite) consumeInOrder(t *testing.T) {
	l := s.openLog(t, t.TempDir())
	rng := rand.New(rand.NewPCG(1, 2))
	const n = 25
	recs := make([][]byte, n)
	seqs := make([]uint64, n)
	for i := range recs {
		recs[i] = make([]byte, 1+rng.IntN(3000))
		for j := range recs[i] {
			recs[i][j] = byte(rng.Uint32())
		}
		var err error
		if seqs[i], err = l.Append(t.Context(), recs[i]); err != nil {
			t.Fatalf("Append: %v", err)
		}
	}
	c := openConsumer(t, l, "reader")
	var got []eventlog.Message
	deadline := time.Now().Add(10 * time.Second)
	for len(got) < n && time.Now().Before(deadline) {
		msgs, err := c.Fetch(t.Context(), 7, time.Second)
		if err != nil {
			t.Fatalf("Fetch: %v", err)
		}
		if len(msgs) > 7 {
			t.Fatalf("Fetch(max=7) returned %d records", len(msgs))
		}
		ack(t, c, msgs...)
		got = append(got, msgs...)
	}
	if len(got) != n {
		t.Fatalf("read %d of %d records", len(got), n)
	}
	for i, m := range got {
		if m.Seq != seqs[i] || !bytes.Equal(m.Data, recs[i]) {
			t.Fatalf("record %d: seq %d (%d bytes), want seq %d (%d bytes)", i, m.Seq, len(m.Data), seqs[i], len(recs[i]))
		}
	}
	expectNothing(t, c, 200*time.Millisecond)
	expectPending(t, c, 0)
}

// consumerReopen: acked records are not delivered again to a reopened
// consumer, unacked ones are.
func (s *suite) consumerReopen(t *testing.T) {
	l := s.openLog(t, t.TempDir())
	seqs := appendN(t, l, "cr", 10)
	c := openConsumer(t, l, "reader")
	got := fetchN(t, c, 10, 5*time.Second)
	expectRecords(t, got, seqs, "cr", span(0, 10))
	ack(t, c, got[:6]...)
	expectPending(t, c, 4)
	if err := c.Close(); err != nil {
		t.Fatalf("consumer Close: %v", err)
	}

	c = openConsumer(t, l, "reader")
	got = fetchN(t, c, 4, redeliverTimeout)
	expectRecords(t, got, seqs, "cr", span(6, 10))
	expectNothing(t, c, 300*time.Millisecond)
	ack(t, c, got...)
	expectPending(t, c, 0)
	if err := c.Close(); err != nil {
		t.Fatalf("consumer Close: %v", err)
	}

	c = openConsumer(t, l, "reader")
	expectPending(t, c, 0)
	expectNothing(t, c, 300*time.Millisecond)
}

// logReopen: acks survive closing and reopening the log; records fetched
// and not acked are delivered again.
func (s *suite) logReopen(t *testing.T) {
	dir := t.TempDir()
	l := s.openLog(t, dir)
	seqs := appendN(t, l, "lr", 10)
	c := openConsumer(t, l, "reader")
	got := fetchN(t, c, 10, 5*time.Second)
	ack(t, c, got[:5]...)
	// Close the log with the consumer still open.
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	l = s.openLog(t, dir)
	c = openConsumer(t, l, "reader")
	expectPending(t, c, 5)
	got = fetchN(t, c, 5, redeliverTimeout)
	expectRecords(t, got, seqs, "lr", span(5, 10))
	expectNothing(t, c, 300*time.Millisecond)
	ack(t, c, got...)
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	l = s.openLog(t, dir)
	c = openConsumer(t, l, "reader")
	expectPending(t, c, 0)
	expectNothing(t, c, 300*time.Millisecond)
	seq, err := l.Append(t.Context(), []byte("after"))
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	if seq <= seqs[len(seqs)-1] {
		t.Fatalf("seq after reopen %d, not above %d", seq, seqs[len(seqs)-1])
	}
	got = fetchN(t, c, 1, 5*time.Second)
	if got[0].Seq != seq || string(got[0].Data) != "after" {
		t.Fatalf("got seq %d %q, want %d %q", got[0].Seq, got[0].Data, seq, "after")
	}
}

func (s *suite) twoConsumers(t *testing.T) {
	l := s.openLog(t, t.TempDir())
	seqs := appendN(t, l, "two", 8)
	a := openConsumer(t, l, "a")
	b := openConsumer(t, l, "b")
	got := fetchN(t, a, 8, 5*time.Second)
	expectRecords(t, got, seqs, "two", span(0, 8))
	ack(t, a, got...)
	expectPending(t, a, 0)
	expectPending(t, b, 8)
	got = fetchN(t, b, 8, 5*time.Second)
	expectRecords(t, got, seqs, "two", span(0, 8))
	ack(t, b, got[:3]...)
	expectPending(t, b, 5)
	expectPending(t, a, 0)
}

// appendDurable: everything appended before Close is there after reopening.
func (s *suite) appendDurable(t *testing.T) {
	dir := t.TempDir()
	l := s.openLog(t, dir)
	const n = 100
	seqs := appendN(t, l, "dur", n)
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	l = s.openLog(t, dir)
	c := openConsumer(t, l, "reader")
	expectPending(t, c, n)
	got := fetchN(t, c, n, 10*time.Second)
	expectRecords(t, got, seqs, "dur", span(0, n))
	seq, err := l.Append(t.Context(), []byte("x"))
	if err != nil {
		t.Fatalf("Append after reopen: %v", err)
	}
	if seq <= seqs[n-1] {
		t.Fatalf("seq after reopen %d, not above %d", seq, seqs[n-1])
	}
}

func (s *suite) tooLarge(t *testing.T) {
	l := s.openLog(t, t.TempDir())
	limit := l.MaxRecordBytes()
	if limit < 64<<10 {
		t.Fatalf("MaxRecordBytes %d, want at least 64 KiB", limit)
	}
	if _, err := l.Append(t.Context(), make([]byte, limit+1)); !errors.Is(err, eventlog.ErrTooLarge) {
		t.Fatalf("Append of %d bytes: %v, want ErrTooLarge", limit+1, err)
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), limit/16+1)[:limit]
	seq, err := l.Append(t.Context(), big)
	if err != nil {
		t.Fatalf("Append of MaxRecordBytes (%d): %v", limit, err)
	}
	c := openConsumer(t, l, "reader")
	got := fetchN(t, c, 1, 5*time.Second)
	if got[0].Seq != seq || !bytes.Equal(got[0].Data, big) {
		t.Fatalf("read back seq %d, %d bytes; want seq %d, %d bytes", got[0].Seq, len(got[0].Data), seq, len(big))
	}
}

func (s *suite) afterClose(t *testing.T) {
	l := s.openLog(t, t.TempDir())
	appendN(t, l, "ac", 1)
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := l.Append(t.Context(), []byte("late")); !errors.Is(err, eventlog.ErrClosed) {
		t.Fatalf("Append after Close: %v, want ErrClosed", err)
	}
	if _, err := l.Consumer(t.Context(), "reader"); err == nil {
		t.Fatal("Consumer after Close: no error")
	}
	if err := l.Ready(t.Context()); err == nil {
		t.Fatal("Ready after Close: no error")
	}
	_ = l.Close() // a second Close must not panic or hang
}

func (s *suite) pending(t *testing.T) {
	l := s.openLog(t, t.TempDir())
	c := openConsumer(t, l, "reader")
	expectPending(t, c, 0)
	appendN(t, l, "p", 10)
	expectPending(t, c, 10)
	got := fetchN(t, c, 4, 5*time.Second)
	expectPending(t, c, 10) // fetched is not acknowledged
	ack(t, c, got...)
	expectPending(t, c, 6)
	appendN(t, l, "p2", 3)
	expectPending(t, c, 9)
}

// backlog: the oldest unacknowledged record's append time, moving on as
// records are acknowledged, zero when none is left.
func (s *suite) backlog(t *testing.T) {
	l := s.openLog(t, t.TempDir())
	c := openConsumer(t, l, "reader")
	if b, err := c.Backlog(t.Context()); err != nil || b.Records != 0 || !b.Oldest.IsZero() {
		t.Fatalf("Backlog of an empty log = %+v, %v", b, err)
	}
	before := time.Now()
	appendN(t, l, "b1", 2)
	after := time.Now()
	time.Sleep(50 * time.Millisecond)
	mid := time.Now()
	appendN(t, l, "b2", 2)
	expectPending(t, c, 4)
	b, err := c.Backlog(t.Context())
	if err != nil || b.Records != 4 {
		t.Fatalf("Backlog = %+v, %v; want 4 records", b, err)
	}
	// The server's clock is this machine's; allow for its rounding.
	if b.Oldest.Before(before.Add(-time.Second)) || b.Oldest.After(after.Add(time.Second)) {
		t.Fatalf("Oldest = %v, want the first append's time (%v .. %v)", b.Oldest, before, after)
	}
	got := fetchN(t, c, 4, 5*time.Second)
	ack(t, c, got[:2]...)
	expectPending(t, c, 2)
	if b, err = c.Backlog(t.Context()); err != nil || b.Records != 2 || b.Oldest.Before(mid.Add(-time.Millisecond)) {
		t.Fatalf("Backlog after acking the first two = %+v, %v; want 2 records appended after %v", b, err, mid)
	}
	ack(t, c, got[2:]...)
	expectPending(t, c, 0)
	if b, err = c.Backlog(t.Context()); err != nil || b.Records != 0 || !b.Oldest.IsZero() {
		t.Fatalf("Backlog after acking all = %+v, %v", b, err)
	}
}

func (s *suite) fetchEmpty(t *testing.T) {
	l := s.openLog(t, t.TempDir())
	c := openConsumer(t, l, "reader")
	for _, wait := range []time.Duration{0, 300 * time.Millisecond} {
		start := time.Now()
		msgs, err := c.Fetch(t.Context(), 10, wait)
		if err != nil {
			t.Fatalf("Fetch(wait=%v): %v", wait, err)
		}
		if len(msgs) != 0 {
			t.Fatalf("Fetch(wait=%v) on an empty log: %v", wait, seqsOf(msgs))
		}
		if d := time.Since(start); d > wait+2*time.Second {
			t.Fatalf("Fetch(wait=%v) took %v", wait, d)
		}
	}
	// A context that ends cuts the wait short.
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	msgs, _ := c.Fetch(ctx, 10, time.Minute)
	if len(msgs) != 0 {
		t.Fatalf("Fetch on an empty log: %v", seqsOf(msgs))
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Fetch with a context ending after 200ms took %v", d)
	}
}

func (s *suite) fetchWakes(t *testing.T) {
	l := s.openLog(t, t.TempDir())
	c := openConsumer(t, l, "reader")
	done := make(chan error, 1)
	go func() {
		time.Sleep(200 * time.Millisecond)
		_, err := l.Append(context.Background(), []byte("wake"))
		done <- err
	}()
	start := time.Now()
	msgs, err := c.Fetch(t.Context(), 10, 20*time.Second)
	d := time.Since(start)
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if aerr := <-done; aerr != nil {
		t.Fatalf("Append: %v", aerr)
	}
	if len(msgs) != 1 || string(msgs[0].Data) != "wake" {
		t.Fatalf("Fetch returned %d records, want the one appended", len(msgs))
	}
	if d > 5*time.Second {
		t.Fatalf("Fetch returned %v after it started, long after the record was appended", d)
	}
}

func (s *suite) concurrentAppends(t *testing.T) {
	l := s.openLog(t, t.TempDir())
	const workers, per = 16, 40
	seqs := make([][]uint64, workers)
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		seqs[w] = make([]uint64, per)
		wg.Go(func() {
			for i := range per {
				seq, err := l.Append(context.Background(), payload(fmt.Sprintf("w%02d", w), i))
				if err != nil {
					errs <- err
					return
				}
				seqs[w][i] = seq
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Append: %v", err)
	}
	want := make(map[uint64]string, workers*per)
	for w := range workers {
		for i, seq := range seqs[w] {
			if _, dup := want[seq]; dup {
				t.Fatalf("seq %d returned twice", seq)
			}
			want[seq] = string(payload(fmt.Sprintf("w%02d", w), i))
		}
	}
	c := openConsumer(t, l, "reader")
	got := fetchN(t, c, workers*per, 20*time.Second)
	for k, m := range got {
		if k > 0 && m.Seq <= got[k-1].Seq {
			t.Fatalf("records out of order: %d after %d", m.Seq, got[k-1].Seq)
		}
		w, ok := want[m.Seq]
		if !ok {
			t.Fatalf("record seq %d: no Append returned it (or delivered twice)", m.Seq)
		}
		if string(m.Data) != w {
			t.Fatalf("record seq %d: %q, want %q", m.Seq, m.Data, w)
		}
		delete(want, m.Seq)
	}
	expectNothing(t, c, 200*time.Millisecond)
}

func (s *suite) committer(t *testing.T) {
	l := s.openLog(t, t.TempDir())
	var mu sync.Mutex
	var hooked, hookedChunks int
	cm := eventlog.NewCommitter(l, eventlog.CommitterOptions{
		OnAppend: func(d time.Duration, n int, chunks int, err error) {
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				hooked++
				hookedChunks += chunks
			}
		},
	})
	t.Cleanup(func() { _ = cm.Close() })

	const workers, per, events = 32, 10, 3
	start := make(chan struct{})
	errs := make(chan error, workers*per)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			<-start
			var evs []event.Event
			var buf []byte
			for i := range per {
				evs = evs[:0]
				for e := range events {
					id := fmt.Sprintf("g%02d-c%02d-e%d", w, i, e)
					evs = append(evs, event.Event{MessageID: id, Type: "track", Name: "Test", UserID: "u", Raw: []byte(`{"id":"` + id + `"}`)})
				}
				buf = event.AppendEntries(buf[:0], "src", evs, nil)
				if err := cm.Append(t.Context(), buf); err != nil {
					errs <- err
				}
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Committer.Append: %v", err)
	}
	if err := cm.Close(); err != nil {
		t.Fatalf("Committer.Close: %v", err)
	}
	if err := cm.Append(t.Context(), []byte{1}); !errors.Is(err, eventlog.ErrClosed) {
		t.Fatalf("Committer.Append after Close: %v, want ErrClosed", err)
	}

	st := cm.Stats()
	if st.Chunks != workers*per || st.Failed != 0 {
		t.Fatalf("stats %+v: want %d chunks, no failures", st, workers*per)
	}
	if st.Records >= st.Chunks {
		t.Fatalf("stats %+v: %d concurrent callers were not grouped into fewer records", st, workers)
	}
	mu.Lock()
	if uint64(hooked) != st.Records || uint64(hookedChunks) != st.Chunks {
		t.Fatalf("OnAppend saw %d records, %d chunks; stats %+v", hooked, hookedChunks, st)
	}
	mu.Unlock()

	c := openConsumer(t, l, "reader")
	got := fetchN(t, c, int(st.Records), 10*time.Second)
	expectNothing(t, c, 200*time.Millisecond)
	seen := make(map[string]int)
	var total uint64
	for _, m := range got {
		total += uint64(len(m.Data))
		evs, probs, err := event.DecodeRecord(m.Data)
		if err != nil {
			t.Fatalf("record seq %d: %v", m.Seq, err)
		}
		if len(probs) != 0 {
			t.Fatalf("record seq %d: %d problems, want none", m.Seq, len(probs))
		}
		for _, e := range evs {
			seen[e.MessageID]++
			if e.SourceID != "src" || string(e.Raw) != `{"id":"`+e.MessageID+`"}` {
				t.Fatalf("event %s decoded wrong: %+v", e.MessageID, e)
			}
		}
	}
	if total != st.Bytes {
		t.Fatalf("records hold %d bytes, stats say %d", total, st.Bytes)
	}
	for w := range workers {
		for i := range per {
			for e := range events {
				id := fmt.Sprintf("g%02d-c%02d-e%d", w, i, e)
				if seen[id] != 1 {
					t.Fatalf("event %s found %d times, want once", id, seen[id])
				}
				delete(seen, id)
			}
		}
	}
	if len(seen) != 0 {
		t.Fatalf("unexpected events: %v", slices.Sorted(maps.Keys(seen)))
	}
	t.Logf("%d chunks from %d callers in %d records", st.Chunks, workers, st.Records)
}

func (s *suite) committerTooLarge(t *testing.T) {
	l := s.openLog(t, t.TempDir())
	cm := eventlog.NewCommitter(l, eventlog.CommitterOptions{})
	t.Cleanup(func() { _ = cm.Close() })
	room := l.MaxRecordBytes() - len(event.RecordHeader)
	if err := cm.Append(t.Context(), make([]byte, room+1)); !errors.Is(err, eventlog.ErrTooLarge) {
		t.Fatalf("Append of a chunk of %d bytes: %v, want ErrTooLarge", room+1, err)
	}
	if err := cm.Append(t.Context(), make([]byte, room)); err != nil {
		t.Fatalf("Append of a chunk of %d bytes, filling a record: %v", room, err)
	}
	if st := cm.Stats(); st.Records != 1 || st.Bytes != uint64(l.MaxRecordBytes()) {
		t.Fatalf("stats %+v, want 1 record of %d bytes", st, l.MaxRecordBytes())
	}
}
