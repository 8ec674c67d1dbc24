package duckdb

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"runtime"
	"sync"
	"time"
)

// DuckDB's worker threads are one setting for the whole database. Writes
// want one: inside `tandem serve` the event store shares the machine with
// collection and the pipeline, and more threads cost them more CPU than
// they gain (see init). A query wants every core the node is not using.
// So the store runs with one thread, and a query raises the setting, for
// as long as it (and any query that joins it) runs, to the cores the
// process left idle in its last sample without queries, at least one and
// at most QueryThreads: an idle node gives a funnel every core, a node
// busy ingesting keeps them for ingest. Samples during which a query ran
// are dropped: the queries' own CPU is not load they should yield to (it
// gave a funnel run right after another query one thread on an idle
// node).

// sampleEvery is how often the store reads its process's CPU time.
const sampleEvery = 500 * time.Millisecond

// threadScheduler sets DuckDB's threads around queries.
type threadScheduler struct {
	db      *sql.DB
	cpuTime func() (time.Duration, error) // the process's CPU time so far
	cores   int                           // the machine's

	mu      sync.Mutex
	max     int  // most threads a query gets
	active  int  // queries running
	current int  // the threads setting now
	queried bool // a query ran since the last sample

	// busy is the cores the process used over the last sampleEvery; NaN
	// while unknown (then a query gets max).
	busyMu sync.Mutex
	busy   float64

	// The reader-priority rule (see "Reader priority" below); guarded
	// by mu.
	hold     holdRule
	since    time.Time     // when the running queries' first began
	released chan struct{} // closed when the last running query ends
	budget   time.Duration // writes may still be held this long
	filledAt time.Time     // budget was last refilled then
	now      func() time.Time

	stop chan struct{}
	done chan struct{}
}

func newThreadScheduler(db *sql.DB, cpuTime func() (time.Duration, error)) *threadScheduler {
	t := &threadScheduler{db: db, cpuTime: cpuTime, cores: runtime.NumCPU(), max: runtime.NumCPU(), current: 1,
		busy: math.NaN(), stop: make(chan struct{}), done: make(chan struct{}),
		hold: defaultHold, budget: defaultHold.most, now: time.Now}
	t.filledAt = t.now()
	go t.sample()
	return t
}

func (t *threadScheduler) sample() {
	defer close(t.done)
	tick := time.NewTicker(sampleEvery)
	defer tick.Stop()
	prevAt := time.Now()
	prev, prevErr := t.cpuTime()
	for {
		select {
		case <-t.stop:
			return
		case now := <-tick.C:
			cpu, err := t.cpuTime()
			t.mu.Lock()
			queried := t.queried || t.active > 0
			t.queried = false
			t.mu.Unlock()
			if !queried {
				busy := math.NaN()
				if err == nil && prevErr == nil {
					busy = (cpu - prev).Seconds() / now.Sub(prevAt).Seconds()
				}
				t.setBusy(busy)
			}
			prevAt, prev, prevErr = now, cpu, err
		}
	}
}

func (t *threadScheduler) setBusy(b float64) {
	t.busyMu.Lock()
	t.busy = b
	t.busyMu.Unlock()
}

// threadsFor is the threads a query starting now gets: the cores idle in
// the process's last sample without queries, rounded up (a partly idle
// core counts: light ingest, say half a core of two, leaves a query both),
// between 1 and max.
func (t *threadScheduler) threadsFor() int {
	t.busyMu.Lock()
	busy := t.busy
	t.busyMu.Unlock()
	if math.IsNaN(busy) {
		return t.max
	}
	n := int(math.Ceil(float64(t.cores) - busy - 0.05))
	return min(max(n, 1), t.max)
}

// begin is called before a query; the returned func after it. The first
// of overlapping queries sets the threads; the last one puts back one.
func (t *threadScheduler) begin(ctx context.Context) (end func()) {
	t.mu.Lock()
	if t.active == 0 {
		t.set(ctx, t.threadsFor())
		t.since = t.now()
		t.released = make(chan struct{})
	}
	t.active++
	t.queried = true
	t.mu.Unlock()
	return func() {
		t.mu.Lock()
		t.active--
		if t.active == 0 {
			t.set(context.Background(), 1)
			close(t.released)
			t.released = nil
		}
		t.mu.Unlock()
	}
}

// set changes DuckDB's threads; the caller holds mu. A failure leaves the
// setting as it was: the query runs all the same.
func (t *threadScheduler) set(ctx context.Context, n int) {
	if n == t.current {
		return
	}
	if _, err := t.db.ExecContext(ctx, fmt.Sprintf("SET GLOBAL threads = %d", n)); err == nil {
		t.current = n
	}
}

func (t *threadScheduler) close() {
	close(t.stop)
	<-t.done
}

// Begin is called by the store's analytics backend before each query; the
// returned func when the query is done (see threads.go).
func (s *Store) Begin(ctx context.Context) (end func()) { return s.threads.begin(ctx) }

// SetQueryThreads sets the most DuckDB threads a query gets (default: the
// number of cores); at least 1.
func (s *Store) SetQueryThreads(n int) {
	s.threads.mu.Lock()
	s.threads.max = max(n, 1)
	s.threads.mu.Unlock()
}

// QueryThreads is the DuckDB threads a query starting now would get: the
// cores the process left idle in its last sample without queries (see
// threads.go), at most SetQueryThreads'.
func (s *Store) QueryThreads() int {
	s.threads.mu.Lock()
	defer s.threads.mu.Unlock()
	return s.threads.threadsFor()
}

// Reader priority. Ingest is durable in the log before the store sees it,
// so its writes into DuckDB can wait a moment, and a query an analyst
// waits for is faster with the whole machine: a writer of events (Append,
// Stage) that arrives while a query has run for at least holdRule.after
// waits until the queries end, at most as long as the hold budget allows.
// The budget holds at most holdRule.most and refills at holdRule.share of
// wall time, so writes are held at most that share of the time however
// many queries run, and never longer than holdRule.most at once: ingest
// slows down, it does not starve. Short queries (a profile lookup, a
// funnel over little data) end before holdRule.after and never hold a
// write. Profile links are not held.

// holdRule is the reader-priority rule's bounds.
type holdRule struct {
	after time.Duration // a query holds writes once it has run this long
	most  time.Duration // the budget's capacity: the longest hold
	share float64       // the budget's refill per second of wall time
}

// defaultHold: a funnel over 10 M events (about 0.5-1 s on two cores)
// runs with writes held for all but its first 50 ms, about one such
// query every two seconds with a full hold; writes are held at most a
// quarter of the time.
var defaultHold = holdRule{after: 50 * time.Millisecond, most: 500 * time.Millisecond, share: 0.25}

// refill adds the budget earned since filledAt; the caller holds mu.
func (t *threadScheduler) refill(now time.Time) {
	if d := now.Sub(t.filledAt); d > 0 {
		t.budget = min(t.budget+time.Duration(float64(d)*t.hold.share), t.hold.most)
	}
	t.filledAt = now
}

// holdWrite is what a writer arriving now waits for: ch, closed when the
// running queries end, for at most wait; wait 0 when it need not wait.
func (t *threadScheduler) holdWrite() (ch <-chan struct{}, wait time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	t.refill(now)
	if t.active == 0 || t.hold.most <= 0 || now.Sub(t.since) < t.hold.after || t.budget <= 0 {
		return nil, 0
	}
	return t.released, t.budget
}

// charge takes a hold of d from the budget.
func (t *threadScheduler) charge(d time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.refill(t.now())
	t.budget = max(t.budget-d, 0)
}

// yield is called by a writer of events before it writes: it returns when
// no query that has run for holdRule.after is running, when the hold
// budget is spent, or when ctx is done.
func (t *threadScheduler) yield(ctx context.Context) {
	ch, wait := t.holdWrite()
	if wait <= 0 {
		return
	}
	start := t.now()
	timer := time.NewTimer(wait)
	select {
	case <-ch:
	case <-timer.C:
	case <-ctx.Done():
	}
	timer.Stop()
	t.charge(t.now().Sub(start))
}

// SetWriteHold sets the reader-priority rule (see threads.go): writes of
// events wait for a query that has run after, at most most at once and
// share of the time; most 0 turns it off (writes never wait for queries).
func (s *Store) SetWriteHold(after, most time.Duration, share float64) {
	s.threads.mu.Lock()
	defer s.threads.mu.Unlock()
	s.threads.hold = holdRule{after: after, most: most, share: share}
	s.threads.budget = min(s.threads.budget, most)
}
