package server

import (
	"slices"
	"strconv"
	"testing"
	"time"

	"tandem/config"
)

// scrapeMetric reads an unlabelled sample from the node's /metrics.
func scrapeMetric(t *testing.T, n *node, name string) float64 {
	t.Helper()
	r := n.do("GET", "/metrics", "", nil, nil)
	v, ok := scrapeValue(string(r.body), name)
	if !ok {
		t.Fatalf("/metrics has no %s", name)
	}
	return v
}

// pipelineRate saturates a node's pipeline (collection is several times
// faster) and returns the rate, in events per second, at which the node
// itself reports storing events while it has a backlog: its processing
// capacity on this machine, now. The backlog is worked off before it
// returns.
func pipelineRate(t *testing.T, n *node) float64 {
	t.Helper()
	load := startLoad(n, "cap", 4, 100, 0)
	// Wait for a backlog, so that the pipeline is busy all the time the
	// rate is measured.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if p := readyPipeline(t, n); p["lagRecords"] != nil && p["lagRecords"].(float64) > 20 {
			break
		}
		if time.Now().After(deadline) {
			load.end()
			t.Fatal("no backlog after 30s of unpaced load: collection no faster than processing?")
		}
		time.Sleep(100 * time.Millisecond)
	}
	s0, t0 := scrapeMetric(t, n, "tandem_pipeline_events_stored_total"), time.Now()
	time.Sleep(4 * time.Second)
	s1, t1 := scrapeMetric(t, n, "tandem_pipeline_events_stored_total"), time.Now()
	backlog := readyPipeline(t, n)["lagRecords"]
	load.end()
	if b, _ := backlog.(float64); b == 0 {
		t.Fatalf("the backlog emptied while the rate was measured (offered load too low)")
	}
	n.drainWithin(3 * time.Minute)
	return (s1 - s0) / t1.Sub(t0).Seconds()
}

// drainWithin is drain with a longer patience.
func (n *node) drainWithin(d time.Duration) {
	n.t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if p := readyPipeline(n.t, n); p["lagRecords"] == float64(0) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	n.t.Fatalf("pipeline did not drain in %v", d)
}

// lagSample is one /readyz reading of the pipeline's lag.
type lagSample struct {
	records float64
	seconds float64
	age     time.Duration // of the monitor's reading
}

// watchLag reads the lag every 250ms for d.
func watchLag(t *testing.T, n *node, d time.Duration) []lagSample {
	t.Helper()
	var out []lagSample
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		p := readyPipeline(t, n)
		r, _ := p["lagRecords"].(float64)
		s, _ := p["lagSeconds"].(float64)
		out = append(out, lagSample{r, s, time.Since(n.srv.Lag.Backlog().At).Round(time.Millisecond)})
		time.Sleep(250 * time.Millisecond)
	}
	return out
}

func medianSeconds(samples []lagSample) float64 {
	s := make([]float64, len(samples))
	for i, x := range samples {
		s[i] = x.seconds
	}
	slices.Sort(s)
	return s[len(s)/2]
}

func maxLag(samples []lagSample) lagSample {
	var m lagSample
	for _, s := range samples {
		m.records = max(m.records, s.records)
		m.seconds = max(m.seconds, s.seconds)
	}
	return m
}

// TestSustainedLoadLagStaysBounded is a correctness test of the
// backpressure rule, not a speed test: the rates come from the node's own
// measurement in the same run, the bounds are generous.
//
//  1. Load at half the rate the node reports processing at (sustainable
//     by its own figure) keeps the lag bounded: every reading under a few
//     seconds and a few batches' worth of records, and the lag at the end
//     no larger than near the start allows.
//  2. With --max-pipeline-lag and unpaced load far above that rate,
//     collection answers 503 overloaded with Retry-After, and the lag
//     stays near the bound instead of growing with the load.
func TestSustainedLoadLagStaysBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("sustained load: skipped with -short")
	}
	n := startNode(t, "", nil)
	rate := pipelineRate(t, n)
	t.Logf("the node processes %.0f events/s with a backlog", rate)
	if rate <= 0 {
		t.Fatalf("pipeline rate %v", rate)
	}

	// 1. Half the measured rate, paced: 4 workers × 100-event batches
	// (enough in flight for the offered rate to be reached).
	const workers, batch = 4, 100
	offered := rate / 2
	interval := time.Duration(float64(time.Second) * workers * batch / offered)
	load := startLoad(n, "steady", workers, batch, interval)
	began := time.Now()
	samples := watchLag(t, n, 20*time.Second)
	load.end()
	st := load.statuses()
	taken := float64(st[200]*batch) / time.Since(began).Seconds()
	t.Logf("steady: offered %.0f events/s (one batch every %v per worker), taken %.0f; answers %v; max lag %+v", offered, interval, taken, st, maxLag(samples))
	if st[200] == 0 || len(st) != 1 {
		t.Errorf("steady load answers %v, want only 200s", st)
	}
	// Bounded: the backlog in records stays within a few seconds' worth
	// of the offered load (a load above the node's rate would leave, after
	// 20 s at twice the rate, 10 s' worth), and so does its age: the
	// pipeline gathers for up to 500ms before writing a batch and the
	// monitor reads once a second, so a few seconds at most, most of the
	// time. The single highest age is only held to a loose bound: a
	// reading that is late on a busy machine ages with it.
	m := maxLag(samples)
	recordsPerSec := taken / batch
	if limit := 5*recordsPerSec + 10; m.records > limit {
		t.Errorf("lag reached %.0f records under a load of %.1f records/s, want ≤ %.0f; readings %v", m.records, recordsPerSec, limit, samples)
	}
	if m.seconds > 15 {
		t.Errorf("lag reached %.1fs under a sustainable load, want ≤ 15s; readings %v", m.seconds, samples)
	}
	if med := medianSeconds(samples[len(samples)/2:]); med > 5 {
		t.Errorf("median lag %.1fs over the second half of the load, want ≤ 5s; readings %v", med, samples)
	}
	n.drainWithin(time.Minute)

	// 2. The same node (same data) with a bound, under unpaced load from
	// 6 workers, above the rate.
	const bound = time.Second
	n.stop()
	n = startNode(t, n.dir, func(c *config.Config) { c.MaxPipelineLag = bound })
	load = startLoad(n, "over", 6, 100, 0)
	samples = watchLag(t, n, 15*time.Second)
	// One refused request with its headers, while still overloaded.
	r := n.do("POST", "/v1/batch", "basic:"+n.writeKey, []byte(`{"batch":[{"type":"track","userId":"x","event":"Probe","messageId":"over-probe"}]}`), nil)
	load.end()
	st = load.statuses()
	t.Logf("over: answers %v; max lag %+v", st, maxLag(samples))
	if st[503] == 0 || st[200] == 0 {
		t.Errorf("overload answers %v, want both 200s (under the bound) and 503s (over it)", st)
	}
	if r.status == 503 {
		if s, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || s < 1 || s > 30 {
			t.Errorf("503 with Retry-After %q, want 1..30", r.header.Get("Retry-After"))
		}
		if e, _ := r.json(t)["error"].(map[string]any); e["code"] != "overloaded" {
			t.Errorf("503 body %s, want code overloaded", r.body)
		}
	}
	// Collection stops taking events once the lag passes the bound, so
	// the lag is the bound plus what was accepted before the monitor
	// noticed (its 1s interval) worked off at the node's rate: with load
	// at a few times the rate, a few seconds over the bound. Unbounded,
	// 15 s of this load would leave a lag growing with every second.
	if m, limit := maxLag(samples), 3*bound+5*time.Second; m.seconds > limit.Seconds() {
		t.Errorf("lag reached %.1fs with --max-pipeline-lag %v, want bounded (≤ %v)", m.seconds, bound, limit)
	}
	n.drainWithin(3 * time.Minute)
}
