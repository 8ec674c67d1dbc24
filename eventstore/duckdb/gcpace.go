package duckdb

import (
	"os"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"time"
)

// The dedup filters are long-lived memory on the Go heap (about 105 MiB at
// 100 million stored events). Go's collector, at its default GOGC=100, lets
// the heap grow to twice what was live after the last collection before it
// collects again, filters included: a node holding a 120 MiB filter would
// also keep up to 120 MiB of garbage. The pacer gives the headroom to the
// rest of the heap only: it sets the GC percent so that the heap goal is
// the filters plus 1.5 times the other live memory (half of GOGC's
// percent of it, in general), re-reading both every pace interval. Half,
// not all of it: under load most of the rest is short-lived (the
// pipeline's batches, the event log's write buffers), so a full GOGC's
// headroom on it is memory a node pays for at every peak, while the
// extra collections cost little CPU. Marking the filters costs
// little (their memory holds no pointers), so the more frequent collections
// are cheap; see `tandem bench dedup` for measured figures.

// paceMinOther is the least heap headroom the pacer leaves besides the
// filters (the Go runtime's own floor is 4 MiB).
const paceMinOther = 16 << 20

// paceInterval is how often the pacer re-reads the live heap and the
// filters' size.
const paceInterval = 500 * time.Millisecond

var pacer struct {
	mu    sync.Mutex
	users int
	stop  chan struct{}
	done  chan struct{}
}

// PaceGC starts pacing the garbage collector around the dedup filters (see
// above) until the returned function is called; nested calls share one
// pacer. It does nothing when GOGC is set in the environment (the
// operator's choice stands) or the collector is off. The stop function
// restores the GC percent found at the first call.
func PaceGC() (stop func()) {
	if os.Getenv("GOGC") != "" {
		return func() {}
	}
	pacer.mu.Lock()
	defer pacer.mu.Unlock()
	pacer.users++
	if pacer.users == 1 {
		base := debug.SetGCPercent(100)
		debug.SetGCPercent(base)
		if base <= 0 {
			pacer.users--
			return func() {}
		}
		pacer.stop, pacer.done = make(chan struct{}), make(chan struct{})
		go pace(base, pacer.stop, pacer.done)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			pacer.mu.Lock()
			defer pacer.mu.Unlock()
			pacer.users--
			if pacer.users == 0 {
				close(pacer.stop)
				<-pacer.done
			}
		})
	}
}

// paceRestPercent is the share of the GC percent (GOGC) the pacer gives
// the heap besides the filters, in percent, once the filters hold
// paceTightBytes or more. Below that (every node short of tens of millions
// of events in its window) the rest keeps GOGC's whole headroom, and the
// collector's CPU stays what it was: the memory is only worth the extra
// collections where the filters make the node large.
const (
	paceRestPercent = 50
	paceTightBytes  = 64 << 20
)

// restPercent is the GC percent the pacer gives the heap besides filters
// of the given size.
func restPercent(base int, filters int64) int {
	if filters < paceTightBytes {
		return base
	}
	return max(base*paceRestPercent/100, 1)
}

// pace sets the GC percent so that the rest of the heap may grow by
// restPercent; it restores base when stop is closed.
func pace(base int, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	defer debug.SetGCPercent(base)
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	cur := -1
	t := time.NewTicker(paceInterval)
	defer t.Stop()
	for {
		metrics.Read(sample)
		var live int64
		if sample[0].Value.Kind() == metrics.KindUint64 {
			live = int64(sample[0].Value.Uint64())
		}
		filters := FilterBytes()
		if p := gcPercent(restPercent(base, filters), live, filters); p != cur {
			debug.SetGCPercent(p)
			cur = p
		}
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}

// gcPercent returns the GC percent that makes the heap goal
// pinned + (1 + base/100) × other, where other is the live heap besides
// pinned (at least paceMinOther): live × (1 + p/100) with
// live = pinned + other.
func gcPercent(base int, live, pinned int64) int {
	if pinned <= 0 || live <= 0 {
		return base
	}
	other := max(live-pinned, paceMinOther)
	p := int(int64(base) * other / (pinned + other))
	return max(p, 1)
}
