package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	jsapi "github.com/nats-io/nats.go/jetstream"

	"tandem/eventlog/jetstream"
	"tandem/testserver"
)

// backends are the shared backends a tandem node is started with; an
// empty field means the node's embedded default under its data dir. The
// PostgreSQL state store and ClickHouse event store fill State and Events
// once they exist; the tests below then check one shared store instead of
// the union of per-node ones (see checkUnion).
type backends struct {
	Log    string // nats://…
	State  string // postgres://…
	Events string // clickhouse://…
	// Key is the write key of a source in the shared state store, which
	// every node's clients send with. Empty: each node's own "default"
	// source, whose key bootstrap wrote to its data dir (only the node
	// that bootstraps a shared state store has that file).
	Key string
}

func (b backends) args() []string {
	var args []string
	for _, kv := range [][2]string{{"--log", b.Log}, {"--state", b.State}, {"--events", b.Events}} {
		if kv[1] != "" {
			args = append(args, kv[0], kv[1])
		}
	}
	return args
}

// clusterAckWait is the log's ack wait in these tests: how long records a
// killed node held wait before the other node gets them. Short, to keep
// the tests short; long enough that a busy machine's pipeline acks
// within it.
const clusterAckWait = 8 * time.Second

// startClusterNode starts `tandem serve` on the shared backends b.
func startClusterNode(t *testing.T, dir string, b backends, extra ...string) *server {
	t.Helper()
	args := append(b.args(), "--log-ack-wait", clusterAckWait.String())
	return startServer(t, dir, serverOpts{args: append(args, extra...), writeKey: b.Key})
}

// retryLoad sends /v1/batch requests of distinct track events from several
// clients to a set of tandem nodes, as Segment's SDKs do: a request
// answered 503 (or not answered at all) is sent again, with the same
// messageIds, after the Retry-After the server asked for, to the next node
// that is up. It records what was acknowledged in a loadStats, so that
// verifyStored can check it.
type retryLoad struct {
	st      *loadStats
	mu      sync.Mutex
	nodes   []*server
	down    map[*server]bool
	retries int           // requests sent again
	status  map[int]int   // answers by status, retries included
	retryAt map[int]int   // Retry-After values seen on 503s
	longest time.Duration // longest time from a batch's first try to its 200
	stop    context.CancelFunc
	wg      sync.WaitGroup
	prefix  string
	resumed int // times resume started the clients again
}

const (
	retryClients   = 6
	retryBatchSize = 40
	retryPace      = 60 * time.Millisecond
	// retryGiveUp bounds how long a client keeps retrying one batch.
	retryGiveUp = 40 * time.Second
)

func startRetryLoad(t *testing.T, prefix string, nodes ...*server) *retryLoad {
	ctx, cancel := context.WithCancel(context.Background())
	rl := &retryLoad{st: newLoadStats(), nodes: nodes, down: map[*server]bool{},
		status: map[int]int{}, retryAt: map[int]int{}, stop: cancel, prefix: prefix}
	t.Cleanup(rl.finish)
	rl.launch(ctx, prefix)
	return rl
}

func (rl *retryLoad) launch(ctx context.Context, prefix string) {
	for c := range retryClients {
		rl.wg.Add(1)
		go func() {
			defer rl.wg.Done()
			rl.client(ctx, prefix, c)
		}()
	}
}

// resume starts sending again after stop (with new messageIds, into the
// same record of what was acknowledged), to every node not marked down.
func (rl *retryLoad) resume() {
	ctx, cancel := context.WithCancel(context.Background())
	rl.mu.Lock()
	rl.stop = cancel
	rl.resumed++
	prefix := fmt.Sprintf("%s-r%d", rl.prefix, rl.resumed)
	rl.mu.Unlock()
	rl.launch(ctx, prefix)
}

// markUp undoes markDown.
func (rl *retryLoad) markUp(s *server) {
	rl.mu.Lock()
	delete(rl.down, s)
	rl.mu.Unlock()
}

// finish stops sending new batches and waits until every batch under way
// is acknowledged or given up.
func (rl *retryLoad) finish() {
	rl.mu.Lock()
	stop := rl.stop
	rl.mu.Unlock()
	stop()
	rl.wg.Wait()
}

// markDown makes the clients stop sending to s, as a load balancer would
// once its health check fails.
func (rl *retryLoad) markDown(s *server) {
	rl.mu.Lock()
	rl.down[s] = true
	rl.mu.Unlock()
}

func (rl *retryLoad) pick(i int) *server {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	for k := range rl.nodes {
		if s := rl.nodes[(i+k)%len(rl.nodes)]; !rl.down[s] {
			return s
		}
	}
	return rl.nodes[i%len(rl.nodes)]
}

func (rl *retryLoad) client(ctx context.Context, prefix string, c int) {
	tr := &http.Transport{MaxIdleConnsPerHost: 2, DisableCompression: true}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 15 * time.Second}
	st := rl.st
	for r := 0; ctx.Err() == nil; r++ {
		ids := make([]string, retryBatchSize)
		batch := make([]map[string]any, retryBatchSize)
		for i := range batch {
			ids[i] = fmt.Sprintf("%s-c%d-r%d-e%d", prefix, c, r, i)
			batch[i] = map[string]any{"type": "track", "event": "Load Test", "userId": fmt.Sprintf("load-user-%d", c),
				"messageId": ids[i], "properties": map[string]any{"client": c, "request": r, "i": i}}
		}
		body, _ := json.Marshal(map[string]any{"batch": batch})
		st.mu.Lock()
		for _, id := range ids {
			st.sent[id] = true
		}
		st.mu.Unlock()
		first := time.Now()
		for try := 0; ; try++ {
			s := rl.pick(c + r + try)
			started := time.Now()
			st.inflight.Add(1)
			status, retryAfter, reply, err := postRetryable(hc, s.url, s.writeKey, body)
			st.inflight.Add(-1)
			st.mu.Lock()
			st.requests++
			rl.mu.Lock()
			rl.status[status]++
			if try > 0 {
				rl.retries++
			}
			rl.mu.Unlock()
			wait := 200 * time.Millisecond
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
				if !strings.Contains(string(reply), `"success":true`) && st.firstErr == "" {
					st.firstErr = fmt.Sprintf("200 with body %s", reply)
				}
			default:
				st.refused[status]++
				if status != http.StatusServiceUnavailable && st.firstErr == "" {
					st.firstErr = fmt.Sprintf("status %d (only 503 may refuse a valid batch): %s", status, reply)
				}
			}
			st.mu.Unlock()
			if err == nil && status == 200 {
				rl.mu.Lock()
				rl.longest = max(rl.longest, time.Since(first))
				rl.mu.Unlock()
				break
			}
			if err == nil && status == http.StatusServiceUnavailable {
				// Retry-After is in seconds; honour it, capped so that
				// the test stays short.
				ra, perr := strconv.Atoi(retryAfter)
				if perr != nil || ra < 1 {
					ra = -1 // missing or not a number of seconds
				}
				rl.mu.Lock()
				rl.retryAt[ra]++
				rl.mu.Unlock()
				wait = min(time.Duration(max(ra, 1))*time.Second, time.Second)
			}
			if time.Since(first) > retryGiveUp {
				break // the batch stays unacknowledged; verifyStored ignores it
			}
			time.Sleep(wait)
		}
		time.Sleep(time.Until(first.Add(retryPace)))
	}
}

// postRetryable posts a /v1/batch body and returns the status, the
// Retry-After header and the body.
func postRetryable(c *http.Client, base, key string, body []byte) (int, string, []byte, error) {
	req, err := http.NewRequest("POST", base+"/v1/batch", bytes.NewReader(body))
	if err != nil {
		return 0, "", nil, err
	}
	req.SetBasicAuth(key, "")
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, "", nil, err // the outcome is unknown
	}
	return resp.StatusCode, resp.Header.Get("Retry-After"), b, nil
}

func (rl *retryLoad) summary() string {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	return fmt.Sprintf("%s; answers by status %v (0: no answer), Retry-After on 503s %v, %d retries, longest time to a 200 %s",
		rl.st.summary(), rl.status, rl.retryAt, rl.retries, rl.longest.Round(time.Millisecond))
}

// check fails t if a 503 came without a usable Retry-After.
func (rl *retryLoad) check(t *testing.T) {
	t.Helper()
	rl.mu.Lock()
	defer rl.mu.Unlock()
	if n := rl.retryAt[-1]; n > 0 {
		t.Errorf("%d answers 503 without a Retry-After in seconds", n)
	}
}

// acked is the number of acknowledged requests so far.
func (rl *retryLoad) acked() int {
	rl.st.mu.Lock()
	defer rl.st.mu.Unlock()
	return rl.st.ackedReq
}

// waitAckedMore waits until n more requests are acknowledged than when it
// was called.
func (rl *retryLoad) waitAckedMore(t *testing.T, n int, d time.Duration) {
	t.Helper()
	base := rl.acked()
	deadline := time.Now().Add(d)
	for rl.acked() < base+n {
		if time.Now().After(deadline) {
			t.Fatalf("fewer than %d more requests acknowledged in %s: %s", n, d, rl.summary())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// streamInfo reads the event log's stream as the servers see it.
func streamInfo(t *testing.T, url string) *jsapi.StreamInfo {
	t.Helper()
	js, nc := jsClient(t, url)
	defer nc.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, jetstream.DefaultStream)
	if err != nil {
		t.Fatalf("stream info: %v", err)
	}
	return s.CachedInfo()
}

// pipelineConsumer reads the state of the pipeline's durable consumer,
// which every node's pipeline shares.
// pipelineConsumer reads the pipeline consumer's state. Right after a
// NATS node is killed the consumer may have no leader for some seconds
// (its own election follows the stream's), so it asks again for up to 30
// seconds before failing t.
func pipelineConsumer(t *testing.T, js jsapi.JetStream) *jsapi.ConsumerInfo {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		c, err := js.Consumer(ctx, jetstream.DefaultStream, "pipeline")
		cancel()
		if err == nil {
			return c.CachedInfo()
		}
		if time.Now().After(deadline) || t.Context().Err() != nil {
			t.Fatalf("consumer info: %v", err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func jsClient(t *testing.T, url string) (jsapi.JetStream, *nats.Conn) {
	t.Helper()
	nc, err := nats.Connect(url, nats.Name("e2e-observer"))
	if err != nil {
		t.Fatalf("connect to NATS: %v", err)
	}
	js, err := jsapi.New(nc)
	if err != nil {
		nc.Close()
		t.Fatal(err)
	}
	return js, nc
}

// TestNATSNodeKilledUnderLoad: a tandem node on a three-node NATS cluster
// takes events from several clients while the server leading the event
// log's stream is killed with SIGKILL. Collection keeps answering (a few
// 503s with Retry-After, which the clients retry, are allowed), and every
// event that got a 200 is stored exactly once.
func TestNATSNodeKilledUnderLoad(t *testing.T) {
	nc := testserver.StartNATSCluster(t, 3)
	s := startClusterNode(t, "", backends{Log: nc.URL()})
	if info := streamInfo(t, nc.URL()); info.Config.Replicas != 3 {
		t.Fatalf("the event log's stream has %d replicas on a three-node cluster, want 3", info.Config.Replicas)
	}
	rl := startRetryLoad(t, "natskill", s)
	rl.waitAckedMore(t, 20, 20*time.Second)
	time.Sleep(time.Second)

	leader := streamInfo(t, nc.URL()).Cluster.Leader
	victim := nc.NodeIndex(leader)
	if victim < 0 {
		t.Fatalf("stream leader %q is not a node of the cluster", leader)
	}
	// Kill while requests are in flight.
	for i := 0; rl.st.inflight.Load() == 0 && i < 1000; i++ {
		time.Sleep(time.Millisecond)
	}
	before := rl.acked()
	inflight := rl.st.inflight.Load()
	nc.Kill(victim)
	killed := time.Now()
	t.Logf("killed NATS node %s (the stream leader) with %d requests in flight, %d acknowledged so far",
		leader, inflight, before)

	// Collection recovers: requests keep being acknowledged after the kill.
	rl.waitAckedMore(t, 40, 30*time.Second)
	t.Logf("40 more requests acknowledged %s after the kill; new stream leader %s",
		time.Since(killed).Round(time.Millisecond), streamInfo(t, nc.URL()).Cluster.Leader)
	time.Sleep(time.Second)
	rl.finish()
	t.Logf("load: %s", rl.summary())
	rl.check(t)

	verifyStored(t, s, rl.st)
}

// TestNATSTwoNodesShareThePipeline: two tandem nodes, each with its own
// data dir and embedded stores, on one NATS cluster, share the pipeline's
// durable consumer: each processes part of the log. One is killed with
// SIGKILL while it holds records it fetched and has not acknowledged; the
// other processes them once the log's ack wait has passed.
//
// With an event store per node, "stored exactly once" is a property of the
// union of the two stores: each node's store holds an event at most once,
// and every acknowledged event is in one of them. An event may be in both
// when the killed node had stored it but not yet acknowledged its record,
// which is exactly a record the survivor took over; with a shared event
// store (Backends.Events) the duplicate disappears by deduplication and the
// check becomes exactly once.
func TestNATSTwoNodesShareThePipeline(t *testing.T) {
	nc := testserver.StartNATSCluster(t, 3)
	b := backends{Log: nc.URL()}
	dirA := t.TempDir()
	a := startClusterNode(t, dirA, b)
	bb := startClusterNode(t, "", b)
	rl := startRetryLoad(t, "share", a, bb)
	rl.waitAckedMore(t, 30, 20*time.Second)
	time.Sleep(2 * time.Second)

	// Both nodes' pipelines do part of the work.
	recA, errA := a.metric("tandem_pipeline_records_total")
	recB, errB := bb.metric("tandem_pipeline_records_total")
	if errA != nil || errB != nil {
		t.Fatalf("metrics: %v, %v", errA, errB)
	}
	t.Logf("log records processed before the kill: A %v, B %v", recA, recB)
	if recA == 0 || recB == 0 {
		t.Errorf("the pipeline's work is not shared: A processed %v records, B %v", recA, recB)
	}

	killHolding(t, nc.URL(), a, rl)

	rl.finish()
	t.Logf("load: %s", rl.summary())
	rl.check(t)

	// What A stored before it died, read by a restart without pipeline.
	a = startClusterNode(t, dirA, b, "--pipeline=false")
	checkUnion(t, rl.st, a, bb)
}

// killHolding kills node a while it holds log records it fetched and has
// not acknowledged, and waits until the other nodes on the NATS cluster at
// natsURL have processed them (after the log's ack wait). It freezes a
// with SIGSTOP first, so that what a holds stays so; stops the load's new
// batches (those under way finish on the other nodes), waits until the
// others have acknowledged everything else, then sends SIGKILL. It fails
// t if a held nothing, since the take-over would then not be exercised.
func killHolding(t *testing.T, natsURL string, a *server, rl *retryLoad) {
	t.Helper()
	js, obs := jsClient(t, natsURL)
	defer obs.Close()
	consumer := func() *jsapi.ConsumerInfo { return pipelineConsumer(t, js) }
	// The node may be caught between batches (on a busy machine, often):
	// then let it run under load again and freeze it anew.
	const attempts = 5
	var frozen time.Time
	for attempt := 1; ; attempt++ {
		var held int
		frozen, held = freezeHolding(t, a, rl, consumer)
		if held > 0 {
			a.kill() // SIGKILL
			t.Logf("node killed with SIGKILL %s after it was frozen (attempt %d), holding %d unacknowledged records",
				time.Since(frozen).Round(time.Millisecond), attempt, held)
			break
		}
		if attempt == attempts {
			t.Fatalf("in %d attempts the frozen node never held unacknowledged records: the take-over is not exercised", attempts)
		}
		t.Logf("attempt %d: the frozen node held no unacknowledged records; resuming it under load", attempt)
		if err := a.cmd.Process.Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		rl.markUp(a)
		rl.resume()
		time.Sleep(1500 * time.Millisecond)
	}
	killed := time.Now()

	for {
		ci := consumer()
		if ci.NumPending == 0 && ci.NumAckPending == 0 {
			t.Logf("the other nodes acknowledged its records %s after it was frozen (ack wait %s)", time.Since(frozen).Round(time.Millisecond), clusterAckWait)
			return
		}
		if time.Since(killed) > clusterAckWait+20*time.Second {
			t.Fatalf("the killed node's records not taken over %s after the kill: %d pending, %d unacknowledged",
				time.Since(killed).Round(time.Millisecond), ci.NumPending, ci.NumAckPending)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// freezeHolding stops node a (SIGSTOP) and the load, waits until the other
// nodes have taken and acknowledged everything else, and returns when it
// froze a and how many records a holds unacknowledged.
func freezeHolding(t *testing.T, a *server, rl *retryLoad, consumer func() *jsapi.ConsumerInfo) (time.Time, int) {
	t.Helper()
	if err := a.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	rl.markDown(a)
	frozen := time.Now()
	rl.mu.Lock()
	stop := rl.stop
	rl.mu.Unlock()
	stop()
	for {
		ci := consumer()
		since := time.Since(frozen)
		if ci.NumPending == 0 && since > 2500*time.Millisecond {
			// The others have had everything and had time to acknowledge
			// what they took: what is left unacknowledged is a's, and
			// stays so until the ack wait passes.
			return frozen, ci.NumAckPending
		}
		if since > clusterAckWait*3/4 {
			t.Fatalf("the other nodes did not catch up while the node was frozen: %d records pending, %d unacknowledged", ci.NumPending, ci.NumAckPending)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkUnion checks the union of the nodes' event stores: every
// acknowledged event is in at least one, no store holds an event (a source
// and a messageId) twice, nothing that was never sent is stored, and
// nothing went to a quarantine. Events in more than one store are
// reported.
//
// With a state store per node each node has its own "default" source, so
// a batch sent to one node without an answer and then again to the other
// is two sources' events with the same messageIds: deduplication rightly
// keeps both. A shared state store makes them one source.
func checkUnion(t *testing.T, st *loadStats, nodes ...*server) {
	t.Helper()
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.firstErr != "" {
		t.Errorf("load: %s", st.firstErr)
	}
	union := map[string]int{}
	for k, s := range nodes {
		counts := map[[2]string]int{}
		ids := map[string]bool{}
		for _, e := range s.events() {
			counts[[2]string{str(e, "sourceId"), str(e, "messageId")}]++
			ids[str(e, "messageId")] = true
		}
		var dups, unsent []string
		for key, n := range counts {
			if !st.sent[key[1]] {
				unsent = append(unsent, key[1])
			}
			if n > 1 {
				dups = append(dups, fmt.Sprintf("%s/%s x%d", key[0], key[1], n))
			}
		}
		for id := range ids {
			union[id]++
		}
		sort.Strings(dups)
		sort.Strings(unsent)
		t.Logf("node %d stores %d events, %d distinct messageIds", k, len(counts), len(ids))
		if len(dups) > 0 {
			t.Errorf("DUPLICATED: node %d stores %d messageIds more than once, e.g. %v", k, len(dups), head(dups, 10))
		}
		if len(unsent) > 0 {
			t.Errorf("node %d stores %d messageIds never sent, e.g. %v", k, len(unsent), head(unsent, 10))
		}
		status, body := s.admin("GET", "/api/v1/quarantine?limit=10", nil)
		var q struct {
			Items []json.RawMessage `json:"items"`
		}
		if err := json.Unmarshal(body, &q); status != 200 || err != nil {
			t.Errorf("node %d: GET /api/v1/quarantine: %d %v %.200s", k, status, err, body)
		} else if len(q.Items) > 0 {
			t.Errorf("node %d: valid load events reached the quarantine (%d+ entries), first: %.400s", k, len(q.Items), q.Items[0])
		}
	}
	var missing []string
	for id := range st.acked {
		if union[id] == 0 {
			missing = append(missing, id)
		}
	}
	both := 0
	for _, n := range union {
		if n > 1 {
			both++
		}
	}
	sort.Strings(missing)
	t.Logf("%d acknowledged events; %d distinct events stored over %d nodes, %d of them by more than one node (stored by the killed node and taken over, or retried on the other node)",
		len(st.acked), len(union), len(nodes), both)
	if len(missing) > 0 {
		t.Errorf("LOST: %d acknowledged events are in no node's event store, e.g. %v", len(missing), head(missing, 10))
	}
}
