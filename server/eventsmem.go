package server

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"tandem/eventstore/duckdb"
)

// The embedded event store's memory is two parts that grow apart: DuckDB's
// buffer pool, capped by --events-memory-limit, and the dedup filter on the
// Go heap, which grows with the stored events (about 1.1 bytes each at 100
// million, 105 MiB). With the default 128 MiB, a node at 100 million
// events peaked at 438–496 MiB, close to the 512 MB target
// (docs/benchmarks.md#dedup-main). So the filter's memory beyond
// dedupFreeBytes comes out of DuckDB's limit, which never goes below
// eventsMemoryFloor (or the configured limit, if that is lower):
//
//	limit = max(min(configured, 64 MiB), configured - max(0, filter - 32 MiB))
//
// With the default, a node keeps the whole 128 MiB up to about 25 million
// stored events, about 99 MiB at 50 million, and the floor, 64 MiB, from
// about 75 million on. Dedup is not touched: the filter keeps every
// stored key; only DuckDB's cache of column blocks and its queries' room
// (which spill to disk beyond it) shrink. A configured limit of 0
// (DuckDB's own default, 80% of RAM) is left alone.
const (
	dedupFreeBytes    = 32 << 20
	eventsMemoryFloor = 64 << 20
	// eventsLimitEvery is how often the node re-reads the filter's size:
	// it grows by about a byte per stored event, so at 100,000 events/s
	// by 1 MiB in ten seconds.
	eventsLimitEvery = 10 * time.Second
)

// eventsMemoryLimit returns DuckDB's memory limit, in bytes, for a
// configured limit and a dedup filter of the given size (the rule above),
// rounded down to whole MiB; 0 for a configured 0.
func eventsMemoryLimit(configured, filter int64) int64 {
	if configured <= 0 {
		return 0
	}
	limit := max(min(configured, eventsMemoryFloor), configured-max(0, filter-dedupFreeBytes))
	return max(limit>>20<<20, 1<<20)
}

// eventsLimiter keeps DuckDB's memory limit at eventsMemoryLimit as the
// dedup filter grows.
type eventsLimiter struct {
	db         *sql.DB
	configured int64
	filter     func() int64 // the filter's bytes (duckdb.FilterBytes)
	cur        atomic.Int64 // the limit last set, bytes
}

// apply sets the limit the rule gives now, if it changed.
func (l *eventsLimiter) apply(ctx context.Context) error {
	limit := eventsMemoryLimit(l.configured, l.filter())
	if limit == 0 || limit == l.cur.Load() {
		return nil
	}
	if _, err := l.db.ExecContext(ctx, fmt.Sprintf("SET GLOBAL memory_limit = '%dMiB'", limit>>20)); err != nil {
		return fmt.Errorf("set the event store's memory limit: %w", err)
	}
	l.cur.Store(limit)
	return nil
}

// startEventsLimiter applies the rule once (an error ends the open) and
// then every eventsLimitEvery until the returned function is called; limit
// returns the limit in force, in bytes (0: DuckDB's default).
func startEventsLimiter(db *duckdb.Store, configured int64) (limit func() int64, stop func(), err error) {
	l := &eventsLimiter{db: db.DB(), configured: configured, filter: duckdb.FilterBytes}
	if configured <= 0 {
		return l.cur.Load, func() {}, nil
	}
	if err := l.apply(context.Background()); err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(eventsLimitEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				// A failure keeps the previous limit (DuckDB still caps
				// itself at it) and is tried again at the next tick.
				_ = l.apply(ctx)
			}
		}
	}()
	return l.cur.Load, func() { cancel(); wg.Wait() }, nil
}
