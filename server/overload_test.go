package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tandem/config"
	"tandem/event"
	"tandem/eventlog"
)

// slowLog is the node's real embedded event log with every Append held
// back by delay first: a slow disk or a far-away log.
type slowLog struct {
	eventlog.Log
	delay time.Duration
}

func (l slowLog) Append(ctx context.Context, rec []byte) (uint64, error) {
	t := time.NewTimer(l.delay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	return l.Log.Append(ctx, rec)
}

// TestOverload saturates a node whose log is slow with many more clients
// than its in-flight limit, each sending large batches and resending a
// batch after a 503 as the SDKs do. It checks that the node refuses what
// it cannot take (503 overloaded with Retry-After, from both the in-flight
// limit and the log queue's byte budget), that its heap stays within what
// those bounds allow while it is saturated, and that the log afterwards
// holds exactly the events of the requests answered 200, each once: a
// refused request stored nothing.
func TestOverload(t *testing.T) {
	if testing.Short() {
		t.Skip("saturates a node")
	}
	if os.Getenv("TANDEM_OVERLOAD_ALONE") != "1" {
		// The heap bound is about this node alone: run in a process of
		// its own, so no other test's nodes, finished or not, count.
		overloadAlone(t)
		return
	}
	const (
		maxInflight = 8
		queueBytes  = 1 << 20
		clients     = 160
		wantAcked   = 60 // requests answered 200 before the load stops
		wantSamples = 10 // heap measurements taken while saturated
	)
	n := startNodeWith(t, "", func(c *config.Config) {
		c.Pipeline = false
		c.MaxInflight = maxInflight
		c.QueueBytes = queueBytes
		c.SourceRateLimit = 0
	}, hooks{wrapLog: func(l eventlog.Log) eventlog.Log { return slowLog{Log: l, delay: 50 * time.Millisecond} }},
		func(err error) {
			if err != nil {
				t.Errorf("serve: %v", err)
			}
		})

	// Every client builds its first batch before the baseline, so the
	// batches the clients hold are in it.
	bodies := make([][]byte, clients)
	ids := make([][]string, clients)
	for c := range clients {
		bodies[c], ids[c] = overloadBatch(c, 0)
	}
	base := liveHeap()

	var (
		acked     atomic.Int64
		samples   atomic.Int64
		stop      = make(chan struct{})
		stopOnce  sync.Once
		mu        sync.Mutex
		ackedIDs  = map[string]bool{}
		refusals  = map[string]int{}
		badAnswer []string
	)
	halt := func() { stopOnce.Do(func() { close(stop) }) }
	stopped := func() bool {
		select {
		case <-stop:
			return true
		default:
			return false
		}
	}

	// The sampler measures the live heap (after a GC), the bytes waiting
	// for the log and the requests in flight while the clients run. While
	// it measures, clients start no new requests (the ones in flight go
	// on): what a client allocates during the collection would count as
	// live.
	var measuring sync.RWMutex
	var peakHeap uint64
	var peakQueued int64
	var peakInflight int
	samplerDone := make(chan struct{})
	go func() {
		defer close(samplerDone)
		for !stopped() {
			measuring.Lock()
			h := liveHeap()
			measuring.Unlock()
			q := n.srv.Committer.Stats().QueuedBytes
			f := n.srv.inflight.InFlight()
			mu.Lock()
			peakHeap = max(peakHeap, h)
			peakQueued = max(peakQueued, q)
			peakInflight = max(peakInflight, f)
			mu.Unlock()
			if samples.Add(1) >= wantSamples && acked.Load() >= wantAcked {
				halt()
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()

	tr := &http.Transport{MaxIdleConnsPerHost: clients}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			for round := 0; !stopped(); {
				measuring.RLock()
				measuring.RUnlock()
				req, _ := http.NewRequest("POST", n.url+"/v1/batch", bytes.NewReader(bodies[c]))
				req.SetBasicAuth(n.writeKey, "")
				req.Header.Set("Content-Type", "application/json")
				resp, err := hc.Do(req)
				if err != nil {
					t.Errorf("client %d: %v", c, err)
					halt()
					return
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				switch resp.StatusCode {
				case 200:
					mu.Lock()
					for _, id := range ids[c] {
						ackedIDs[id] = true
					}
					mu.Unlock()
					acked.Add(1)
					round++
					bodies[c], ids[c] = overloadBatch(c, round)
				case 503:
					var e struct {
						Error struct{ Code, Message string } `json:"error"`
					}
					_ = json.Unmarshal(body, &e)
					mu.Lock()
					if e.Error.Code != "overloaded" || resp.Header.Get("Retry-After") == "" {
						badAnswer = append(badAnswer, fmt.Sprintf("503 Retry-After %q %s", resp.Header.Get("Retry-After"), body))
					}
					refusals[e.Error.Code]++
					mu.Unlock()
					time.Sleep(5 * time.Millisecond) // not Retry-After: keep the node saturated
				default:
					mu.Lock()
					badAnswer = append(badAnswer, fmt.Sprintf("%d %s", resp.StatusCode, body))
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	<-samplerDone

	if len(badAnswer) > 0 {
		t.Fatalf("%d unexpected answers, e.g. %s", len(badAnswer), badAnswer[0])
	}
	t.Logf("%d requests acknowledged, refusals %v; live heap %d MiB at start, peak %d MiB over %d samples; peak queued %d bytes, peak in flight %d",
		acked.Load(), refusals, base>>20, peakHeap>>20, samples.Load(), peakQueued, peakInflight)
	if refusals["overloaded"] == 0 {
		t.Fatal("no request was refused: the node was not saturated")
	}
	// Both bounds refused requests.
	if v := metricValue(t, n, "tandem_collect_inflight_rejected_total"); v == 0 {
		t.Error("the in-flight limit refused nothing")
	}
	if v := metricValue(t, n, "tandem_log_queue_full_total"); v == 0 {
		t.Error("the log queue's budget refused nothing")
	}
	if peakQueued > queueBytes {
		t.Errorf("%d bytes waited for the log, over the budget of %d", peakQueued, queueBytes)
	}
	if peakInflight > maxInflight {
		t.Errorf("%d requests in flight, over the limit of %d", peakInflight, maxInflight)
	}
	// Each request in flight holds its body and the entries made from it;
	// allow three times the largest request for each, the queue's budget,
	// and room for the clients' own buffers, the connections being
	// drained after a refusal and the runtime (64 MiB: the clients run in
	// this process, and their transport's buffers count too). Unbounded,
	// the node holds about a megabyte for each of the clients (measured:
	// 120 MiB more with both limits off), so the bound still tells.
	bound := uint64(queueBytes + 3*maxInflight*event.MaxRequestBytes + 64<<20)
	if peakHeap > base+bound {
		t.Errorf("live heap grew from %d to %d bytes under saturation, more than the %d the bounds allow", base, peakHeap, bound)
	}

	// Nothing acknowledged is lost and nothing refused was stored.
	inLog := readLogIDs(t, n)
	for id := range ackedIDs {
		if inLog[id] != 1 {
			t.Fatalf("acknowledged event %s is in the log %d times", id, inLog[id])
		}
	}
	for id, k := range inLog {
		if !ackedIDs[id] {
			t.Fatalf("event %s of a refused request is in the log (%d times)", id, k)
		}
	}
}

// overloadBatch is client c's batch for a round: 60 events of about 3.5 KB.
func overloadBatch(c, round int) ([]byte, []string) {
	var b bytes.Buffer
	pad := strings.Repeat("x", 3500)
	ids := make([]string, 60)
	b.WriteString(`{"batch":[`)
	for i := range ids {
		ids[i] = fmt.Sprintf("ov-%d-%d-%d", c, round, i)
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"type":"track","event":"Load","userId":"u%d","messageId":%q,"properties":{"pad":%q}}`, c, ids[i], pad)
	}
	b.WriteString(`]}`)
	return b.Bytes(), ids
}

// liveHeap is the heap held by live objects, as marked by a collection it
// runs. (HeapAlloc right after runtime.GC would also count whatever was
// allocated while the collection ran.)
func liveHeap() uint64 {
	runtime.GC()
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// metricValue reads an unlabelled metric from the node's /metrics.
func metricValue(t *testing.T, n *node, name string) float64 {
	t.Helper()
	r := n.do("GET", "/metrics", "", nil, nil)
	sc := bufio.NewScanner(bytes.NewReader(r.body))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("%s: %v", sc.Text(), err)
			}
			return f
		}
	}
	t.Fatalf("no metric %s in /metrics", name)
	return 0
}

// readLogIDs reads the whole log with a consumer of its own and counts the
// events in it by messageId.
func readLogIDs(t *testing.T, n *node) map[string]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := n.srv.Log.Consumer(ctx, "overload-check")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	out := map[string]int{}
	for {
		msgs, err := c.Fetch(ctx, 100, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			evs, _, err := event.DecodeRecord(m.Data)
			if err != nil {
				t.Fatalf("record %d: %v", m.Seq, err)
			}
			for _, e := range evs {
				out[e.MessageID]++
			}
		}
		if err := c.Ack(ctx, msgs...); err != nil {
			t.Fatal(err)
		}
		if p, err := c.Pending(ctx); err != nil {
			t.Fatal(err)
		} else if p == 0 && len(msgs) == 0 {
			return out
		}
	}
}

// overloadAlone runs TestOverload again in a child process of the test
// binary and reports its outcome here.
func overloadAlone(t *testing.T) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestOverload$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "TANDEM_OVERLOAD_ALONE=1")
	out, err := cmd.CombinedOutput()
	t.Logf("in a process of its own:\n%s", out)
	if err != nil {
		t.Fatalf("TestOverload failed in its own process: %v", err)
	}
	if !bytes.Contains(out, []byte("--- PASS: TestOverload")) {
		t.Fatal("TestOverload did not run in its own process")
	}
}
