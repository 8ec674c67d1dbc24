package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"

	"tandem/config"
	"tandem/eventlog"
)

// TestOpenRefusals: a data directory another node holds, and an event log
// server that does not answer, are errors that say so (not panics), and
// the first node is unharmed.
func TestOpenRefusals(t *testing.T) {
	logger := slog.New(slog.NewJSONHandler(io.Discard, nil))
	t.Setenv("TANDEM_ADMIN_TOKEN", testAdminToken)
	first := startNode(t, "", nil)

	cfg := config.Default()
	cfg.DataDir = first.dir
	_, err := Open(context.Background(), cfg, logger)
	if err == nil || !strings.Contains(err.Error(), first.dir) || !strings.Contains(err.Error(), "in use by another tandem process") {
		t.Fatalf("second Open on %s: %v", first.dir, err)
	}
	if r := first.do("POST", "/v1/track", "basic:"+first.writeKey, []byte(`{"userId":"u1","event":"Still here"}`), nil); r.status != 200 {
		t.Fatalf("the first node after a second tried its directory: %d %s", r.status, r.body)
	}

	cfg = config.Default()
	cfg.DataDir = t.TempDir()
	cfg.Log = "nats://alice:hunter2@127.0.0.1:1"
	_, err = Open(context.Background(), cfg, logger)
	if err == nil || !errors.Is(err, eventlog.ErrUnavailable) || !strings.Contains(err.Error(), "nats://alice:xxxxx@127.0.0.1:1") {
		t.Fatalf("Open with an unreachable log: %v", err)
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("the error shows the password: %v", err)
	}
	// The failed Open let go of its data directory.
	second := startNode(t, cfg.DataDir, nil)
	second.stop()
}
