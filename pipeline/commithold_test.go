package pipeline

import (
	"testing"
	"time"
)

// TestHoldIdleCommit: an idle write stage holding staged events waits for
// the store's row-group commit only while the events arriving would fill
// the row group within CommitHold of the oldest held batch's staging;
// slower, later, or without the options, it commits at once.
func TestHoldIdleCommit(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	// A pipeline that staged perSec events a second for the last 3 s in
	// batches every 250 ms, the last at t0, and holds them all since the
	// first batch after the last commit at heldFor before t0.
	mk := func(opts Options, perSec float64, pending int, heldFor time.Duration) *Pipeline {
		p := &Pipeline{opts: opts, pending: pending}
		for i := 12; i >= 0; i-- {
			at := t0.Add(-time.Duration(i) * 250 * time.Millisecond)
			p.stagedPos = uint64(perSec * 3 * float64(12-i) / 12)
			p.staging.add(at, p.stagedPos)
		}
		p.held = []heldBatch{{b: &batch{}, at: t0.Add(-heldFor)}}
		p.lastFetch.Store(t0.UnixNano()) // records still arriving
		return p
	}
	on := Options{CommitRows: 120_000, CommitHold: 3 * time.Second}
	for _, tc := range []struct {
		name    string
		opts    Options
		perSec  float64
		pending int
		heldFor time.Duration
		at      time.Duration // after t0
		quiet   bool          // no fetch found records for 200 ms
		hold    bool
	}{
		{"fast: fills in 2 s", on, 50_000, 20_000, 0, 0, false, true},
		{"fast, held 1 s: fills in 2 s, 2 s left", on, 50_000, 20_000, time.Second, 0, false, true},
		{"fast, held 2 s: 1 s left", on, 50_000, 20_000, 2 * time.Second, 0, false, false},
		{"slow: fills in 10 s", on, 10_000, 20_000, 0, 0, false, false},
		{"fast but stopped: 2 s without a batch", on, 50_000, 20_000, 0, 2 * time.Second, false, false},
		// The end of a backlog or a burst: staged fast, nothing more in
		// the log.
		{"fast, nothing arriving", on, 50_000, 20_000, 0, 0, true, false},
		{"past the hold", on, 100_000, 100_000, 3 * time.Second, 0, false, false},
		{"no row group size", Options{CommitHold: 3 * time.Second}, 50_000, 20_000, 0, 0, false, false},
		{"no hold", Options{CommitRows: 120_000}, 50_000, 20_000, 0, 0, false, false},
	} {
		p := mk(tc.opts, tc.perSec, tc.pending, tc.heldFor)
		if tc.quiet {
			p.lastFetch.Store(t0.Add(tc.at - 200*time.Millisecond).UnixNano())
		}
		if got := p.holdIdle(t0.Add(tc.at)); got != tc.hold {
			t.Errorf("%s: hold %v, want %v (rate %.0f/s)", tc.name, got, tc.hold, p.staging.perSecond(t0.Add(tc.at)))
		}
	}
	// Nothing held: nothing to hold.
	p := mk(on, 50_000, 0, 0)
	p.held = nil
	if p.holdIdle(t0) {
		t.Error("held with nothing held")
	}
}

// TestStagingRateWindow: the rate looks back over the window (and one
// reading before it), so that an old burst does not count.
func TestStagingRateWindow(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	var r stagingRate
	if r.perSecond(t0) != 0 {
		t.Fatal("rate without readings")
	}
	// 1,000,000 events in the first second, then 1,000 a second for 10 s.
	r.add(t0, 0)
	r.add(t0.Add(time.Second), 1_000_000)
	for i := 2; i <= 11; i++ {
		r.add(t0.Add(time.Duration(i)*time.Second), 1_000_000+uint64(i-1)*1000)
	}
	if len(r.at) > 4 {
		t.Errorf("%d readings kept, want the window's and one before", len(r.at))
	}
	if got := r.perSecond(t0.Add(11 * time.Second)); got < 900 || got > 1100 {
		t.Errorf("rate %.0f/s, want about 1,000/s", got)
	}
}
