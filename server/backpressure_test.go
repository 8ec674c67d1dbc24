package server

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"tandem/config"
	"tandem/pipeline"
)

// readyPipeline returns the pipeline part of a 200 /readyz.
func readyPipeline(t *testing.T, n *node) map[string]any {
	t.Helper()
	r := n.do("GET", "/readyz", "", nil, nil)
	if r.status != 200 {
		t.Fatalf("readyz: %d %s", r.status, r.body)
	}
	p, _ := r.json(t)["pipeline"].(map[string]any)
	if p == nil {
		t.Fatalf("readyz has no pipeline details: %s", r.body)
	}
	return p
}

// waitLag waits until /readyz reports the oldest unprocessed event older
// than d, and returns its pipeline details.
func waitLag(t *testing.T, n *node, d time.Duration) map[string]any {
	t.Helper()
	deadline := time.Now().Add(d + 10*time.Second)
	for {
		p := readyPipeline(t, n)
		if s, _ := p["lagSeconds"].(float64); s > d.Seconds() {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("lag never passed %v: %v", d, p)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func track(n *node, id string) response {
	return n.do("POST", "/v1/track", "basic:"+n.writeKey,
		[]byte(`{"userId":"lag-user","event":"Viewed","messageId":"`+id+`"}`), nil)
}

// By default a node keeps accepting however far processing is behind (the
// log is durable), and says how far behind in /readyz and /metrics.
func TestLaggingPipelineKeepsAccepting(t *testing.T) {
	n := startNode(t, "", func(c *config.Config) { c.Pipeline = false })
	if r := track(n, "k-1"); r.status != 200 {
		t.Fatalf("track: %d %s", r.status, r.body)
	}
	p := waitLag(t, n, 1500*time.Millisecond)
	if p["lagRecords"] != float64(1) || p["oldestUnprocessed"] == nil || p["overloaded"] != false {
		t.Errorf("readyz pipeline = %v, want 1 record, an oldest time, not overloaded", p)
	}
	if r := track(n, "k-2"); r.status != 200 {
		t.Fatalf("track while lagging, no bound: %d %s", r.status, r.body)
	}
	m := n.do("GET", "/metrics", "", nil, nil)
	for _, name := range []string{"tandem_pipeline_lag_seconds", "tandem_pipeline_oldest_unprocessed_timestamp_seconds"} {
		v, ok := scrapeValue(string(m.body), name)
		if !ok || v <= 1 {
			t.Errorf("%s = %v (found %v), want > 1", name, v, ok)
		}
	}
}

// With --max-pipeline-lag, collection answers 503 overloaded with
// Retry-After while the oldest unprocessed event is older than the bound,
// /readyz stays 200, and collection resumes once the pipeline catches up.
func TestMaxPipelineLagRefusesThenRecovers(t *testing.T) {
	const bound = time.Second
	n := startNode(t, "", func(c *config.Config) { c.Pipeline = false; c.MaxPipelineLag = bound })
	if r := track(n, "b-1"); r.status != 200 {
		t.Fatalf("track under the bound: %d %s", r.status, r.body)
	}
	waitLag(t, n, bound+500*time.Millisecond)
	r := track(n, "b-2")
	if r.status != 503 {
		t.Fatalf("track over the bound: %d %s, want 503", r.status, r.body)
	}
	e, _ := r.json(t)["error"].(map[string]any)
	if e["code"] != "overloaded" || e["message"] == "" {
		t.Errorf("body %s, want error code overloaded with a message", r.body)
	}
	if s, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || s < 1 || s > 30 {
		t.Errorf("Retry-After %q, want 1..30 seconds", r.header.Get("Retry-After"))
	}
	if p := readyPipeline(t, n); p["overloaded"] != true || p["maxLagSeconds"] != bound.Seconds() {
		t.Errorf("readyz pipeline = %v, want overloaded with maxLagSeconds 1", p)
	}

	// A pipeline (this node's stores, run here) works off the backlog.
	pl, err := pipeline.New(context.Background(), pipeline.Options{Log: n.srv.Log, Events: n.srv.Events,
		Quarantine: n.srv.Quarantine, Identity: n.srv.Identity})
	if err != nil {
		t.Fatal(err)
	}
	if err := pl.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		r = track(n, "b-3")
		if r.status == 200 {
			break
		}
		if r.status != 503 || time.Now().After(deadline) {
			t.Fatalf("track after the pipeline caught up: %d %s", r.status, r.body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if evs := n.events("profile=lag-user"); len(evs) != 1 {
		t.Errorf("%d events stored, want 1 (b-1; b-2 was refused)", len(evs))
	}
}

// scrapeValue reads an unlabelled sample from a text exposition.
func scrapeValue(text, name string) (float64, bool) {
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f, err == nil
		}
	}
	return 0, false
}
