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
