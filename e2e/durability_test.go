package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

const (
	loadClients   = 8
	loadBatchSize = 50
	// loadPace is the least time between the starts of one client's
	// requests. Unpaced, a fast machine acknowledges 100k+ events in 3 s,
	// which only makes reading them all back slow; paced, the 8 clients
	// still overlap, so requests are in flight at any moment.
	loadPace = 50 * time.Millisecond
)

type unknownReq struct {
	started, ended time.Time
	err            string
}

// loadStats is what a load run learned about each request: acknowledged
// (200), refused (any other answer) or unknown (no answer).
type loadStats struct {
	mu       sync.Mutex
	sent     map[string]bool // every messageId ever sent
	acked    map[string]bool // messageIds of requests answered 200
	requests int
	ackedReq int
	refused  map[int]int // status -> requests
	unknown  int         // sent, no answer
	noConn   int         // connection refused: never reached a server
	// lateAcks counts 200s to requests that started after lateAfter.
	lateAfter time.Time
	lateAcks  int
	firstErr  string
	// unknownAt records, for requests without an answer, when they started
	// and what the client saw.
	unknownAt []unknownReq

	inflight atomic.Int64
}

func newLoadStats() *loadStats {
	return &loadStats{sent: map[string]bool{}, acked: map[string]bool{}, refused: map[int]int{}}
}

func (st *loadStats) summary() string {
	st.mu.Lock()
	defer st.mu.Unlock()
	return fmt.Sprintf("%d requests: %d answered 200 (%d events), refused %v, %d unknown (no answer), %d connection refused; %d events sent",
		st.requests, st.ackedReq, len(st.acked), st.refused, st.unknown, st.noConn, len(st.sent))
}

// startLoad posts /v1/batch requests of loadBatchSize track events with
// unique messageIds from loadClients goroutines until the returned function
// is called; that function waits for the clients to finish and is also
// called by t.Cleanup. Requests are not cut short by it: one in flight runs
// to its end.
func startLoad(t *testing.T, s *server, prefix string, st *loadStats) (stopLoad func()) {
	stop, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	stopLoad = func() {
		cancel()
		wg.Wait()
	}
	t.Cleanup(stopLoad)
	for c := range loadClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr := &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true}
			defer tr.CloseIdleConnections()
			hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
			for r := 0; stop.Err() == nil; r++ {
				ids := make([]string, loadBatchSize)
				batch := make([]map[string]any, loadBatchSize)
				for i := range batch {
					ids[i] = fmt.Sprintf("%s-c%d-r%d-e%d", prefix, c, r, i)
					batch[i] = map[string]any{"type": "track", "event": "Load Test", "userId": fmt.Sprintf("load-user-%d", c),
						"messageId": ids[i], "properties": map[string]any{"client": c, "request": r, "i": i}}
				}
				body, _ := json.Marshal(map[string]any{"batch": batch, "sentAt": time.Now().UTC().Format(time.RFC3339Nano)})
				st.mu.Lock()
				for _, id := range ids {
					st.sent[id] = true
				}
				st.mu.Unlock()
				started := time.Now()
				st.inflight.Add(1)
				status, reply, err := postBatch(context.Background(), hc, s.url, s.writeKey, body)
				st.inflight.Add(-1)
				st.mu.Lock()
				st.requests++
				switch {
				case errors.Is(err, syscall.ECONNREFUSED):
					st.noConn++
				case err != nil:
					st.unknown++
					st.unknownAt = append(st.unknownAt, unknownReq{started, time.Now(), err.Error()})
				case status == 200:
					st.ackedReq++
					for _, id := range ids {
						st.acked[id] = true
					}
					if !st.lateAfter.IsZero() && started.After(st.lateAfter) {
						st.lateAcks++
					}
					if !strings.Contains(string(reply), `"success":true`) || strings.Contains(string(reply), "quarantined") {
						if st.firstErr == "" {
							st.firstErr = fmt.Sprintf("200 with body %s", reply)
						}
					}
				default:
					st.refused[status]++
				}
				st.mu.Unlock()
				time.Sleep(time.Until(started.Add(loadPace)))
			}
		}()
	}
	return stopLoad
}

// waitAcked waits until the load has at least n acknowledged requests.
func waitAcked(t *testing.T, st *loadStats, n int, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		st.mu.Lock()
		got := st.ackedReq
		st.mu.Unlock()
		if got >= n {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("load: fewer than %d requests acknowledged in %s: %s", n, d, st.summary())
}

// verifyStored checks that every acknowledged event is stored exactly once,
// nothing is stored twice or that was never sent, and nothing went to the
// quarantine. It waits (bounded) for the pipeline to catch up: after a
// SIGKILL that can take the event log's ack wait (30 s), because the
// records the killed pipeline had fetched are only delivered again then.
// It returns how long it took until every acknowledged event was stored.
func verifyStored(t *testing.T, s *server, st *loadStats) time.Duration {
	t.Helper()
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.firstErr != "" {
		t.Errorf("load: %s", st.firstErr)
	}
	start := time.Now()
	deadline := start.Add(60 * time.Second)
	var (
		counts  map[string]int
		missing []string
	)
	for {
		t0 := time.Now()
		s.waitDrained(time.Until(deadline))
		t1 := time.Now()
		counts = map[string]int{}
		for _, e := range s.events() {
			counts[str(e, "messageId")]++
		}
		t.Logf("pipeline drained after %s; listed %d events in %s",
			t1.Sub(t0).Round(time.Millisecond), len(counts), time.Since(t1).Round(time.Millisecond))
		missing = missing[:0]
		for id := range st.acked {
			if counts[id] == 0 {
				missing = append(missing, id)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		t.Logf("%d acknowledged events not stored yet; waiting", len(missing))
		time.Sleep(time.Second)
	}
	visible := time.Since(start)
	var dups, unsent []string
	stored, unknownStored := 0, 0
	for id, n := range counts {
		if !st.sent[id] {
			unsent = append(unsent, id)
			continue
		}
		stored++
		if n > 1 {
			dups = append(dups, fmt.Sprintf("%s x%d", id, n))
		}
		if !st.acked[id] {
			unknownStored++
		}
	}
	sort.Strings(missing)
	sort.Strings(dups)
	sort.Strings(unsent)
	t.Logf("stored %d distinct load events: all %d acknowledged ones expected, %d more from requests without a 200; "+
		"%d acknowledged missing, %d messageIds stored more than once, %d stored that were never sent",
		stored, len(st.acked), unknownStored, len(missing), len(dups), len(unsent))
	if len(missing) > 0 {
		t.Errorf("LOST: %d acknowledged events are not in the event store, e.g. %v", len(missing), head(missing, 10))
	}
	if len(dups) > 0 {
		t.Errorf("DUPLICATED: %d messageIds are stored more than once, e.g. %v", len(dups), head(dups, 10))
	}
	if len(unsent) > 0 {
		t.Errorf("%d stored messageIds were never sent by this test, e.g. %v", len(unsent), head(unsent, 10))
	}
	// A few acknowledged events, one by one.
	n := 0
	for id := range st.acked {
		if n++; n > 5 {
			break
		}
		if e, ok := s.event(id); !ok || str(e, "event") != "Load Test" || str(e, "type") != "track" {
			t.Errorf("GET /api/v1/events/%s: found %v, %v", id, ok, e)
		}
	}
	status, body := s.admin("GET", "/api/v1/quarantine?limit=10", nil)
	if status != 200 {
		t.Errorf("GET /api/v1/quarantine: %d %s", status, body)
	} else {
		var q struct {
			Items []json.RawMessage `json:"items"`
		}
		if err := json.Unmarshal(body, &q); err != nil {
			t.Errorf("GET /api/v1/quarantine: %v", err)
		} else if len(q.Items) > 0 {
			t.Errorf("valid load events reached the quarantine (%d+ entries), first: %.400s", len(q.Items), q.Items[0])
		}
	}
	return visible
}

func head(s []string, n int) []string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// TestCrashKill9LosesNothing kills the server with SIGKILL under load,
// twice, and checks that every event it acknowledged survives exactly once.
func TestCrashKill9LosesNothing(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir, serverOpts{})
	st := newLoadStats()
	const cycles = 2
	for cycle := 1; cycle <= cycles; cycle++ {
		stopLoad := startLoad(t, s, fmt.Sprintf("crash%d", cycle), st)
		start := time.Now()
		waitAcked(t, st, 5, 20*time.Second)
		loadFor := 3 * time.Second
		if cycle > 1 {
			loadFor = 2 * time.Second
		}
		time.Sleep(time.Until(start.Add(loadFor)))
		// Kill while requests are in flight.
		for i := 0; st.inflight.Load() == 0 && i < 1000; i++ {
			time.Sleep(time.Millisecond)
		}
		inflight := st.inflight.Load()
		if err := s.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		code, ok := s.exited(10 * time.Second)
		if !ok {
			t.Fatal("process still running 10 s after SIGKILL")
		}
		stopLoad()
		t.Logf("cycle %d: SIGKILL (exit %d) with %d requests in flight after %s of load; so far %s",
			cycle, code, inflight, time.Since(start).Round(time.Millisecond), st.summary())
		t0 := time.Now()
		s = startServer(t, dir, serverOpts{})
		t.Logf("restarted in %s", time.Since(t0).Round(time.Millisecond))
	}
	st.mu.Lock()
	if st.unknown == 0 {
		t.Logf("note: no request was cut off by the kills")
	}
	st.mu.Unlock()
	if took := verifyStored(t, s, st); took > 10*time.Second {
		// Not a loss, but worth knowing: records the killed pipeline had
		// fetched and not acknowledged are delivered again only after the
		// event log's ack wait, so acknowledged events stay invisible that
		// long after a crash.
		t.Logf("NOTE: after the restart it took %s until every acknowledged event was stored", took.Round(time.Millisecond))
	}
}

// TestGracefulShutdown sends SIGTERM under load: the process must exit 0
// within the shutdown timeout, every acknowledged event must be stored
// after a restart, and requests after the shutdown began must not be
// acknowledged.
func TestGracefulShutdown(t *testing.T) {
	const shutdownTimeout = 10 * time.Second
	dir := t.TempDir()
	s := startServer(t, dir, serverOpts{args: []string{"--shutdown-timeout", shutdownTimeout.String()}})
	st := newLoadStats()
	stopLoad := startLoad(t, s, "term", st)
	waitAcked(t, st, 5, 20*time.Second)
	time.Sleep(1500 * time.Millisecond)
	for i := 0; st.inflight.Load() == 0 && i < 1000; i++ {
		time.Sleep(time.Millisecond)
	}
	inflight := st.inflight.Load()
	termAt := time.Now()
	// The server stops accepting within moments of the signal; a request
	// started a second later must not get a 200.
	st.mu.Lock()
	st.lateAfter = termAt.Add(time.Second)
	st.mu.Unlock()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	code, ok := s.exited(shutdownTimeout + 5*time.Second)
	took := time.Since(termAt)
	// Keep the load going a little after the exit: all of it must fail.
	time.Sleep(200 * time.Millisecond)
	stopLoad()
	if !ok {
		t.Fatalf("still running %s after SIGTERM (shutdown timeout %s)", took.Round(time.Millisecond), shutdownTimeout)
	}
	t.Logf("SIGTERM with %d requests in flight: exit %d after %s; %s", inflight, code, took.Round(time.Millisecond), st.summary())
	st.mu.Lock()
	for i, u := range st.unknownAt {
		if i == 10 {
			t.Logf("… and %d more without an answer", len(st.unknownAt)-i)
			break
		}
		// Typically a request sent on a keep-alive connection just as the
		// server closed it as idle: the server never read it.
		t.Logf("no answer: started %s, ended %s after SIGTERM: %s",
			u.started.Sub(termAt).Round(time.Millisecond), u.ended.Sub(termAt).Round(time.Millisecond), u.err)
	}
	st.mu.Unlock()
	if code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}
	if took > shutdownTimeout {
		t.Errorf("shutdown took %s, more than the %s timeout", took, shutdownTimeout)
	}
	if !strings.Contains(s.stderr.String(), `"msg":"stopped"`) {
		t.Errorf("no \"stopped\" log line after SIGTERM")
	}
	st.mu.Lock()
	if st.lateAcks > 0 {
		t.Errorf("%d requests started more than 1 s after SIGTERM were answered 200 (the server should have stopped accepting)", st.lateAcks)
	}
	st.mu.Unlock()
	if status, _, err := postBatch(context.Background(), apiClient, s.url, s.writeKey, []byte(`{"batch":[]}`)); err == nil {
		t.Errorf("after exit, a request got an answer: %d", status)
	}

	s = startServer(t, dir, serverOpts{args: []string{"--shutdown-timeout", shutdownTimeout.String()}})
	verifyStored(t, s, st)
}
