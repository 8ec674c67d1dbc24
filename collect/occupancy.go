package collect

import (
	"sync"
	"time"
)

// occupancy integrates a count over time: the area under the number of
// requests in a handler, exactly, updated at each entry and exit.
type occupancy struct {
	mu    sync.Mutex
	start time.Time // the zero of the monotonic clock used; set on first use
	last  time.Duration
	n     int64
	area  float64 // request-seconds up to last
}

// now is the time since o's start on the monotonic clock. The caller
// holds mu.
func (o *occupancy) nowLocked() time.Duration {
	if o.start.IsZero() {
		o.start = time.Now()
	}
	return time.Since(o.start)
}

func (o *occupancy) advanceLocked() {
	t := o.nowLocked()
	o.area += float64(o.n) * (t - o.last).Seconds()
	o.last = t
}

// change adds d to the count.
func (o *occupancy) change(d int64) {
	o.mu.Lock()
	o.advanceLocked()
	o.n += d
	o.mu.Unlock()
}

// read returns the area up to now.
func (o *occupancy) read() float64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.advanceLocked()
	return o.area
}
