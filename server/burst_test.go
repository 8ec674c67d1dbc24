package server

import (
	"context"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"tandem/config"
	"tandem/eventlog"
)

// fetchCounting counts the records its consumers fetch: what the
// pipeline took from the log, whenever it stores them (the event store
// may hold them uncommitted for a while).
type fetchCounting struct {
	eventlog.Log
	fetched *atomic.Int64
}

func (l fetchCounting) Consumer(ctx context.Context, name string) (eventlog.Consumer, error) {
	c, err := l.Log.Consumer(ctx, name)
	if err != nil || name != "pipeline" {
		return c, err
	}
	return countingConsumer{Consumer: c, fetched: l.fetched}, nil
}

type countingConsumer struct {
	eventlog.Consumer
	fetched *atomic.Int64
}

func (c countingConsumer) Fetch(ctx context.Context, max int, wait time.Duration) ([]eventlog.Message, error) {
	msgs, err := c.Consumer.Fetch(ctx, max, wait)
	c.fetched.Add(int64(len(msgs)))
	return msgs, err
}

// startBurstNode starts a node whose pipeline's fetches are counted, with
// the rule's age bound maxAge (0: the default).
func startBurstNode(t *testing.T, maxAge time.Duration) (*node, *atomic.Int64) {
	t.Helper()
	fetched := new(atomic.Int64)
	// No per-source rate limit: on a fast machine the burst's one source
	// passes the default's 100,000 events/s and would get 429s.
	noLimit := func(c *config.Config) { c.SourceRateLimit = 0 }
	n := startNodeWith(t, "", noLimit, hooks{collectionFirstMaxAge: maxAge,
		wrapLog: func(l eventlog.Log) eventlog.Log { return fetchCounting{Log: l, fetched: fetched} }},
		func(err error) {
			if err != nil {
				t.Errorf("serve: %v", err)
			}
		})
	return n, fetched
}

// burstReading is one look at the pipeline during a burst.
type burstReading struct {
	at        time.Time
	stored    float64
	accepted  float64
	deferring float64
	fetched   int64   // records the pipeline took from the log so far
	records   float64 // records appended to the log so far
	logBytes  float64 // bytes appended to the log so far
	capacity  float64 // the pipeline's measured pace, bytes/s
}

func readBurst(t *testing.T, n *node, fetched *atomic.Int64) burstReading {
	t.Helper()
	r := n.do("GET", "/metrics", "", nil, nil)
	text := string(r.body)
	var b burstReading
	b.at = time.Now()
	b.fetched = fetched.Load()
	b.stored, _ = scrapeValue(text, "tandem_pipeline_events_stored_total")
	b.deferring, _ = scrapeValue(text, "tandem_pipeline_deferring")
	b.logBytes, _ = scrapeValue(text, "tandem_log_bytes_total")
	b.capacity, _ = scrapeValue(text, "tandem_pipeline_capacity_bytes_per_second")
	// Accepted events of the node's one source (a labelled counter).
	for _, line := range splitLines(text) {
		if v, ok := cutMetric(line, "tandem_events_accepted_total{"); ok {
			b.accepted += v
		}
		if v, ok := cutMetric(line, `tandem_log_records_total{result="ok"}`); ok {
			b.records = v
		}
	}
	return b
}

// burstLoad runs unpaced load from enough clients to keep collection busy
// (twice the rule's threshold) for d, reading the metrics every 250ms.
func burstLoad(t *testing.T, n *node, fetched *atomic.Int64, prefix string, d time.Duration) ([]burstReading, []string) {
	t.Helper()
	workers := 4 * busyPerCore * runtime.GOMAXPROCS(0)
	load := startLoad(n, prefix, workers, 100, 0)
	var rs []burstReading
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
		rs = append(rs, readBurst(t, n, fetched))
	}
	acked := load.end()
	if st := load.statuses(); len(st) != 1 || st[200] == 0 {
		t.Errorf("burst answers %v, want only 200s", st)
	}
	return rs, acked
}

// TestCollectionFirstDuringBurst: while clients send as fast as they are
// answered, the pipeline takes nothing more from the log (the events stay
// durable there), and once the burst is over it stores every accepted
// event.
func TestCollectionFirstDuringBurst(t *testing.T) {
	if testing.Short() {
		t.Skip("burst load: skipped with -short")
	}
	n, fetched := startBurstNode(t, 0)
	rs, acked := burstLoad(t, n, fetched, "burst", 9*time.Second)
	// Over the last 3 s of the burst (the rule has seen it by then, and
	// the batches under way when it began have been fetched), the
	// pipeline fetched next to nothing of what the log took.
	last := rs[len(rs)-1]
	mid := readingBefore(rs, 3*time.Second)
	appended, took := last.records-mid.records, last.fetched-mid.fetched
	t.Logf("last 3 s of the burst: %.0f records appended, %d fetched by the pipeline; %.0f events accepted in all", appended, took, last.accepted)
	if appended > 0 && float64(took) > appended/5 {
		// The rule waits only for a burst: collection bringing more
		// than burstOver (1.25) times the pipeline's own pace. On a
		// machine busy with other work collection may not get there,
		// and then going on working is the rule's answer, not a fault.
		rate := (last.logBytes - mid.logBytes) / last.at.Sub(mid.at).Seconds()
		if last.capacity > 0 && rate <= 1.25*last.capacity {
			t.Logf("no burst to hold off for: collection brought %.0f bytes/s, the pipeline's pace is %.0f bytes/s (the machine is busy); the hold-off is not judged", rate, last.capacity)
			appended = -1
		}
	}
	if appended == 0 || (appended > 0 && float64(took) > appended/5) {
		t.Errorf("over the last 3 s of the burst the log took %.0f records and the pipeline fetched %d; want it to hold off (at most a fifth)", appended, took)
	}
	// After the burst it catches up: every accepted event is stored.
	n.drainWithin(3 * time.Minute)
	if r := readBurst(t, n, fetched); r.deferring != 0 || r.stored < float64(len(acked)) {
		t.Errorf("after the burst: deferring %v, stored %.0f of %d accepted", r.deferring, r.stored, len(acked))
	}
}

// TestCollectionFirstBoundedByAge: under a burst longer than the rule's
// bound, the pipeline works once the oldest unprocessed event reaches the
// bound, busy collection or not: it is not starved.
func TestCollectionFirstBoundedByAge(t *testing.T) {
	if testing.Short() {
		t.Skip("burst load: skipped with -short")
	}
	const bound = 2 * time.Second
	n, fetched := startBurstNode(t, bound)
	rs, acked := burstLoad(t, n, fetched, "long", 10*time.Second)
	// 4 s before the end the backlog has long passed the bound.
	last := rs[len(rs)-1]
	late := readingBefore(rs, 4*time.Second)
	appended, took := last.records-late.records, last.fetched-late.fetched
	t.Logf("last 4 s of the burst: %.0f records appended, %d fetched by the pipeline", appended, took)
	if took == 0 {
		t.Errorf("the pipeline fetched nothing in the last 4 s of a 10 s burst with the rule's bound at %v: starved", bound)
	}
	n.drainWithin(3 * time.Minute)
	if r := readBurst(t, n, fetched); r.stored < float64(len(acked)) {
		t.Errorf("stored %.0f of %d accepted", r.stored, len(acked))
	}
}

// readingBefore is the first reading at most d before the last.
func readingBefore(rs []burstReading, d time.Duration) burstReading {
	last := rs[len(rs)-1]
	for _, r := range rs {
		if last.at.Sub(r.at) <= d {
			return r
		}
	}
	return last
}

func splitLines(s string) []string { return strings.Split(s, "\n") }

// cutMetric reads the value of a sample line starting with prefix.
func cutMetric(line, prefix string) (float64, bool) {
	if !strings.HasPrefix(line, prefix) {
		return 0, false
	}
	i := strings.LastIndexByte(line, ' ')
	if i < 0 {
		return 0, false
	}
	v, err := strconv.ParseFloat(line[i+1:], 64)
	return v, err == nil
}
