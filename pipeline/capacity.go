package pipeline

import (
	"sync"
	"time"
)

// The pipeline's capacity by its own measure: how many bytes of log
// records a second it gets through while it works. Run's three stages
// (decode; the state-store steps; the event-store write with its
// commits) work on three batches at once, so the slowest of them sets the
// pace: the capacity is the least of the stages' rates, each its bytes
// over the time it spent on them, over the last few large batches.
//
// Only batches of at least capacityMinBytes count: a small batch pays the
// per-batch costs (a fetch, a state-store transaction, a commit) for few
// events, and a node that got a trickle for an hour would otherwise
// measure a capacity far below what it has under load, where batches are
// large. Until such a batch was measured the capacity is unknown (0).
//
// The rule for bursts (burst.go) compares collection's rate with it: load
// the pipeline keeps up with is not a burst to wait out.

// capacityMinBytes is the smallest batch the capacity is measured on.
const capacityMinBytes = 1 << 20

// capacityDecay is how much of what was measured before each new large
// batch keeps: the last few batches set the figure.
const capacityDecay = 0.7

// The stages the capacity is measured over, in Run's goroutines.
const (
	capDecode = iota // decode (its own goroutine, after the read)
	capState         // the state-store steps
	capWrite         // the event-store write, and commits made under a backlog
	capStages
)

// capacityMeter keeps the decayed sums of bytes and seconds per stage.
type capacityMeter struct {
	mu    sync.Mutex
	bytes [capStages]float64
	secs  [capStages]float64
}

// batch adds a batch of the given record bytes that took d in stage.
func (c *capacityMeter) batch(stage int, bytes int, d time.Duration) {
	if bytes < capacityMinBytes {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.bytes[stage] = c.bytes[stage]*capacityDecay + float64(bytes)
	c.secs[stage] = c.secs[stage]*capacityDecay + d.Seconds()
}

// extra adds time stage spent apart from a batch's own work (a commit of
// several batches' events made while a backlog waited), when it has
// measured a batch already.
func (c *capacityMeter) extra(stage int, d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.bytes[stage] > 0 {
		c.secs[stage] += d.Seconds()
	}
}

// rate is the capacity in record bytes per second, 0 while unknown.
func (c *capacityMeter) rate() float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := 0.0
	for i := range capStages {
		if c.bytes[i] == 0 || c.secs[i] <= 0 {
			return 0
		}
		if s := c.bytes[i] / c.secs[i]; r == 0 || s < r {
			r = s
		}
	}
	return r
}

// Capacity is the rate, in bytes of log records per second, at which the
// pipeline processes records while it works, by its own measure of its
// slowest stage over the last few large batches; 0 while unknown (no
// batch of at least 1 MiB processed yet). [CollectionFirstOptions]'s
// Capacity takes it.
func (p *Pipeline) Capacity() float64 { return p.capacity.rate() }
