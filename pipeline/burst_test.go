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

// TestCollectionFirstTellsSustainedLoad checks how a wait tells a burst
// from sustained load: busy collection that, while the pipeline waits,
// brings no more than the pipeline gets through is sustained load (the
// wait ends within a few windows and none begins for a while, longer each
// time); one that brings far more is a burst (the wait goes on); and
// while the pipeline's pace is unknown nothing counts as a burst.
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
	m := metrics.NewRegistry()
	c := NewCollectionFirst(CollectionFirstOptions{
		Occupancy: func() float64 { return occ },
		Busy:      4,
		Age:       func() time.Duration { return time.Second },
		MaxAge:    30 * time.Second,
		Window:    250 * time.Millisecond,
		Arrivals:  func() float64 { return arrived },
		Capacity:  func() float64 { return capacity },
		Metrics:   m,
	})
	c.now = func() time.Time { return now }
	c.Defer()
	// run asks every 25 ms (as a waiting pipeline does) for d and returns
	// how long the rule deferred.
	run := func(d time.Duration) time.Duration {
		var waited time.Duration
		for end := now.Add(d); now.Before(end); {
			advance(25 * time.Millisecond)
			if c.Defer() {
				waited += 25 * time.Millisecond
			}
		}
		return waited
	}
	// Busy collection (8 requests at once) at 40 MB/s before the pipeline
	// measured itself: not a burst.
	inflight, rate = 8, 40e6
	if w := run(2 * time.Second); w > 0 {
		t.Fatalf("deferred %v of 2s with the pipeline's pace unknown", w)
	}
	// The pipeline gets through 60 MB/s: a wait shows the load is
	// sustained and ends within a few windows; none begins for 5 s.
	capacity = 60e6
	if w := run(time.Second); w == 0 || w > time.Second {
		t.Fatalf("deferred %v of 1s under sustained load, want one short wait (at most 1s)", w)
	}
	if w := run(4 * time.Second); w > 0 {
		t.Fatalf("deferred %v in the 4 s after a wait showed sustained load", w)
	}
	// The next wait shows the same: then 10 s without one.
	run(2 * time.Second)
	if w := run(9 * time.Second); w > 0 {
		t.Fatalf("deferred %v in the 9 s after a second wait showed sustained load", w)
	}
	if got := c.deferrals.Value(); got != 2 {
		t.Errorf("deferrals %d, want 2 (one a wait)", got)
	}
	// A burst: with the pipeline waiting, collection brings twice its
	// pace. Once the hold (now 20 s) is over the wait begins and goes on.
	rate = 2 * capacity
	run(12 * time.Second)
	if w := run(3 * time.Second); w != 3*time.Second {
		t.Fatalf("deferred %v of 3 s during a burst at twice the pipeline's pace, want all", w)
	}
	// Within the margin above the pace and collection's rate before the
	// wait (1.2× both), a wait ends: sustained.
	inflight, rate = 1, 1.2*capacity
	run(3 * time.Second)
	inflight = 8
	if w := run(5 * time.Second); w == 0 || w > time.Second {
		t.Fatalf("deferred %v of 5 s at 1.2× the pipeline's pace and the rate before, want one short wait", w)
	}
	// Clients that send as fast as they are answered, on cores shared
	// with other work: while the pipeline works they bring 20 MB/s, when
	// it waits 40, both well under its pace of 60: the jump shows a
	// burst.
	capacity = 60e6
	waitingRate, workingRate := 40e6, 20e6
	inflight, rate = 1, workingRate
	run(time.Minute) // past any hold, and the rate before is the working one
	inflight = 8
	waited := time.Duration(0)
	for end := now.Add(3 * time.Second); now.Before(end); {
		advance(25 * time.Millisecond)
		if c.Defer() {
			waited += 25 * time.Millisecond
			rate = waitingRate
		} else {
			rate = workingRate
		}
	}
	if waited < 2*time.Second {
		t.Fatalf("deferred %v of 3 s while waiting doubled collection's rate, want nearly all", waited)
	}
	// Without Arrivals the rule is as it was: busy collection is a burst.
	old := NewCollectionFirst(CollectionFirstOptions{Occupancy: func() float64 { return occ }, Busy: 4,
		Age: func() time.Duration { return time.Second }, MaxAge: 30 * time.Second, Capacity: func() float64 { return capacity }})
	old.now = func() time.Time { return now }
	old.Defer()
	rate = 0.5 * capacity
	deferred := 0
	for range 40 {
		advance(25 * time.Millisecond)
		if old.Defer() {
			deferred++
		}
	}
	if deferred < 30 {
		t.Fatalf("without Arrivals the rule deferred %d of 40 steps under busy collection, want nearly all", deferred)
	}
}
