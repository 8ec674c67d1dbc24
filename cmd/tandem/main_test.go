package main

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"tandem/config"
	"tandem/eventlog"
)

func TestExitCode(t *testing.T) {
	flush := errors.Join(fmt.Errorf("event log: %w", fmt.Errorf("eventlog: final flush: 1 record(s) failed to append: %w", eventlog.ErrUnavailable)))
	for _, tc := range []struct {
		err  error
		want int
	}{
		{nil, 0},
		{&config.UsageError{Key: "state", Message: "want a postgres:// URL"}, 2},
		{fmt.Errorf("state store: %w", &config.UsageError{Key: "state", Message: "bad"}), 2},
		{flush, 1},
		{errors.New("data directory /x is in use by another tandem process"), 1},
	} {
		if got := exitCode(tc.err); got != tc.want {
			t.Errorf("exitCode(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}

// TestServeUnreachableLog: serve with a --log server that does not answer
// exits 1 and says why on its last line.
func TestServeUnreachableLog(t *testing.T) {
	t.Setenv("TANDEM_ADMIN_TOKEN", "tdm_cmd-test-token-0123456789abcdef")
	var stdout, stderr bytes.Buffer
	code := run([]string{"serve", "--data-dir", filepath.Join(t.TempDir(), "data"), "--addr", "127.0.0.1:0",
		"--log", "nats://127.0.0.1:1"}, &stdout, &stderr)
	if code != 1 {
		t.Fatalf("exit %d, want 1; stderr:\n%s", code, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, "tandem serve: event log: ") || !strings.Contains(last, "nats://127.0.0.1:1") {
		t.Fatalf("last line of stderr: %q", last)
	}
}
