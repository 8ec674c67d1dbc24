package server

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"

	"tandem/config"
	"tandem/testserver"
)

// loadGen posts batches of uniquely identified events to a node from a
// few goroutines until stopped, and remembers every messageId of a batch
// answered 200 (acknowledged: the node promised to keep it).
type loadGen struct {
	n      *node
	prefix string
	batch  int

	mu     sync.Mutex
	acked  []string
	status map[int]int // answers by HTTP status (0: transport error)

	stop chan struct{}
	wg   sync.WaitGroup
	seq  atomic.Int64
}

// startLoad starts workers goroutines, each posting one batch after
// another, or one every interval when interval > 0.
func startLoad(n *node, prefix string, workers, batch int, interval time.Duration) *loadGen {
	g := &loadGen{n: n, prefix: prefix, batch: batch, status: map[int]int{}, stop: make(chan struct{})}
	client := &http.Client{Timeout: 30 * time.Second}
	for range workers {
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			var tick <-chan time.Time
			if interval > 0 {
				t := time.NewTicker(interval)
				defer t.Stop()
				tick = t.C
			}
			for {
				if tick != nil {
					select {
					case <-g.stop:
						return
					case <-tick:
					}
				}
				select {
				case <-g.stop:
					return
				default:
				}
				g.post(client)
			}
		}()
	}
	return g
}

func (g *loadGen) post(client *http.Client) {
	ids := make([]string, g.batch)
	var b bytes.Buffer
	b.WriteString(`{"batch":[`)
	for i := range ids {
		k := g.seq.Add(1)
		ids[i] = fmt.Sprintf("%s-%07d", g.prefix, k)
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"type":"track","userId":"u%d","event":"Viewed","messageId":"%s"}`, k%50, ids[i])
	}
	b.WriteString(`]}`)
	req, _ := http.NewRequest("POST", g.n.url+"/v1/batch", &b)
	req.SetBasicAuth(g.n.writeKey, "")
	req.Header.Set("Content-Type", "application/json")
	status := 0
	if resp, err := client.Do(req); err == nil {
		status = resp.StatusCode
		resp.Body.Close()
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.status[status]++
	if status == 200 {
		g.acked = append(g.acked, ids...)
	}
}

// end stops the load and returns the acknowledged messageIds.
func (g *loadGen) end() []string {
	close(g.stop)
	g.wg.Wait()
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.acked
}

func (g *loadGen) statuses() map[int]int {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := map[int]int{}
	for k, v := range g.status {
		out[k] = v
	}
	return out
}

// storedCounts counts the stored copies of each event whose messageId
// starts with prefix, read straight from ClickHouse.
func storedCounts(t *testing.T, srv *testserver.ClickHouseServer, dbURL, prefix string) (map[string]uint64, error) {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	db := strings.TrimPrefix(u.Path, "/")
	conn, err := ch.Open(&ch.Options{Addr: []string{srv.Addr()}, DialTimeout: 5 * time.Second})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rows, err := conn.Query(ctx, "SELECT message_id, count() FROM "+db+".events WHERE startsWith(message_id, ?) GROUP BY message_id", prefix)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]uint64{}
	for rows.Next() {
		var id string
		var n uint64
		if err := rows.Scan(&id, &n); err != nil {
			return nil, err
		}
		out[id] = n
	}
	return out, rows.Err()
}

// TestClickHouseKilledDuringIngest kills the ClickHouse server of a node's
// event store with SIGKILL while events stream in, keeps collecting while
// it is down, starts it again on the same data, and finds every event the
// node acknowledged with a 200 stored exactly once: the pipeline holds the
// log records (unacknowledged) and retries with backoff while ClickHouse
// is away, rather than dropping or quarantining them.
func TestClickHouseKilledDuringIngest(t *testing.T) {
	srv := testserver.StartClickHouse(t)
	dbURL := srv.NewDatabase(t)
	n := startNode(t, "", func(c *config.Config) { c.Events = dbURL })

	// About 10,000 events/s: enough that the pipeline writes all the
	// time, little enough that the backlog of an outage drains in seconds.
	load := startLoad(n, "kill", 4, 50, 20*time.Millisecond)
	stored := func() int {
		got, err := storedCounts(t, srv, dbURL, "kill-")
		if err != nil {
			return -1
		}
		return len(got)
	}
	waitStored := func(min int) {
		t.Helper()
		deadline := time.Now().Add(90 * time.Second)
		for {
			if stored() >= min {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("fewer than %d events stored after 90s (%d)", min, stored())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	// Some events stored, more in flight: kill in the middle of it.
	waitStored(500)
	time.Sleep(300 * time.Millisecond)
	srv.Kill()
	killedAt := time.Now()

	// Collection goes on (the log is durable); the node says its event
	// store is down and that processing falls behind.
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := n.do("GET", "/readyz", "", nil, nil)
		if r.status == 503 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("readyz with ClickHouse killed: %d %s, want 503", r.status, r.body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Down for longer than the pipeline retries a batch in place (20 s):
	// the records it held come again from the log.
	time.Sleep(time.Until(killedAt.Add(24 * time.Second)))
	before := load.statuses()[200]
	time.Sleep(time.Second)
	if after := load.statuses()[200]; after <= before {
		t.Errorf("collection stopped accepting while ClickHouse was down (%d → %d batches)", before, after)
	}
	m := n.do("GET", "/metrics", "", nil, nil)
	if v, ok := scrapeValue(string(m.body), "tandem_pipeline_batch_failures_total"); !ok || v < 1 {
		t.Errorf("tandem_pipeline_batch_failures_total = %v (found %v) with ClickHouse down, want ≥ 1", v, ok)
	}

	if err := srv.Start(); err != nil {
		t.Fatalf("restart ClickHouse: %v", err)
	}
	// Kill it again while the pipeline works off the outage's backlog
	// (large INSERTs in flight), and start it once more.
	n0 := stored()
	waitStored(n0 + 1)
	srv.Kill()
	time.Sleep(2 * time.Second)
	if err := srv.Start(); err != nil {
		t.Fatalf("restart ClickHouse: %v", err)
	}
	time.Sleep(2 * time.Second)
	acked := load.end()
	t.Logf("answers by status: %v; %d events acknowledged", load.statuses(), len(acked))

	// The pipeline catches up: every acknowledged event, once.
	var got map[string]uint64
	deadline = time.Now().Add(3 * time.Minute)
	for {
		var err error
		got, err = storedCounts(t, srv, dbURL, "kill-")
		if err == nil && len(got) >= len(acked) {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("after 3 minutes %d of %d acknowledged events stored (%v)", len(got), len(acked), err)
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	n.drain()
	got, err := storedCounts(t, srv, dbURL, "kill-")
	if err != nil {
		t.Fatal(err)
	}
	missing, dup := 0, 0
	for _, id := range acked {
		switch c := got[id]; {
		case c == 0:
			if missing++; missing <= 5 {
				t.Errorf("acknowledged event %s not stored", id)
			}
		case c > 1:
			if dup++; dup <= 5 {
				t.Errorf("event %s stored %d times", id, c)
			}
		}
	}
	if missing+dup > 0 {
		t.Errorf("%d of %d acknowledged events missing, %d stored more than once", missing, len(acked), dup)
	}
	if q := n.quarantine(); len(q) != 0 {
		t.Errorf("%d quarantine entries after a ClickHouse outage, want none: first %v", len(q), q[0])
	}
	if r := n.do("GET", "/readyz", "", nil, nil); r.status != 200 {
		t.Errorf("readyz after ClickHouse restarted: %d %s", r.status, r.body)
	}
}

// chExec runs one statement on srv.
func chExec(t *testing.T, srv *testserver.ClickHouseServer, stmt string) {
	t.Helper()
	conn, err := ch.Open(&ch.Options{Addr: []string{srv.Addr()}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := conn.Exec(ctx, stmt); err != nil {
		t.Fatalf("%s: %v", stmt, err)
	}
}

// An OS crash can take ClickHouse parts that were acknowledged (18.16
// does not fsync them) after the pipeline acknowledged their log records.
// --replay-last processes the log's recent records again: the lost events
// come back, each once, and those still stored are not stored twice.
func TestClickHouseReplayRestoresLostEvents(t *testing.T) {
	srv := testserver.StartClickHouse(t)
	dbURL := srv.NewDatabase(t)
	u, _ := url.Parse(dbURL)
	db := strings.TrimPrefix(u.Path, "/")
	n := startNode(t, "", func(c *config.Config) { c.Events = dbURL })
	post := func(from, to int) {
		t.Helper()
		var evs []string
		for i := from; i < to; i++ {
			evs = append(evs, fmt.Sprintf(`{"type":"track","userId":"u%d","event":"Viewed","messageId":"lost-%05d"}`, i%7, i))
		}
		if r := n.do("POST", "/v1/batch", "basic:"+n.writeKey, []byte(`{"batch":[`+strings.Join(evs, ",")+`]}`), nil); r.status != 200 {
			t.Fatalf("batch: %d %s", r.status, r.body)
		}
	}
	for i := 0; i < 2000; i += 100 {
		post(i, i+100)
	}
	n.drain()
	if got, err := storedCounts(t, srv, dbURL, "lost-"); err != nil || len(got) != 2000 {
		t.Fatalf("%d events stored before the loss (%v), want 2000", len(got), err)
	}
	n.stop()
	// The loss: the events of the older half gone from the table, as if
	// their parts never reached the disk (their key rows stay).
	chExec(t, srv, "ALTER TABLE "+db+".events DELETE WHERE message_id < 'lost-01000'")
	deadline := time.Now().Add(time.Minute)
	for {
		got, err := storedCounts(t, srv, dbURL, "lost-")
		if err == nil && len(got) == 1000 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("simulated loss did not happen: %d stored (%v)", len(got), err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// A restart alone brings nothing back: the records were acknowledged.
	n = startNode(t, n.dir, func(c *config.Config) { c.Events = dbURL })
	post(2000, 2100)
	n.drain()
	if got, _ := storedCounts(t, srv, dbURL, "lost-"); len(got) != 1100 {
		t.Fatalf("%d stored after a plain restart, want 1100", len(got))
	}
	n.stop()

	n = startNode(t, n.dir, func(c *config.Config) { c.Events = dbURL; c.ReplayLast = time.Hour })
	var got map[string]uint64
	deadline = time.Now().Add(2 * time.Minute)
	for {
		var err error
		got, err = storedCounts(t, srv, dbURL, "lost-")
		if err == nil && len(got) >= 2100 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after a replay %d of 2100 events stored (%v)", len(got), err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	got, _ = storedCounts(t, srv, dbURL, "lost-")
	for i := range 2100 {
		id := fmt.Sprintf("lost-%05d", i)
		if got[id] != 1 {
			t.Errorf("%s stored %d times after the replay, want 1", id, got[id])
		}
	}
	if q := n.quarantine(); len(q) != 0 {
		t.Errorf("%d quarantine entries after a replay, want none", len(q))
	}
}
