package server

import (
	"context"
	"os"
	"runtime/debug"
	"testing"
	"time"

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

// A node with the embedded event store paces the garbage collector around
// the dedup filter (duckdb.PaceGC): the GC percent drops below GOGC's 100
// while it runs (the filter's fixed partition state alone is 7 MiB of a
// small heap) and is back at 100 after it stops.
func TestNodePacesGC(t *testing.T) {
	if os.Getenv("GOGC") != "" {
		t.Skip("GOGC is set: the pacer stands aside")
	}
	percent := func() int {
		p := debug.SetGCPercent(100)
		debug.SetGCPercent(p)
		return p
	}
	n := startNode(t, "", nil)
	deadline := time.Now().Add(5 * time.Second)
	for percent() >= 100 {
		if time.Now().After(deadline) {
			t.Fatalf("GC percent %d while the node runs, want it below 100", percent())
		}
		time.Sleep(50 * time.Millisecond)
	}
	n.stop()
	if p := percent(); p != 100 {
		t.Errorf("GC percent %d after the node stopped, want 100", p)
	}
}
