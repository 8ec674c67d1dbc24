package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"

	"tandem/config"
	"tandem/eventstore/clickhouse"
	"tandem/testserver"
)

// A node with --events on ClickHouse stores what it collects there and
// serves it back; a second node on the same database sees the same events.
func TestClickHouseEventStore(t *testing.T) {
	url := testserver.ClickHouse(t)
	n := startNode(t, "", func(c *config.Config) { c.Events = url })
	if _, ok := n.srv.Events.(*clickhouse.Store); !ok {
		t.Fatalf("event store is %T, want ClickHouse", n.srv.Events)
	}
	var batch []string
	for i := range 30 {
		batch = append(batch, fmt.Sprintf(`{"type":"track","userId":"u%d","event":"Ordered","messageId":"m-%02d","timestamp":"2026-01-02T03:04:%02dZ"}`, i%3, i, i))
	}
	body := []byte(`{"batch":[` + strings.Join(batch, ",") + `]}`)
	if r := n.do("POST", "/v1/batch", "basic:"+n.writeKey, body, nil); r.status != 200 {
		t.Fatalf("batch: %d %s", r.status, r.body)
	}
	// The same batch again (a client retry): stored once.
	if r := n.do("POST", "/v1/batch", "basic:"+n.writeKey, body, nil); r.status != 200 {
		t.Fatalf("batch again: %d %s", r.status, r.body)
	}
	n.drain()
	evs := n.events("")
	if len(evs) != 30 {
		t.Fatalf("want 30 events, got %d", len(evs))
	}
	for i, e := range evs {
		if e["messageId"] != fmt.Sprintf("m-%02d", i) || e["event"] != "Ordered" {
			t.Fatalf("event %d: %v", i, e)
		}
	}
	if evs := n.events("profile=u1"); len(evs) != 10 {
		t.Errorf("profile u1: %d events, want 10", len(evs))
	}
	if r := n.admin("GET", "/api/v1/events/m-07", nil); r.status != 200 || r.json(t)["userId"] != "u1" {
		t.Errorf("GET /events/m-07: %d %s", r.status, r.body)
	}
	if r := n.do("GET", "/readyz", "", nil, nil); r.status != 200 {
		t.Errorf("readyz: %d %s", r.status, r.body)
	}
	// Analytics answer from the ClickHouse backend.
	funnel := map[string]any{"steps": []any{map[string]any{"event": "Ordered"}, map[string]any{"event": "Ordered"}},
		"window": 60, "from": "2026-01-02T00:00:00Z", "to": "2026-01-03T00:00:00Z"}
	if r := n.admin("POST", "/api/v1/analytics/funnel", funnel); r.status != 200 || !strings.Contains(string(r.body), `"profiles":3`) {
		t.Errorf("funnel on ClickHouse: %d %s", r.status, r.body)
	}

	// Another node (its own data dir and log) on the same ClickHouse
	// database reads the same events.
	m := startNode(t, "", func(c *config.Config) { c.Events = url })
	if evs := m.events("event=Ordered"); len(evs) != 30 {
		t.Errorf("second node: %d events, want 30", len(evs))
	}
}

// A node whose ClickHouse is down is not ready.
func TestClickHouseReadiness(t *testing.T) {
	srv := testserver.StartClickHouse(t)
	url := srv.NewDatabase(t)
	n := startNode(t, "", func(c *config.Config) { c.Events = url })
	if r := n.do("GET", "/readyz", "", nil, nil); r.status != 200 {
		t.Fatalf("readyz: %d %s", r.status, r.body)
	}
	srv.Stop()
	if r := n.do("GET", "/readyz", "", nil, nil); r.status != 503 {
		t.Errorf("readyz with ClickHouse stopped: %d %s", r.status, r.body)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
}

func TestEventsURLScheme(t *testing.T) {
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.Events = "http://127.0.0.1:8123/db"
	_, err := Open(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	var ue *config.UsageError
	if !errors.As(err, &ue) || ue.Key != "events" {
		t.Fatalf("Open with events=%s: %v, want a usage error naming events", cfg.Events, err)
	}
}
