package duckdb

import (
	"context"
	"math"
	"sync"
	"testing"
	"time"

	"tandem/analytics"
	adb "tandem/analytics/duckdb"
	"tandem/event"
)

// threadsNow reads DuckDB's threads setting.
func threadsNow(t *testing.T, s *Store) int {
	t.Helper()
	var n int
	if err := s.db.QueryRow("SELECT current_setting('threads')::INT").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// useCores makes s's scheduler believe the machine has cores cores, of
// which the process used busy in its last sample.
func useCores(s *Store, cores int, busy float64) {
	s.threads.mu.Lock()
	s.threads.cores, s.threads.max = cores, cores
	s.threads.mu.Unlock()
	s.threads.setBusy(busy)
}

// An idle node's query gets every core; a busy one's the idle cores, at
// least one; writes run with one; overlapping queries share the setting
// until the last ends.
func TestQueryThreads(t *testing.T) {
	s, err := Open(":memory:")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if got := threadsNow(t, s); got != 1 {
		t.Fatalf("store opened with %d threads, want 1", got)
	}
	for _, c := range []struct {
		busy float64
		want int
	}{{0, 4}, {0.4, 4}, {1.6, 3}, {2.5, 2}, {3.2, 1}, {3.9, 1}} {
		useCores(s, 4, c.busy)
		end := s.Begin(ctx)
		if got := threadsNow(t, s); got != c.want {
			t.Errorf("process using %.1f of 4 cores: query ran with %d threads, want %d", c.busy, got, c.want)
		}
		end()
		if got := threadsNow(t, s); got != 1 {
			t.Errorf("after the query: %d threads, want 1", got)
		}
	}

	useCores(s, 4, 0)
	end1 := s.Begin(ctx)
	useCores(s, 4, 3.9) // a second query joins the first's setting
	end2 := s.Begin(ctx)
	end1()
	if got := threadsNow(t, s); got != 4 {
		t.Errorf("one of two queries still running: %d threads, want 4", got)
	}
	end2()
	if got := threadsNow(t, s); got != 1 {
		t.Errorf("both queries done: %d threads, want 1", got)
	}

	useCores(s, 4, 0)
	s.SetQueryThreads(2)
	end := s.Begin(ctx)
	if got := threadsNow(t, s); got != 2 {
		t.Errorf("SetQueryThreads(2): %d threads, want 2", got)
	}
	end()
}

// recorder is a scheduler that passes each query to the store's and
// records the threads setting the query then runs with.
type recorder struct {
	s    *Store
	seen []int
}

func (r *recorder) Begin(ctx context.Context) func() {
	end := r.s.Begin(ctx)
	var n int
	if err := r.s.db.QueryRowContext(ctx, "SELECT current_setting('threads')::INT").Scan(&n); err == nil {
		r.seen = append(r.seen, n)
	}
	return end
}

// The analytics backend tells its scheduler of its queries: a funnel runs
// with the threads the store chose, and the store is back to one after.
func TestAnalyticsQueriesScheduled(t *testing.T) {
	s, err := Open(":memory:")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var evs []event.Event
	for i, name := range []string{"A", "B"} {
		evs = append(evs, event.Event{SourceID: "s", MessageID: name, Type: "track", Name: name, UserID: "u",
			Timestamp: now.Add(time.Duration(i) * time.Minute), ReceivedAt: now, Raw: []byte(`{}`)})
	}
	if _, err := s.Append(ctx, evs); err != nil {
		t.Fatal(err)
	}
	useCores(s, 3, 0)
	fq := &analytics.FunnelQuery{Window: analytics.Seconds(3600), Steps: []analytics.FunnelStep{
		{Condition: analytics.Condition{Event: "A"}}, {Condition: analytics.Condition{Event: "B"}}}}
	fq.From, fq.To = analytics.At(now.Add(-time.Hour)), analytics.At(now.Add(time.Hour))
	if err := fq.Validate(now.Add(2 * time.Hour)); err != nil {
		t.Fatal(err)
	}
	rec := &recorder{s: s}
	b := adb.New(s.db, adb.Tables{Events: "events", Links: "profile_links"}, rec)
	res, err := b.Funnel(ctx, fq)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Steps) != 2 || res.Steps[1].Profiles != 1 {
		t.Fatalf("funnel %+v", res.Steps)
	}
	if len(rec.seen) != 1 || rec.seen[0] != 3 {
		t.Errorf("threads during the funnel's queries: %v, want [3]", rec.seen)
	}
	if got := threadsNow(t, s); got != 1 {
		t.Errorf("after the funnel: %d threads, want 1", got)
	}
}

// The sampler measures the process's CPU use in cores.
func TestThreadSampler(t *testing.T) {
	start := time.Now()
	sched := newThreadScheduler(nil, func() (time.Duration, error) {
		return time.Duration(1.5 * float64(time.Since(start))), nil // 1.5 cores busy
	})
	defer sched.close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		sched.busyMu.Lock()
		busy := sched.busy
		sched.busyMu.Unlock()
		if !math.IsNaN(busy) { // sampled
			if busy < 1.3 || busy > 1.7 {
				t.Fatalf("sampled %.2f cores busy, want about 1.5", busy)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no sample after 10 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Samples taken while a query ran are dropped: the query's own CPU is not
// load the next query should yield to.
func TestThreadSamplerSkipsQueries(t *testing.T) {
	var mu sync.Mutex
	var cpu time.Duration
	rate := 0.2 // cores busy
	last := time.Now()
	sched := newThreadScheduler(nil, func() (time.Duration, error) {
		mu.Lock()
		defer mu.Unlock()
		now := time.Now()
		cpu += time.Duration(rate * float64(now.Sub(last)))
		last = now
		return cpu, nil
	})
	defer sched.close()
	sched.max = 1 // begin then never changes DuckDB's setting (no database here)
	busy := func() float64 {
		sched.busyMu.Lock()
		defer sched.busyMu.Unlock()
		return sched.busy
	}
	deadline := time.Now().Add(10 * time.Second)
	for math.IsNaN(busy()) {
		if time.Now().After(deadline) {
			t.Fatal("no sample after 10 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	end := sched.begin(context.Background())
	mu.Lock()
	rate = 1.9 // the query's own CPU
	mu.Unlock()
	time.Sleep(4 * sampleEvery)
	if b := busy(); b > 0.5 {
		t.Errorf("after a query's samples: %.2f cores busy, want the 0.2 sampled before it", b)
	}
	mu.Lock()
	rate = 0.2
	mu.Unlock()
	end()
}

// clock is a fake time for the write-hold rule.
type clock struct{ t time.Time }

func (c *clock) now() time.Time      { return c.t }
func (c *clock) add(d time.Duration) { c.t = c.t.Add(d) }
func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// Reader priority: a writer waits for a query that has run holdRule.after,
// until it ends, at most the budget; short queries hold nobody; the
// budget caps a hold and refills at holdRule.share, so back-to-back
// queries hold writes at most that share of the time.
func TestWriteHoldRule(t *testing.T) {
	c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	sched := newThreadScheduler(nil, func() (time.Duration, error) { return 0, nil })
	defer sched.close()
	sched.max = 1 // begin then never changes DuckDB's setting (no database here)
	sched.mu.Lock()
	sched.now, sched.filledAt = c.now, c.t
	sched.mu.Unlock()
	r := defaultHold

	if _, wait := sched.holdWrite(); wait != 0 {
		t.Fatalf("no query running: writer waits %v", wait)
	}
	end := sched.begin(context.Background())
	c.add(r.after / 2)
	if _, wait := sched.holdWrite(); wait != 0 {
		t.Errorf("query running for %v: writer waits %v, want 0 (short queries hold nobody)", r.after/2, wait)
	}
	c.add(r.after)
	ch, wait := sched.holdWrite()
	if wait != r.most || ch == nil || isClosed(ch) {
		t.Fatalf("query running for %v: writer waits %v, want %v until it ends", r.after*3/2, wait, r.most)
	}
	end()
	if !isClosed(ch) {
		t.Fatal("the query ended: the waiting writer is not released")
	}
	sched.charge(r.most / 5)

	// A query that never ends: the writer is held for the budget, then
	// for what refills; over a long time, about share of it.
	end = sched.begin(context.Background())
	c.add(r.after)
	var held time.Duration
	span := 100 * time.Second
	for start := c.t; c.t.Sub(start) < span; {
		_, wait := sched.holdWrite()
		if wait > r.most {
			t.Fatalf("writer waits %v, more than the %v a hold may last", wait, r.most)
		}
		c.add(wait)
		sched.charge(wait)
		held += wait
		c.add(100 * time.Millisecond) // the write, then the next one arrives
	}
	end()
	if most := time.Duration(float64(span)*r.share) + r.most; held > most {
		t.Errorf("writes held %v of %v with queries back to back, want at most %v", held, span, most)
	}
	if held < time.Duration(float64(span)*r.share)/2 {
		t.Errorf("writes held only %v of %v: the budget does not refill", held, span)
	}

	// Off.
	sched.mu.Lock()
	sched.hold = holdRule{}
	sched.mu.Unlock()
	end = sched.begin(context.Background())
	c.add(time.Second)
	if _, wait := sched.holdWrite(); wait != 0 {
		t.Errorf("hold turned off: writer waits %v", wait)
	}
	end()
}

// An Append that arrives during a long query waits for it to end, and a
// query that never ends holds it only as long as the budget allows.
func TestAppendYieldsToQueries(t *testing.T) {
	s, err := Open(":memory:")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ev := func(id string) []event.Event {
		return []event.Event{{SourceID: "s", MessageID: id, Type: "track", Name: "A", UserID: "u",
			Timestamp: now, ReceivedAt: now, Raw: []byte(`{}`)}}
	}
	appended := func(id string) chan error {
		done := make(chan error, 1)
		go func() {
			_, err := s.Append(ctx, ev(id))
			done <- err
		}()
		return done
	}
	wait := func(done chan error, what string) {
		t.Helper()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: the Append never returned", what)
		}
	}

	wait(appended("0"), "no query")    // the first Append sets the store up
	s.SetWriteHold(0, time.Hour, 0.25) // held until the query ends
	end := s.Begin(ctx)
	done := appended("1")
	time.Sleep(200 * time.Millisecond)
	select {
	case <-done:
		t.Fatal("an Append during a query did not wait for it")
	default:
	}
	end()
	wait(done, "query ended")

	s.SetWriteHold(0, 100*time.Millisecond, 0.25)
	end = s.Begin(ctx) // never ends while the Appends run
	for _, id := range []string{"2", "3", "4"} {
		wait(appended(id), "query running, budget 100 ms")
	}
	end()
	if n, err := s.Count(ctx); err != nil || n != 5 {
		t.Fatalf("stored %d events (%v), want 5", n, err)
	}
}
