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
//     are in flight.
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
	mean      float64   // mean requests at once over the last whole window
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

// measureLocked closes the window being measured if it is long enough.
func (c *CollectionFirst) measureLocked(now time.Time) {
	a := c.opts.Occupancy()
	if c.t0.IsZero() {
		c.t0, c.a0 = now, a
		return
	}
	if d := now.Sub(c.t0); d >= c.opts.Window {
		c.mean = (a - c.a0) / d.Seconds()
		c.t0, c.a0 = now, a
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
