package pipeline

import (
	"context"
	"slices"
	"sync"
	"time"

	"tandem/metrics"
)

// Collection first during bursts.
//
// On a node that collects and processes, a burst of collection and the
// pipeline compete for the same cores, and processing an event costs
// several times what collecting it does. Every accepted event is already
// durable in the event log, so the pipeline can wait: while collection is
// busy, the pipeline starts no new batch (the batches already in its
// stages finish), and it catches up once the burst is over, with larger
// and cheaper batches. Three bounds keep this from starving it:
//
//   - it waits only while the oldest unprocessed event is younger than
//     [CollectionFirstOptions.MaxAge]: past that, it works as if there
//     were no burst, so under sustained load its lag is what it would be
//     without the rule, plus that age at most;
//   - collection counts as busy only while it serves many requests at
//     once on average ([CollectionFirstOptions.Busy]); a steady load the
//     node can sustain keeps few requests in flight, and as soon as the
//     pipeline waits, collection's answers get quicker and fewer requests
//     are in flight;
//   - a wait goes on only while it shows a burst: collection, with the
//     cores to itself, appending more than burstOver times what the
//     pipeline gets through ([CollectionFirstOptions.Capacity], the
//     pipeline's own measure of its pace) or than collection itself
//     appended before the wait. That is what tells a burst from sustained
//     load. A steady load at a high rate keeps many requests in flight
//     too (each waits for its fsync), and if the pipeline keeps up with
//     it, waiting would only let the lag grow to MaxAge and stay there.
//     Clients sending as fast as they are answered take whatever the
//     pipeline leaves them, so while the pipeline works their rate
//     settles near its pace; once it waits, a burst's rate jumps (above
//     that pace when the machine is the node's, above its rate before
//     when other work shares the cores), a steady load's stays where it
//     was. So after a wait's first window (the batches under way
//     finishing), collection's mean rate from then on decides, from two
//     windows on and again at each ask: a jump, the wait goes on;
//     none, the load is sustained, the pipeline goes back to work and
//     does not wait again for a while (sustainedHold, doubling up to
//     sustainedHoldMax while the load stays sustained). A wait that ends
//     before it showed a burst (collection no longer busy) holds off the
//     next the same way: steady load near the busy mark would otherwise
//     start one every few windows. While the capacity
//     is unknown (no large batch processed yet), nothing counts as a
//     burst: the pipeline measures itself on the first large batches (a
//     second or so of a burst) and waits from then on.
//
// The lag stays visible as always (tandem_pipeline_lag_seconds, /readyz);
// tandem_pipeline_deferring says when the pipeline waits for collection.

// CollectionFirstOptions configure a [CollectionFirst] rule.
type CollectionFirstOptions struct {
	// Occupancy is collection's busy time so far, in request-seconds
	// (the integral of the number of requests served at once; see
	// collect.InflightLimit.Occupancy). It must not decrease.
	Occupancy func() float64
	// Busy is the mean number of collection requests served at once, over
	// Window, at or above which collection is busy.
	Busy float64
	// Age is how long the oldest unprocessed event has waited, now.
	Age func() time.Duration
	// MaxAge bounds the wait: the pipeline waits for collection only
	// while Age is below it. Zero or less turns the rule off.
	MaxAge time.Duration
	// Window is how long collection's load is averaged over; default
	// 250ms.
	Window time.Duration
	// Arrivals is how many bytes collection has appended to the event log
	// so far; it must not decrease. Capacity is the pipeline's pace in
	// the same bytes per second ([Pipeline.Capacity]), 0 while unknown.
	// With both, a wait goes on only while it shows a burst (see above);
	// without either, every busy spell counts as a burst.
	Arrivals func() float64
	Capacity func() float64
	// Metrics, when set, gets tandem_pipeline_deferring and
	// tandem_pipeline_deferrals_total.
	Metrics *metrics.Registry
}

// burstOver is how far collection's rate while the pipeline waits must
// pass the pipeline's capacity, or collection's rate before the wait, for
// a busy spell to count as a burst: a margin for the noise of the
// figures, so that a load the pipeline keeps up with is not taken for
// one.
const burstOver = 1.25

// beforeWindows is how many whole windows outside waits collection's
// rate before a wait is the median of.
const beforeWindows = 5

// sustainedHold is how long the pipeline does not wait again after a
// wait showed sustained load; each further such wait doubles it, up to
// sustainedHoldMax, and a wait that shows a burst sets it back.
const (
	sustainedHold    = 5 * time.Second
	sustainedHoldMax = time.Minute
)

// CollectionFirst is the rule above. Its Defer method is the pipeline's
// [Options.Defer]. It is safe for concurrent use.
type CollectionFirst struct {
	opts CollectionFirstOptions
	now  func() time.Time

	mu        sync.Mutex
	t0        time.Time // start of the window being measured
	a0        float64   // Occupancy at t0
	r0        float64   // Arrivals at t0
	last      time.Time // start of the last whole window
	mean      float64   // mean requests at once over the last whole window
	rate      float64   // Arrivals per second over the last whole window
	before    []float64 // rate over the last whole windows outside waits
	base      float64   // their median when the current wait began
	deferring bool
	since     time.Time // when the current wait began
	settled   time.Time // a window after since: its rate is measured from here
	settledR  float64   // Arrivals at settled
	shown     bool      // the current wait showed a burst
	holdUntil time.Time // no wait before this (sustained load seen)
	hold      time.Duration

	deferrals *metrics.Counter
}

// NewCollectionFirst returns the rule.
func NewCollectionFirst(opts CollectionFirstOptions) *CollectionFirst {
	if opts.Window <= 0 {
		opts.Window = 250 * time.Millisecond
	}
	c := &CollectionFirst{opts: opts, now: time.Now, hold: sustainedHold}
	if m := opts.Metrics; m != nil {
		c.deferrals = m.NewCounter("tandem_pipeline_deferrals_total", "Times the pipeline held off new batches because collection was busy (collection first during bursts, docs/operations.md#backpressure).")
		m.NewGaugeFunc("tandem_pipeline_deferring", "1 while the pipeline holds off new batches because collection is busy, else 0.", func() float64 {
			c.mu.Lock()
			defer c.mu.Unlock()
			if c.deferring {
				return 1
			}
			return 0
		})
	}
	return c
}

// Load is the mean number of collection requests served at once over the
// last whole window measured.
func (c *CollectionFirst) Load() float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.measureLocked(c.now())
	return c.mean
}

// comparing reports whether collection's rate is compared with the
// pipeline's pace.
func (c *CollectionFirst) comparing() bool {
	return c.opts.Arrivals != nil && c.opts.Capacity != nil
}

// measureLocked closes the window being measured if it is long enough.
func (c *CollectionFirst) measureLocked(now time.Time) {
	a, r := c.opts.Occupancy(), 0.0
	if c.comparing() {
		r = c.opts.Arrivals()
	}
	if c.t0.IsZero() {
		c.t0, c.a0, c.r0 = now, a, r
		return
	}
	if d := now.Sub(c.t0); d >= c.opts.Window {
		c.mean = (a - c.a0) / d.Seconds()
		c.rate = (r - c.r0) / d.Seconds()
		if !c.deferring {
			if len(c.before) == beforeWindows {
				c.before = append(c.before[:0], c.before[1:]...)
			}
			c.before = append(c.before, c.rate)
		}
		c.last = c.t0
		c.t0, c.a0, c.r0 = now, a, r
	}
}

// startingLocked reports whether the window being measured, once an
// eighth of a window long, already averages Busy: a burst is seen within
// tens of milliseconds of its start, before the pipeline gathers a batch
// of its first records (at 100,000 events/s a whole window's worth is
// 25,000 events, each costing the pipeline several times what collecting
// it did). Its end is still seen over whole windows.
func (c *CollectionFirst) startingLocked(now time.Time) bool {
	d := now.Sub(c.t0)
	if c.t0.IsZero() || d < c.opts.Window/8 {
		return false
	}
	return (c.opts.Occupancy()-c.a0)/d.Seconds() >= c.opts.Busy
}

// Defer reports whether the pipeline should wait before its next batch.
func (c *CollectionFirst) Defer() bool {
	if c.opts.MaxAge <= 0 || c.opts.Occupancy == nil || c.opts.Age == nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	c.measureLocked(now)
	d := (c.mean >= c.opts.Busy || c.startingLocked(now)) && c.opts.Age() < c.opts.MaxAge
	if d && c.comparing() {
		capacity := c.opts.Capacity()
		switch {
		case capacity <= 0 || now.Before(c.holdUntil):
			// Pace unknown, or sustained load seen lately.
			d = false
		case c.deferring && c.settled.IsZero() && now.Sub(c.since) >= c.opts.Window:
			// The batches under way had a window to finish: collection's
			// rate with the cores to itself is measured from now.
			c.settled, c.settledR = now, c.opts.Arrivals()
		case c.deferring && !c.settled.IsZero() && now.Sub(c.settled) >= 2*c.opts.Window:
			// At least two windows measured so far (the mean over all
			// of them, so one slow window does not end a burst):
			// does collection bring more than the pipeline gets
			// through, or than before the wait?
			rate := (c.opts.Arrivals() - c.settledR) / now.Sub(c.settled).Seconds()
			if rate > burstOver*capacity || (c.base > 0 && rate > burstOver*c.base) {
				c.hold = sustainedHold
				c.shown = true
			} else {
				d = false
				c.holdUntil = now.Add(c.hold)
				c.hold = min(2*c.hold, sustainedHoldMax)
			}
		}
	}
	if !d && c.deferring && c.comparing() && !c.shown && !now.Before(c.holdUntil) {
		// A wait that ended before it showed a burst (collection
		// stopped being busy within it) is no reason to wait again
		// soon either: steady load near the busy mark would start one
		// every few windows, each adding to the lag.
		c.holdUntil = now.Add(c.hold)
		c.hold = min(2*c.hold, sustainedHoldMax)
	}
	if d && !c.deferring {
		c.since, c.base, c.settled, c.shown = now, median(c.before), time.Time{}, false
		if c.deferrals != nil {
			c.deferrals.Add(1)
		}
	}
	c.deferring = d
	return d
}

// deferPoll is how often a waiting pipeline asks again.
const deferPoll = 25 * time.Millisecond

// waitForCollection holds Run's intake while [Options.Defer] says so, and
// keeps the lag figure current meanwhile.
func (p *Pipeline) waitForCollection(ctx context.Context) {
	if p.opts.Defer == nil {
		return
	}
	last := time.Now()
	for ctx.Err() == nil && p.opts.Defer() {
		sleep(ctx, deferPoll)
		if time.Since(last) >= time.Second {
			p.measureLag()
			last = time.Now()
		}
	}
}

// median is the middle of v (the mean of the two middle ones), 0 for none.
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}
