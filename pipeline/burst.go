package pipeline

import (
	"context"
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
// and cheaper batches. Two bounds keep this from starving it:
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
//   - and only while it brings more than the pipeline gets through
//     ([CollectionFirstOptions.Capacity], the pipeline's own measure of
//     its pace, times [burstOverCapacity]): that is what tells a burst
//     from sustained load. A steady load at a high rate keeps many
//     requests in flight too (each waits for its fsync), but if the
//     pipeline keeps up with it, waiting would only let the lag grow to
//     MaxAge and stay there; a burst brings more than the pipeline can
//     take, so its lag grows whatever the pipeline does, and waiting
//     costs nothing but gives collection the cores. While the capacity is
//     unknown (no large batch processed yet), no load counts as a burst:
//     the pipeline measures itself on the first large batches (a second
//     or so of a burst) and waits from then on.
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
	// so far; it must not decrease. Nil: collection's rate is not
	// compared with the pipeline's (every busy spell counts as a burst).
	Arrivals func() float64
	// Capacity is the pipeline's pace in the same bytes per second
	// ([Pipeline.Capacity]), 0 while unknown. Collection is busy only
	// while it appends more than burstOverCapacity times that (never
	// while it is unknown). Nil: not compared.
	Capacity func() float64
	// Metrics, when set, gets tandem_pipeline_deferring and
	// tandem_pipeline_deferrals_total.
	Metrics *metrics.Registry
}

// CollectionFirst is the rule above. Its Defer method is the pipeline's
// [Options.Defer]. It is safe for concurrent use.
type CollectionFirst struct {
	opts CollectionFirstOptions
	now  func() time.Time

	mu        sync.Mutex
	t0        time.Time // start of the window being measured
	a0        float64   // Occupancy at t0
	r0        float64   // Arrivals at t0
	mean      float64   // mean requests at once over the last whole window
	rate      float64   // Arrivals per second over the last whole window
	deferring bool

	deferrals *metrics.Counter
}

// NewCollectionFirst returns the rule.
func NewCollectionFirst(opts CollectionFirstOptions) *CollectionFirst {
	if opts.Window <= 0 {
		opts.Window = 250 * time.Millisecond
	}
	c := &CollectionFirst{opts: opts, now: time.Now}
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

// burstOverCapacity is how far collection's rate must pass the
// pipeline's capacity for a busy spell to count as a burst: a margin for
// the noise of both figures, so that a load the pipeline keeps up with is
// not taken for one. Between 1 and this, the lag grows with or without
// the rule.
const burstOverCapacity = 1.25

// arrivals reads Arrivals, 0 without it.
func (c *CollectionFirst) arrivals() float64 {
	if c.opts.Arrivals == nil {
		return 0
	}
	return c.opts.Arrivals()
}

// overCapacity reports whether collection's rate (bytes a second) is
// more than the pipeline gets through: never while the capacity is
// unknown, always when the two are not compared (no Arrivals or
// Capacity).
func (c *CollectionFirst) overCapacity(rate float64) bool {
	if c.opts.Arrivals == nil || c.opts.Capacity == nil {
		return true
	}
	capacity := c.opts.Capacity()
	return capacity > 0 && rate > burstOverCapacity*capacity
}

// measureLocked closes the window being measured if it is long enough.
func (c *CollectionFirst) measureLocked(now time.Time) {
	a, r := c.opts.Occupancy(), c.arrivals()
	if c.t0.IsZero() {
		c.t0, c.a0, c.r0 = now, a, r
		return
	}
	if d := now.Sub(c.t0); d >= c.opts.Window {
		c.mean = (a - c.a0) / d.Seconds()
		c.rate = (r - c.r0) / d.Seconds()
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
	return (c.opts.Occupancy()-c.a0)/d.Seconds() >= c.opts.Busy && c.overCapacity((c.arrivals()-c.r0)/d.Seconds())
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
	busy := c.mean >= c.opts.Busy && c.overCapacity(c.rate)
	d := (busy || c.startingLocked(now)) && c.opts.Age() < c.opts.MaxAge
	if d && !c.deferring && c.deferrals != nil {
		c.deferrals.Add(1)
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
