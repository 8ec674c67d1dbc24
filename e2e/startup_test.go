package e2e

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestServeStartupErrors: a second serve on a data directory in use, and a
// serve whose --log server does not answer, exit 1 with a message naming
// the directory or the server (without its password), never a panic.
func TestServeStartupErrors(t *testing.T) {
	t.Parallel()
	noPanic := func(t *testing.T, stderr string) {
		t.Helper()
		if strings.Contains(stderr, "panic") || strings.Contains(stderr, "goroutine ") {
			t.Fatalf("tandem serve panicked:\n%s", tail(stderr, 30))
		}
	}
	t.Run("data directory in use", func(t *testing.T) {
		first := startServer(t, "", serverOpts{})
		code, _, stderr := runCLI(t, []string{"TANDEM_ADMIN_TOKEN=" + adminToken},
			"serve", "--data-dir", first.dir, "--addr", "127.0.0.1:0")
		noPanic(t, stderr)
		if code != 1 {
			t.Errorf("exit code %d, want 1; stderr:\n%s", code, tail(stderr, 10))
		}
		want := "data directory " + first.dir + " is in use by another tandem process"
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr does not say %q:\n%s", want, tail(stderr, 10))
		}
		// The first server is unharmed.
		if err := first.waitReady(5 * time.Second); err != nil {
			t.Errorf("the first server after the second tried its directory: %v", err)
		}
	})
	t.Run("unreachable log", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "data")
		code, _, stderr := runCLI(t, []string{"TANDEM_ADMIN_TOKEN=" + adminToken},
			"serve", "--data-dir", dir, "--addr", "127.0.0.1:0", "--log", "nats://alice:hunter2@127.0.0.1:1")
		noPanic(t, stderr)
		if code != 1 {
			t.Errorf("exit code %d, want 1; stderr:\n%s", code, tail(stderr, 10))
		}
		if !strings.Contains(stderr, "nats://alice:xxxxx@127.0.0.1:1") {
			t.Errorf("stderr does not name the log server:\n%s", tail(stderr, 10))
		}
		if strings.Contains(stderr, "hunter2") {
			t.Errorf("stderr shows the password:\n%s", tail(stderr, 10))
		}
	})
}
