package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// runCLI runs the binary to completion (at most 30 s) and returns its exit
// code and output.
func runCLI(t *testing.T, env []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, args...)
	cmd.Env = append(cleanEnv(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("tandem %s still running after 30 s (it should have refused to start)\nstderr: %s",
			strings.Join(args, " "), tail(errb.String(), 10))
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
		code = 0
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("tandem %s: %v", strings.Join(args, " "), err)
	}
	return code, out.String(), errb.String()
}

func TestServeRefusesUnsafeConfig(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		env   []string
		args  []string
		code  int
		names string // the flag or key the message must name
	}{
		{"log-sync flag", nil, []string{"--log-sync", "interval"}, 2, "--log-sync"},
		{"log-sync env", []string{"TANDEM_LOG_SYNC=never"}, nil, 2, "TANDEM_LOG_SYNC"},
		{"bad addr", nil, []string{"--addr", "nope"}, 2, "--addr"},
		{"size env", []string{"TANDEM_LOG_MAX_BYTES=10 GB"}, nil, 2, "TANDEM_LOG_MAX_BYTES"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			args := append([]string{"serve", "--data-dir", dir}, c.args...)
			if c.name != "bad addr" {
				args = append(args, "--addr", "127.0.0.1:0")
			}
			code, _, stderr := runCLI(t, append(c.env, "TANDEM_ADMIN_TOKEN="+adminToken), args...)
			if code != c.code {
				t.Errorf("exit code %d, want %d; stderr:\n%s", code, c.code, tail(stderr, 10))
			}
			if !strings.Contains(stderr, c.names) {
				t.Errorf("stderr does not name %q:\n%s", c.names, tail(stderr, 10))
			}
			// Refused before touching anything: no data directory.
			if _, err := os.Stat(dir); err == nil {
				t.Errorf("the refused serve created its data directory %s", dir)
			}
		})
	}
	t.Run("version", func(t *testing.T) {
		code, stdout, stderr := runCLI(t, nil, "version")
		if code != 0 {
			t.Errorf("tandem version: exit %d, stderr %s", code, stderr)
		}
		if !strings.HasPrefix(stdout, "tandem ") {
			t.Errorf("tandem version printed %q", stdout)
		}
	})
}

func TestBootstrapAdminTokenFile(t *testing.T) {
	t.Parallel()
	s := startServer(t, "", serverOpts{noAdminEnv: true})
	path := filepath.Join(s.dir, "admin.token")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("no admin token file: %v", err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("%s has mode %#o, want 0600", path, perm)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s.token = strings.TrimSpace(string(b))
	if len(s.token) < 16 {
		t.Fatalf("admin token %q is too short to be random", s.token)
	}
	status, body := s.admin("GET", "/api/v1/sources", nil)
	if status != 200 || !strings.Contains(string(body), `"default"`) {
		t.Errorf("GET /api/v1/sources with the file's token: %d %s", status, body)
	}
	good := s.token
	s.token = good + "x"
	if status, body := s.admin("GET", "/api/v1/sources", nil); status != 401 {
		t.Errorf("GET /api/v1/sources with a wrong token: %d %s, want 401", status, body)
	}
	s.token = good

	logs := s.stderr.String()
	if !strings.Contains(logs, path) {
		t.Errorf("stderr does not name the token file %s", path)
	}
	if strings.Contains(logs, s.token) {
		t.Errorf("stderr contains the admin token")
	}
	if strings.Contains(logs, s.writeKey) {
		t.Errorf("stderr contains the default source's write key")
	}
	if out := s.stdout.String(); strings.Contains(out, s.token) || strings.Contains(out, s.writeKey) {
		t.Errorf("stdout (the banner) contains the admin token or the write key")
	}
	for i, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		if !json.Valid([]byte(line)) {
			t.Errorf("stderr line %d is not a JSON log record: %q", i+1, line)
			break
		}
	}
}
