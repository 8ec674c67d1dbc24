package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"tandem/testserver"
)

// binPath is the tandem binary built once by TestMain.
var binPath string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	flag.Parse()
	root, err := moduleRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: find module root:", err)
		return 1
	}
	dir, err := os.MkdirTemp("", "tandem-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	binPath = filepath.Join(dir, "tandem")
	start := time.Now()
	cmd := exec.Command("go", "build", "-o", binPath, "./cmd/tandem")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		// Not a skip: without the binary there is nothing to test, and a
		// build failure must be visible.
		fmt.Fprintf(os.Stderr, "e2e: go build ./cmd/tandem failed: %v\n%s", err, out)
		return 1
	}
	if testing.Verbose() {
		fmt.Fprintf(os.Stderr, "e2e: built %s in %s\n", binPath, time.Since(start).Round(time.Millisecond))
	}
	// Through testserver, which stops the PostgreSQL and ClickHouse
	// servers the tests share once they are done.
	return testserver.Run(m)
}

// moduleRoot is the directory of the go.mod that holds this package.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err == nil {
		if gomod := strings.TrimSpace(string(out)); gomod != "" && gomod != os.DevNull {
			return filepath.Dir(gomod), nil
		}
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

const adminToken = "tdm_e2e-admin-token-5f0c3a9d41b27e68"

// syncBuffer is a bytes.Buffer safe for a child's output and the test to
// share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// server is one run of `tandem serve` as a child process.
type server struct {
	t        *testing.T
	dir      string
	url      string
	token    string // admin token ("" until known)
	writeKey string
	cmd      *exec.Cmd
	stdout   *syncBuffer
	stderr   *syncBuffer
	done     chan struct{} // closed when the process has exited
	waitErr  error         // valid after done
}

// serverOpts tune startServer.
type serverOpts struct {
	noAdminEnv bool     // do not set TANDEM_ADMIN_TOKEN
	args       []string // extra flags for serve
	// writeKey is the write key the test sends with. Empty means the
	// default source's, read from DIR/default.writekey; a node that joins
	// a shared state store another node bootstrapped has no such file.
	writeKey string
}

// cleanEnv is the test's environment without TANDEM_* variables, so that
// nothing from the caller's shell changes the server's configuration.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TANDEM_") {
			env = append(env, kv)
		}
	}
	return env
}

// startServer runs `tandem serve` on dir (a new temp dir if empty) on a free
// loopback port and waits until /readyz answers 200. The process is killed
// in t.Cleanup if it is still running.
func startServer(t *testing.T, dir string, o serverOpts) *server {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		s, err := tryStart(t, dir, o)
		if err == nil {
			return s
		}
		lastErr = err
		// Another process may have taken the free port in between: retry
		// with a new one, but only for that reason.
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	t.Fatalf("start tandem serve: %v", lastErr)
	return nil
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func tryStart(t *testing.T, dir string, o serverOpts) (*server, error) {
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	args := append([]string{"serve", "--data-dir", dir, "--addr", addr}, o.args...)
	cmd := exec.Command(binPath, args...)
	cmd.Env = cleanEnv()
	if !o.noAdminEnv {
		cmd.Env = append(cmd.Env, "TANDEM_ADMIN_TOKEN="+adminToken)
	}
	s := &server{t: t, dir: dir, url: "http://" + addr, cmd: cmd,
		stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
	if !o.noAdminEnv {
		s.token = adminToken
	}
	cmd.Stdout = s.stdout
	cmd.Stderr = s.stderr
	dieWithTest(cmd)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		s.waitErr = cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(func() {
		s.kill()
		if t.Failed() {
			t.Logf("server %s stderr, warnings and the last lines:\n%s", addr, logDigest(s.stderr.String()))
		}
	})
	if err := s.waitReady(60 * time.Second); err != nil {
		s.kill()
		return nil, fmt.Errorf("%w\nstderr (tail):\n%s", err, tail(s.stderr.String(), 15))
	}
	if o.writeKey != "" {
		s.writeKey = o.writeKey
		return s, nil
	}
	key, err := os.ReadFile(filepath.Join(dir, "default.writekey"))
	if err != nil {
		s.kill()
		return nil, fmt.Errorf("read default.writekey: %w", err)
	}
	s.writeKey = strings.TrimSpace(string(key))
	return s, nil
}

// logDigest picks the lines of a JSON log worth showing on failure: the
// last warnings and errors, then the last few lines.
func logDigest(log string) string {
	var warn []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, `"level":"WARN"`) || strings.Contains(l, `"level":"ERROR"`) {
			warn = append(warn, l)
		}
	}
	if len(warn) > 10 {
		warn = warn[len(warn)-10:]
	}
	return strings.Join(append(warn, "…", tail(log, 3)), "\n")
}

func tail(s string, lines int) string {
	ls := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}

// waitReady polls /readyz until 200, the process exits, or d passes.
func (s *server) waitReady(d time.Duration) error {
	deadline := time.Now().Add(d)
	c := &http.Client{Timeout: 2 * time.Second}
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			return fmt.Errorf("tandem serve exited before it was ready: %v", s.waitErr)
		default:
		}
		resp, err := c.Get(s.url + "/readyz")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("/readyz not 200 within %s", d)
}

// kill sends SIGKILL (if the process still runs) and waits for it.
func (s *server) kill() {
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.done
}

// exited waits up to d for the process to exit and returns its exit code,
// or -1 and false if it is still running.
func (s *server) exited(d time.Duration) (int, bool) {
	select {
	case <-s.done:
		return s.cmd.ProcessState.ExitCode(), true
	case <-time.After(d):
		return -1, false
	}
}

// do sends one request with the admin token and returns status and body.
func (s *server) admin(method, path string, body any) (int, []byte) {
	s.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			s.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, s.url+path, rd)
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+s.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := apiClient.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return resp.StatusCode, b
}

var apiClient = &http.Client{Timeout: 30 * time.Second}

// events lists every stored event, following cursors.
func (s *server) events() []map[string]any {
	s.t.Helper()
	var out []map[string]any
	cursor := ""
	for page := 0; ; page++ {
		path := "/api/v1/events?limit=1000"
		if cursor != "" {
			path += "&cursor=" + url.QueryEscape(cursor)
		}
		status, body := s.admin("GET", path, nil)
		if status != 200 {
			s.t.Fatalf("GET %s: %d %s", path, status, body)
		}
		var p struct {
			Items []map[string]any `json:"items"`
			Next  string           `json:"next"`
		}
		if err := json.Unmarshal(body, &p); err != nil {
			s.t.Fatalf("GET %s: %v in %.200s", path, err, body)
		}
		out = append(out, p.Items...)
		if p.Next == "" {
			return out
		}
		if p.Next == cursor || page > 100000 {
			s.t.Fatalf("GET /api/v1/events: cursor does not advance (%q)", cursor)
		}
		cursor = p.Next
	}
}

// event reads one event by messageId; ok is false on 404.
func (s *server) event(id string) (map[string]any, bool) {
	s.t.Helper()
	status, body := s.admin("GET", "/api/v1/events/"+url.PathEscape(id), nil)
	if status == 404 {
		return nil, false
	}
	if status != 200 {
		s.t.Fatalf("GET /api/v1/events/%s: %d %s", id, status, body)
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		s.t.Fatalf("GET /api/v1/events/%s: %v", id, err)
	}
	return m, true
}

// waitEvents polls GET /api/v1/events/{id} until every id is stored and
// returns them by id.
func (s *server) waitEvents(ids []string, d time.Duration) map[string]map[string]any {
	s.t.Helper()
	got := map[string]map[string]any{}
	deadline := time.Now().Add(d)
	for {
		for _, id := range ids {
			if _, ok := got[id]; ok {
				continue
			}
			if e, ok := s.event(id); ok {
				got[id] = e
			}
		}
		if len(got) == len(ids) {
			return got
		}
		if time.Now().After(deadline) {
			var missing []string
			for _, id := range ids {
				if _, ok := got[id]; !ok {
					missing = append(missing, id)
				}
			}
			s.t.Fatalf("after %s, %d of %d events are not stored: %v", d, len(missing), len(ids), missing)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// metric returns the value of an unlabelled metric from /metrics.
func (s *server) metric(name string) (float64, error) {
	resp, err := apiClient.Get(s.url + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return 0, fmt.Errorf("/metrics: %s", resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(rest), 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("/metrics has no %s", name)
}

// waitDrained waits until the pipeline has processed everything in the
// event log: tandem_pipeline_lag_records is 0 on two readings at least
// 1.5 s apart (the gauge is re-measured about every second while the
// pipeline idles) with tandem_pipeline_records_total unchanged between
// them, so that a stale 0 or a batch in progress does not count as drained.
func (s *server) waitDrained(d time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(d)
	var (
		prevAt      time.Time
		prevRecords = -1.0
		last        string
	)
	for time.Now().Before(deadline) {
		lag, err1 := s.metric("tandem_pipeline_lag_records")
		records, err2 := s.metric("tandem_pipeline_records_total")
		now := time.Now()
		switch {
		case err1 != nil || err2 != nil:
			last = fmt.Sprintf("metrics: %v %v", err1, err2)
			prevRecords = -1
		case lag != 0:
			last = fmt.Sprintf("lag %v", lag)
			prevRecords = -1
		case prevRecords < 0 || records != prevRecords:
			last = "lag 0, records still moving"
			prevRecords, prevAt = records, now
		case now.Sub(prevAt) >= 1500*time.Millisecond:
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	s.t.Fatalf("pipeline did not drain within %s (%s)", d, last)
}

// postBatch posts a /v1/batch body with the write key as Basic auth.
func postBatch(ctx context.Context, c *http.Client, base, key string, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, "POST", base+"/v1/batch", bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.SetBasicAuth(key, "")
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		// The status line came, the body did not: the outcome is unknown.
		return 0, nil, err
	}
	return resp.StatusCode, b, nil
}

// str returns m[k] as a string ("" if absent or not a string).
func str(m map[string]any, k string) string {
	s, _ := m[k].(string)
	return s
}

// timeField parses m[k] as an RFC 3339 time.
func timeField(t *testing.T, m map[string]any, k string) time.Time {
	t.Helper()
	s := str(m, k)
	ts, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Errorf("event %s: %s = %q is not RFC 3339: %v", str(m, "messageId"), k, s, err)
	}
	return ts
}
