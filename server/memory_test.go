package server

import (
	"context"
	"testing"

	"tandem/config"
	"tandem/eventstore/duckdb"
)

// The embedded event store's DuckDB gets --events-memory-limit (128 MiB by
// default); 0 leaves DuckDB's own default, a share of the machine's RAM.
func TestEventsMemoryLimit(t *testing.T) {
	limit := func(n *node) string {
		t.Helper()
		var v string
		db := n.srv.Events.(*duckdb.Store).DB()
		if err := db.QueryRowContext(context.Background(), `SELECT current_setting('memory_limit')`).Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	n := startNode(t, "", nil)
	if got := limit(n); got != "128.0 MiB" {
		t.Errorf("default memory_limit = %q, want 128.0 MiB", got)
	}
	n.stop()
	n = startNode(t, "", func(c *config.Config) { c.EventsMemoryLimit = 48 << 20 })
	if got := limit(n); got != "48.0 MiB" {
		t.Errorf("memory_limit with 48MiB = %q, want 48.0 MiB", got)
	}
	n.stop()
	n = startNode(t, "", func(c *config.Config) { c.EventsMemoryLimit = 0 })
	if got := limit(n); got == "128.0 MiB" || got == "" {
		t.Errorf("memory_limit with 0 = %q, want DuckDB's default", got)
	}
}
