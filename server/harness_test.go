package server

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tandem/config"
)

// node is a real tandem server on a loopback port with its data in a temp
// dir, as `tandem serve` runs it.
type node struct {
	t        *testing.T
	url      string
	dir      string
	token    string // admin token
	writeKey string // the bootstrap "default" source's write key
	srv      *Server
	stop     func()
}

const testAdminToken = "tdm_test-admin-token-0123456789abcdef"

func startNode(t *testing.T, dir string, mutate func(*config.Config)) *node {
	t.Helper()
	return startNodeWith(t, dir, mutate, hooks{}, func(err error) {
		if err != nil {
			t.Errorf("serve: %v", err)
		}
	})
}

// startNodeWith is startNode with hooks into the server's backends, and
// checkStop called with Serve's result when the node stops.
func startNodeWith(t *testing.T, dir string, mutate func(*config.Config), h hooks, checkStop func(error)) *node {
	t.Helper()
	return startNodeLog(t, dir, mutate, h, checkStop, nil)
}

// startNodeLog is startNodeWith with the node's log (JSON, debug level
// and up) written to logTo when it is not nil.
func startNodeLog(t *testing.T, dir string, mutate func(*config.Config), h hooks, checkStop func(error), logTo io.Writer) *node {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	cfg := config.Default()
	cfg.DataDir = dir
	cfg.Addr = "127.0.0.1:0"
	cfg.ShutdownTimeout = 10 * time.Second
	if mutate != nil {
		mutate(&cfg)
	}
	t.Setenv("TANDEM_ADMIN_TOKEN", testAdminToken)
	logger := slog.New(slog.NewJSONHandler(io.Discard, nil))
	if testing.Verbose() {
		logger = slog.New(slog.NewJSONHandler(os.Stderr, nil))
	}
	if logTo != nil {
		logger = slog.New(slog.NewJSONHandler(logTo, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	ctx, cancel := context.WithCancel(context.Background())
	s, err := open(ctx, cfg, logger, h)
	if err != nil {
		cancel()
		t.Fatalf("open: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	n := &node{t: t, url: "http://" + ln.Addr().String(), dir: dir, token: testAdminToken, srv: s}
	stopped := false
	n.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		checkStop(<-done)
	}
	t.Cleanup(n.stop)
	key, err := os.ReadFile(filepath.Join(dir, "default.writekey"))
	if err != nil {
		t.Fatal(err)
	}
	n.writeKey = strings.TrimSpace(string(key))
	return n
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("status %d, body not JSON: %q", r.status, r.body)
	}
	return m
}

// do sends a request; auth is "basic:KEY", "bearer:TOKEN" or "".
func (n *node) do(method, path, auth string, body []byte, header map[string]string) response {
	n.t.Helper()
	req, err := http.NewRequest(method, n.url+path, bytes.NewReader(body))
	if err != nil {
		n.t.Fatal(err)
	}
	if kind, val, ok := strings.Cut(auth, ":"); ok {
		switch kind {
		case "basic":
			req.SetBasicAuth(val, "")
		case "bearer":
			req.Header.Set("Authorization", "Bearer "+val)
		}
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		n.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

func (n *node) admin(method, path string, body any) response {
	n.t.Helper()
	var b []byte
	if body != nil {
		b, _ = json.Marshal(body)
	}
	return n.do(method, path, "bearer:"+n.token, b, nil)
}

// drainWait bounds drain: generous, since CI machines may be loaded; a
// pipeline that is stuck still fails the test.
const drainWait = 2 * time.Minute

// drain waits until the pipeline has processed everything in the log.
func (n *node) drain() {
	n.t.Helper()
	deadline := time.Now().Add(drainWait)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := n.srv.Log.Consumer(ctx, "pipeline")
		if err == nil {
			p, err2 := c.Pending(ctx)
			c.Close()
			cancel()
			if err2 == nil && p == 0 {
				return
			}
		} else {
			cancel()
		}
		time.Sleep(20 * time.Millisecond)
	}
	n.t.Fatalf("pipeline did not drain in %v", drainWait)
}

// events lists stored events with the given query string, every page.
func (n *node) events(query string) []map[string]any {
	n.t.Helper()
	var out []map[string]any
	cursor := ""
	for {
		q := query
		if cursor != "" {
			q += "&cursor=" + cursor
		}
		r := n.admin("GET", "/api/v1/events?limit=1000&"+q, nil)
		if r.status != 200 {
			n.t.Fatalf("GET events: %d %s", r.status, r.body)
		}
		var page struct {
			Items []map[string]any `json:"items"`
			Next  string           `json:"next"`
		}
		if err := json.Unmarshal(r.body, &page); err != nil {
			n.t.Fatal(err)
		}
		out = append(out, page.Items...)
		if page.Next == "" {
			return out
		}
		cursor = page.Next
	}
}

func (n *node) quarantine() []map[string]any {
	n.t.Helper()
	r := n.admin("GET", "/api/v1/quarantine?limit=1000", nil)
	if r.status != 200 {
		n.t.Fatalf("GET quarantine: %d %s", r.status, r.body)
	}
	var page struct {
		Items []map[string]any `json:"items"`
	}
	if err := json.Unmarshal(r.body, &page); err != nil {
		n.t.Fatal(err)
	}
	return page.Items
}

// checkError asserts the one error shape with the given status and code.
func checkError(t *testing.T, r response, status int, code, field string) {
	t.Helper()
	if r.status != status {
		t.Errorf("status %d, want %d (body %s)", r.status, status, r.body)
		return
	}
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
			Field   string `json:"field"`
		} `json:"error"`
	}
	if err := json.Unmarshal(r.body, &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
		t.Errorf("body is not the error shape: %s", r.body)
		return
	}
	if code != "" && e.Error.Code != code {
		t.Errorf("code %q, want %q (%s)", e.Error.Code, code, r.body)
	}
	if field != "" && e.Error.Field != field {
		t.Errorf("field %q, want %q (%s)", e.Error.Field, field, r.body)
	}
	if r.header.Get("Content-Type") != "application/json" {
		t.Errorf("Content-Type %q", r.header.Get("Content-Type"))
	}
}

func sleepMS(ms int) { time.Sleep(time.Duration(ms) * time.Millisecond) }
