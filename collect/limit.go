package collect

import (
	"math"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"tandem/apierror"
	"tandem/metrics"
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

// ErrOverloaded is the answer to a collection request the node cannot take
// now: too many requests in flight, or too many bytes waiting for the event
// log. Nothing of the request is stored; the client retries after
// Retry-After, as the SDKs do for any 503.
var ErrOverloaded = &apierror.Error{Status: http.StatusServiceUnavailable, Code: "overloaded",
	Message: "this node is at capacity; retry later", RetryAfter: 1}

// InflightLimit lets at most a fixed number of requests run in the handler
// it wraps at once and answers the others [ErrOverloaded] at once, before
// reading their bodies. Each request in the handler holds its body and the
// entries made from it (up to about twice [event.MaxRequestBytes]), so the
// limit bounds that memory however many clients connect.
type InflightLimit struct {
	next     http.Handler
	max      int64
	n        atomic.Int64
	rejected *metrics.Counter
	occ      occupancy
}

// LimitInflight wraps next so that at most max requests run in it at once.
// Refusals are counted in rejected (if not nil). max of 0 or less means no
// limit.
func LimitInflight(next http.Handler, max int, rejected *metrics.Counter) *InflightLimit {
	return &InflightLimit{next: next, max: int64(max), rejected: rejected}
}

func (l *InflightLimit) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if n := l.n.Add(1); l.max > 0 && n > l.max {
		l.n.Add(-1)
		if l.rejected != nil {
			l.rejected.Add(1)
		}
		// With the CORS headers, so a browser SDK can read the 503 and
		// its Retry-After, and after draining the unread body, so the
		// client reads the answer rather than a reset connection.
		cors(w, r)
		refuse(w, r, &trackedBody{ReadCloser: r.Body}, ErrOverloaded)
		return
	}
	l.occ.change(1)
	defer func() {
		l.occ.change(-1)
		l.n.Add(-1)
	}()
	l.next.ServeHTTP(w, r)
}

// InFlight is the number of requests in the handler now.
func (l *InflightLimit) InFlight() int { return int(l.n.Load()) }

// Occupancy is the integral over time of the number of requests in the
// handler, in request-seconds, since l was made: its growth between two
// readings divided by the time between them is the mean number of
// requests served at once in that interval (how busy collection was).
// Refused requests do not count.
func (l *InflightLimit) Occupancy() float64 { return l.occ.read() }
