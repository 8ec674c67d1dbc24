package pipeline

import (
	"testing"
	"time"

	"tandem/metrics"
)

// TestCollectionFirst checks the rule's decisions on a clock of its own:
// it waits while collection's mean load over a window reaches Busy and
// the backlog is younger than MaxAge, and only then.
func TestCollectionFirst(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	var occ float64 // request-seconds
	inflight := 0.0 // requests at once, from now on
	age := time.Duration(0)
	advance := func(d time.Duration) {
		occ += inflight * d.Seconds()
		now = now.Add(d)
	}
	m := metrics.NewRegistry()
	c := NewCollectionFirst(CollectionFirstOptions{
		Occupancy: func() float64 { return occ },
		Busy:      8,
		Age:       func() time.Duration { return age },
		MaxAge:    30 * time.Second,
		Window:    250 * time.Millisecond,
		Metrics:   m,
	})
	c.now = func() time.Time { return now }

	step := func(d time.Duration) bool {
		advance(d)
		return c.Defer()
	}
	if c.Defer() {
		t.Fatal("defers before any load was measured")
	}
	// A light load: 2 requests at once.
	inflight = 2
	for range 8 {
		if step(100 * time.Millisecond) {
			t.Fatalf("defers under a load of 2 requests at once (mean %.1f)", c.Load())
		}
	}
	// A burst: 16 at once. Within one window the rule sees it.
	inflight = 16
	deferred := false
	for range 4 {
		deferred = step(100 * time.Millisecond)
	}
	if !deferred {
		t.Fatalf("does not defer under 16 requests at once (mean %.1f)", c.Load())
	}
	if got := c.deferrals.Value(); got != 1 {
		t.Errorf("deferrals %d, want 1", got)
	}
	// It keeps deferring while the burst lasts and the backlog is young...
	for range 10 {
		if !step(100 * time.Millisecond) {
			t.Fatal("stopped deferring during the burst")
		}
	}
	// ...but not once the oldest unprocessed event reaches MaxAge: the
	// pipeline then works, busy or not.
	age = 30 * time.Second
	if step(100 * time.Millisecond) {
		t.Fatal("defers with the backlog at MaxAge")
	}
	age = 5 * time.Second
	if !step(100 * time.Millisecond) {
		t.Fatal("does not defer again once the backlog is young again during the burst")
	}
	if got := c.deferrals.Value(); got != 2 {
		t.Errorf("deferrals %d, want 2", got)
	}
	// The burst ends: within a window or two the pipeline goes on.
	inflight = 0
	stillDeferring := 0
	for range 6 {
		if step(100 * time.Millisecond) {
			stillDeferring++
		}
	}
	if stillDeferring > 3 || c.Defer() {
		t.Errorf("deferred %d of 6 steps after the burst ended, and still %v", stillDeferring, c.Defer())
	}

	// MaxAge 0: the rule is off.
	off := NewCollectionFirst(CollectionFirstOptions{Occupancy: func() float64 { return occ }, Busy: 1,
		Age: func() time.Duration { return 0 }})
	off.now = func() time.Time { return now }
	inflight = 100
	for range 5 {
		advance(100 * time.Millisecond)
		if off.Defer() {
			t.Fatal("defers with MaxAge 0")
		}
	}
}

// TestCollectionFirstSeesBurstStart checks that a burst after a quiet
// spell is seen within an eighth of a window, not at the end of the
// window it began in (where the pipeline would have gathered a batch of
// its first records meanwhile), and that a light load is not taken for
// one however early it is asked.
func TestCollectionFirstSeesBurstStart(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	var occ, inflight float64
	advance := func(d time.Duration) {
		occ += inflight * d.Seconds()
		now = now.Add(d)
	}
	c := NewCollectionFirst(CollectionFirstOptions{
		Occupancy: func() float64 { return occ },
		Busy:      4,
		Age:       func() time.Duration { return 0 },
		MaxAge:    30 * time.Second,
		Window:    400 * time.Millisecond,
	})
	c.now = func() time.Time { return now }
	c.Defer()
	// Quiet, then a light load, asked every 10 ms: never a burst.
	inflight = 1
	for range 100 {
		advance(10 * time.Millisecond)
		if c.Defer() {
			t.Fatalf("defers under 1 request at once (mean %.1f)", c.Load())
		}
	}
	// Close a window so the next starts with the burst.
	for t0 := c.t0; c.t0 == t0; {
		advance(10 * time.Millisecond)
		c.Defer()
	}
	inflight = 16
	advance(c.opts.Window/8 - time.Millisecond)
	if c.Defer() {
		t.Fatal("defers before an eighth of a window of the burst was measured")
	}
	advance(time.Millisecond)
	if !c.Defer() {
		t.Fatalf("does not defer an eighth of a window into a burst of 16 requests at once (last window's mean %.1f)", c.Load())
	}
	if c.Load() >= 4 {
		t.Fatalf("the last whole window's mean is %.1f: the burst was seen through it, not early", c.Load())
	}
}

// TestCollectionFirstTellsSustainedLoad checks the comparison with the
// pipeline's capacity: busy collection that brings less than the pipeline
// gets through is sustained load, and the pipeline does not wait for it;
// the same busy collection bringing more than that is a burst; and while
// the capacity is unknown nothing counts as one.
func TestCollectionFirstTellsSustainedLoad(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	var occ, arrived float64
	inflight, rate := 0.0, 0.0 // requests at once, bytes a second
	capacity := 0.0
	advance := func(d time.Duration) {
		occ += inflight * d.Seconds()
		arrived += rate * d.Seconds()
		now = now.Add(d)
	}
	c := NewCollectionFirst(CollectionFirstOptions{
		Occupancy: func() float64 { return occ },
		Busy:      4,
		Age:       func() time.Duration { return time.Second },
		MaxAge:    30 * time.Second,
		Window:    250 * time.Millisecond,
		Arrivals:  func() float64 { return arrived },
		Capacity:  func() float64 { return capacity },
	})
	c.now = func() time.Time { return now }
	c.Defer()
	// defers reports how many of n steps of 50 ms the rule deferred.
	defers := func(n int) int {
		k := 0
		for range n {
			advance(50 * time.Millisecond)
			if c.Defer() {
				k++
			}
		}
		return k
	}
	// Busy collection (8 requests at once) at 40 MB/s before the pipeline
	// measured itself: not a burst.
	inflight, rate = 8, 40e6
	if k := defers(20); k > 0 {
		t.Fatalf("deferred %d of 20 steps with the capacity unknown", k)
	}
	// The pipeline gets through 60 MB/s: the same load is sustained load.
	capacity = 60e6
	if k := defers(20); k > 0 {
		t.Fatalf("deferred %d of 20 steps under busy collection at 40 MB/s with a capacity of 60 MB/s", k)
	}
	// Within the margin above the capacity (45 MB/s against 40): still not.
	capacity, rate = 40e6, 45e6
	if k := defers(20); k > 0 {
		t.Fatalf("deferred %d of 20 steps at 45 MB/s with a capacity of 40 MB/s", k)
	}
	// Twice the capacity: a burst, deferred within a window.
	rate = 80e6
	if k := defers(20); k < 17 {
		t.Fatalf("deferred %d of 20 steps at 80 MB/s with a capacity of 40 MB/s, want all but the first window's", k)
	}
	// Fast but not busy (few requests at once): never a burst.
	inflight = 1
	defers(10)
	if k := defers(20); k > 0 {
		t.Fatalf("deferred %d of 20 steps with 1 request at once", k)
	}
	// A burst's start is seen early only when it passes the capacity too.
	inflight, rate = 16, 30e6
	for t0 := c.t0; c.t0 == t0; {
		advance(10 * time.Millisecond)
		c.Defer()
	}
	advance(c.opts.Window / 4)
	if c.Defer() {
		t.Fatal("took the start of busy collection below the capacity for a burst")
	}
	rate = 100e6
	for t0 := c.t0; c.t0 == t0; {
		advance(10 * time.Millisecond)
		c.Defer()
	}
	advance(c.opts.Window / 4)
	if !c.Defer() {
		t.Fatal("did not see the start of a burst above the capacity")
	}
}
