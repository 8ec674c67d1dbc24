package server

import (
	"context"
	"testing"

	"tandem/eventstore/duckdb"
)

const mib = 1 << 20

// The event store's memory limit gives up what the dedup filter holds
// beyond 32 MiB, down to 64 MiB (or the configured limit if lower).
func TestEventsMemoryLimitRule(t *testing.T) {
	for _, c := range []struct{ configured, filter, want int64 }{
		{128 * mib, 0, 128 * mib},
		{128 * mib, 32 * mib, 128 * mib},
		{128 * mib, 61 * mib, 99 * mib},  // 50 M stored events (dedup-main)
		{128 * mib, 96 * mib, 64 * mib},  // about 90 M
		{128 * mib, 105 * mib, 64 * mib}, // 100 M: the floor
		{128 * mib, 400 * mib, 64 * mib},
		{48 * mib, 200 * mib, 48 * mib}, // a configured limit under the floor stays
		{1024 * mib, 105 * mib, 951 * mib},
		{128*mib + 5000, 61*mib + 7, 99 * mib}, // whole MiB, rounded down
		{0, 105 * mib, 0},                      // DuckDB's own default: left alone
	} {
		if got := eventsMemoryLimit(c.configured, c.filter); got != c.want {
			t.Errorf("eventsMemoryLimit(%d MiB, %d MiB) = %d MiB, want %d MiB", c.configured/mib, c.filter/mib, got/mib, c.want/mib)
		}
	}
	// Never above the configured limit, never rising as the filter grows.
	for _, configured := range []int64{32 * mib, 64 * mib, 128 * mib, 512 * mib} {
		prev := configured
		for filter := int64(0); filter < 600*mib; filter += 3*mib + 12345 {
			got := eventsMemoryLimit(configured, filter)
			if got > configured || got > prev || got < min(configured, eventsMemoryFloor)>>20<<20 {
				t.Fatalf("eventsMemoryLimit(%d, %d) = %d after %d", configured, filter, got, prev)
			}
			prev = got
		}
	}
}

// The node sets DuckDB's memory_limit to what the rule gives, and follows
// the filter as it grows.
func TestEventsLimiterSetsDuckDB(t *testing.T) {
	store, err := duckdb.Open("")
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	ctx := context.Background()
	setting := func() string {
		var v string
		if err := store.DB().QueryRowContext(ctx, `SELECT current_setting('memory_limit')`).Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	filter := int64(10 * mib)
	l := &eventsLimiter{db: store.DB(), configured: 128 * mib, filter: func() int64 { return filter }}
	for _, c := range []struct {
		filter int64
		want   string
	}{
		{10 * mib, "128.0 MiB"},
		{61 * mib, "99.0 MiB"},
		{105 * mib, "64.0 MiB"},
	} {
		filter = c.filter
		if err := l.apply(ctx); err != nil {
			t.Fatal(err)
		}
		if got := setting(); got != c.want {
			t.Errorf("filter %d MiB: DuckDB's memory_limit %q, want %q", c.filter/mib, got, c.want)
		}
	}
}
