package main

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"tandem/config"
	"tandem/eventlog"
)

// TestUsageListsEveryCommand: the top-level usage names every command
// `run` knows and every `tandem bench` command, and each one it names runs
// (prints its own usage) rather than being unknown.
func TestUsageListsEveryCommand(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"help"}, &out, &errb); code != 0 {
		t.Fatalf("help: exit %d", code)
	}
	usage := out.String()
	out.Reset()
	run([]string{"bench", "help"}, &out, &errb)
	benchCmds := regexp.MustCompile(`(?m)^  ([a-z0-9]+) `).FindAllStringSubmatch(out.String(), -1)
	if len(benchCmds) < 4 {
		t.Fatalf("bench usage lists %d commands:\n%s", len(benchCmds), out.String())
	}
	listed := regexp.MustCompile(`tandem bench ([a-z0-9|]+)`).FindStringSubmatch(usage)
	if listed == nil {
		t.Fatalf("usage has no bench line:\n%s", usage)
	}
	for _, c := range benchCmds {
		if !strings.Contains("|"+listed[1]+"|", "|"+c[1]+"|") {
			t.Errorf("usage's bench line %q omits %q", listed[0], c[1])
		}
	}
	for _, c := range regexp.MustCompile(`(?m)^  tandem ([a-z]+)`).FindAllStringSubmatch(usage, -1) {
		out.Reset()
		errb.Reset()
		run([]string{c[1], "--help"}, &out, &errb)
		if strings.Contains(errb.String(), "unknown command") || strings.Contains(errb.String(), "not available") {
			t.Errorf("usage lists %q, which is not a command: %s", c[1], errb.String())
		}
	}
}

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
