package server

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tandem/config"
	"tandem/testserver"
)

// A node with --state on PostgreSQL keeps its state there, goes not-ready
// while PostgreSQL is down and recovers by itself when it is back, losing
// nothing. Not parallel: it stops the PostgreSQL server the binary's tests
// share.
func TestPostgresStateStore(t *testing.T) {
	pg := testserver.PostgresInstance(t)
	stateURL := pg.NewDatabase(t)
	n := startNode(t, "", func(c *config.Config) { c.State = stateURL })

	if _, err := os.Stat(filepath.Join(n.dir, "state.db")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state.db in the data dir (%v): the embedded store was opened too", err)
	}
	if r := n.do("GET", "/readyz", "", nil, nil); r.status != 200 {
		t.Fatalf("readyz: %d %s", r.status, r.body)
	}
	track := func(id string) response {
		return n.do("POST", "/v1/track", "basic:"+n.writeKey,
			[]byte(`{"userId":"pg-user","event":"Ordered","messageId":"`+id+`"}`), nil)
	}
	if r := track("pg-1"); r.status != 200 {
		t.Fatalf("track: %d %s", r.status, r.body)
	}
	n.drain()
	if r := n.admin("GET", "/api/v1/events/pg-1", nil); r.status != 200 || r.json(t)["event"] != "Ordered" {
		t.Fatalf("GET /events/pg-1: %d %s", r.status, r.body)
	}
	// State written through the API is in PostgreSQL.
	if r := n.admin("POST", "/api/v1/users", map[string]any{"name": "ops", "role": "it"}); r.status != 201 {
		t.Fatalf("create user: %d %s", r.status, r.body)
	}

	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	waitReadyz(t, n, 503, 10*time.Second)
	if r := n.admin("GET", "/api/v1/users", nil); r.status != 503 {
		t.Errorf("list users with PostgreSQL stopped: %d %s, want 503", r.status, r.body)
	}

	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	waitReadyz(t, n, 200, 30*time.Second)
	if r := track("pg-2"); r.status != 200 {
		t.Fatalf("track after PostgreSQL came back: %d %s", r.status, r.body)
	}
	n.drain()
	evs := n.events("profile=pg-user")
	if len(evs) != 2 {
		t.Fatalf("%d events stored, want 2: %v", len(evs), evs)
	}
	r := n.admin("GET", "/api/v1/users", nil)
	if r.status != 200 {
		t.Fatalf("list users after PostgreSQL came back: %d %s", r.status, r.body)
	}
	if users, _ := r.json(t)["items"].([]any); len(users) != 2 {
		t.Errorf("%d users after the restart, want 2 (admin, ops): %s", len(users), r.body)
	}
}

// A --state URL that is not PostgreSQL's is a usage error naming "state"
// and not showing the URL (which may hold a password).
func TestStateURLScheme(t *testing.T) {
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.Addr = "127.0.0.1:0"
	cfg.State = "mysql://root:hunter2@db/tandem"
	s, err := Open(t.Context(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil {
		s.Close()
		t.Fatal("Open accepted a mysql:// state URL")
	}
	var ue *config.UsageError
	if !errors.As(err, &ue) || ue.Key != "state" {
		t.Fatalf("error %v is not a usage error for key state", err)
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error shows the password: %v", err)
	}
}

func waitReadyz(t *testing.T, n *node, status int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	var r response
	for time.Now().Before(deadline) {
		if r = n.do("GET", "/readyz", "", nil, nil); r.status == status {
			return
		}
		sleepMS(100)
	}
	t.Fatalf("readyz still %d %s after %v, want %d", r.status, r.body, within, status)
}
