package collect

import (
	"math"
	"sync"
	"time"
)

// Limiter is a token bucket per source, counted in events, so that one
// flooding source is refused (429) instead of starving the others.
type Limiter struct {
	rate  float64 // events per second
	burst float64
	mu    sync.Mutex
	b     map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

// NewLimiter allows each source rate events per second with bursts of up to
// burst events. A rate of 0 or less returns nil: no limit.
func NewLimiter(rate float64, burst int) *Limiter {
	if rate <= 0 {
		return nil
	}
	if burst < event2500 {
		burst = event2500
	}
	return &Limiter{rate: rate, burst: float64(burst), b: map[string]*bucket{}}
}

// event2500 keeps every burst large enough for one full batch.
const event2500 = 2500

// Allow takes n events from source's bucket. When it refuses, it says how
// many seconds to wait before retrying.
func (l *Limiter) Allow(source string, n int, now time.Time) (bool, int) {
	if l == nil {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.b[source]
	if b == nil {
		b = &bucket{tokens: l.burst, last: now}
		l.b[source] = b
	}
	if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens = math.Min(l.burst, b.tokens+el*l.rate)
		b.last = now
	}
	if b.tokens >= float64(n) {
		b.tokens -= float64(n)
		return true, 0
	}
	wait := (float64(n) - b.tokens) / l.rate
	return false, int(math.Ceil(math.Max(wait, 1)))
}
