package server

import (
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// burstReading is one look at the pipeline during a burst.
type burstReading struct {
	at        time.Time
	stored    float64
	accepted  float64
	deferring float64
}

func readBurst(t *testing.T, n *node) burstReading {
	t.Helper()
	r := n.do("GET", "/metrics", "", nil, nil)
	text := string(r.body)
	var b burstReading
	b.at = time.Now()
	b.stored, _ = scrapeValue(text, "tandem_pipeline_events_stored_total")
	b.deferring, _ = scrapeValue(text, "tandem_pipeline_deferring")
	// Accepted events of the node's one source (a labelled counter).
	for _, line := range splitLines(text) {
		if v, ok := cutMetric(line, "tandem_events_accepted_total{"); ok {
			b.accepted += v
		}
	}
	return b
}

// burstLoad runs unpaced load from enough clients to keep collection busy
// (twice the rule's threshold) for d, reading the metrics every 250ms.
func burstLoad(t *testing.T, n *node, prefix string, d time.Duration) ([]burstReading, []string) {
	t.Helper()
	workers := 4 * busyPerCore * runtime.GOMAXPROCS(0)
	load := startLoad(n, prefix, workers, 100, 0)
	var rs []burstReading
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
		rs = append(rs, readBurst(t, n))
	}
	acked := load.end()
	if st := load.statuses(); len(st) != 1 || st[200] == 0 {
		t.Errorf("burst answers %v, want only 200s", st)
	}
	return rs, acked
}

// TestCollectionFirstDuringBurst: while clients send as fast as they are
// answered, the pipeline holds off new batches (the events stay durable
// in the log), and once the burst is over it stores every accepted event.
func TestCollectionFirstDuringBurst(t *testing.T) {
	if testing.Short() {
		t.Skip("burst load: skipped with -short")
	}
	n := startNode(t, "", nil)
	rs, acked := burstLoad(t, n, "burst", 9*time.Second)
	deferred := 0
	for _, r := range rs {
		if r.deferring == 1 {
			deferred++
		}
	}
	if deferred == 0 {
		t.Fatalf("the pipeline never deferred to the burst; readings %+v", rs)
	}
	// Over the last 3 s of the burst (the batches in the pipeline's
	// stages when it began have finished by then), it stored little of
	// what collection accepted.
	last := rs[len(rs)-1]
	var mid burstReading
	for _, r := range rs {
		if last.at.Sub(r.at) <= 3*time.Second {
			mid = r
			break
		}
	}
	accepted, stored := last.accepted-mid.accepted, last.stored-mid.stored
	t.Logf("deferring in %d of %d readings; last 3 s: accepted %.0f, stored %.0f", deferred, len(rs), accepted, stored)
	if accepted == 0 || stored > accepted/5 {
		t.Errorf("over the last 3 s of the burst: accepted %.0f, stored %.0f; want the pipeline to hold off (stored ≤ a fifth)", accepted, stored)
	}
	// After the burst it catches up: every accepted event is stored.
	n.drainWithin(3 * time.Minute)
	if r := readBurst(t, n); r.deferring != 0 || r.stored < float64(len(acked)) {
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
	n := startNodeWith(t, "", nil, hooks{collectionFirstMaxAge: bound}, func(err error) {
		if err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	rs, acked := burstLoad(t, n, "long", 10*time.Second)
	first, last := rs[0], rs[len(rs)-1]
	var late burstReading // 4 s before the end: the backlog is past the bound by then
	for _, r := range rs {
		if last.at.Sub(r.at) <= 4*time.Second {
			late = r
			break
		}
	}
	t.Logf("stored %.0f over the burst, %.0f in its last 4 s; accepted %.0f", last.stored-first.stored, last.stored-late.stored, last.accepted-first.accepted)
	if last.stored-late.stored == 0 {
		t.Errorf("the pipeline stored nothing in the last 4 s of a 10 s burst with the rule's bound at %v: starved", bound)
	}
	n.drainWithin(3 * time.Minute)
	if r := readBurst(t, n); r.stored < float64(len(acked)) {
		t.Errorf("stored %.0f of %d accepted", r.stored, len(acked))
	}
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
