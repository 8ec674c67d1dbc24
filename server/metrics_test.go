package server

import (
	"bytes"
	"os"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"tandem/metrics"
	"tandem/version"
)

// TestMetricsScrape scrapes a real node's /metrics after some traffic and
// parses the whole exposition with Prometheus's own parser, as a Prometheus
// server would: one bad line anywhere fails the scrape.
func TestMetricsScrape(t *testing.T) {
	n := startNode(t, "", nil)
	good := `{"type":"track","userId":"u1","event":"Signed Up","messageId":"m-1"}`
	bad := `{"type":"track","userId":"u1","messageId":"m-2"}` // no event name: quarantined
	r := n.do("POST", "/v1/batch", "basic:"+n.writeKey, []byte(`{"batch":[`+good+`,`+bad+`]}`), nil)
	if r.status != 200 || !strings.Contains(string(r.body), "quarantined") {
		t.Fatalf("batch: %d %s", r.status, r.body)
	}
	n.do("POST", "/v1/track", "basic:nope", []byte(good), nil) // a 401 child
	n.drain()
	// No label of tandem's own carries outside text today; a metric on the
	// node's registry stands in for the next one that will, with the three
	// characters the format escapes and a tab, which it must not.
	odd := "a \"quoted\" back\\slash,\nnew line\tand tab"
	n.srv.Metrics.NewCounterVec("test_escaping_total", "Label values that need escaping.", "value").Add(1, odd)

	resp := n.do("GET", "/metrics", "", nil, map[string]string{"Accept-Encoding": "identity"})
	if resp.status != 200 {
		t.Fatalf("/metrics: %d %s", resp.status, resp.body)
	}
	if ct := resp.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("Content-Type %q", ct)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(resp.body))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v\n%s", err, resp.body)
	}

	one := func(name string) *dto.Metric {
		t.Helper()
		mf := mfs[name]
		if mf == nil || len(mf.GetMetric()) == 0 {
			t.Fatalf("/metrics has no %s", name)
		}
		return mf.GetMetric()[0]
	}
	if v := one("go_goroutines").GetGauge().GetValue(); v < 1 {
		t.Errorf("go_goroutines = %v", v)
	}
	if runtime.GOOS == "linux" {
		if v := one("process_resident_memory_bytes").GetGauge().GetValue(); v <= 0 {
			t.Errorf("process_resident_memory_bytes = %v", v)
		}
	}
	bi := one("tandem_build_info")
	if l := labelMap(bi); l["version"] != version.Version || l["goversion"] != runtime.Version() || bi.GetGauge().GetValue() != 1 {
		t.Errorf("tandem_build_info %v = %v", l, bi.GetGauge().GetValue())
	}
	if l := labelMap(one("test_escaping_total")); l["value"] != odd {
		t.Errorf("label value came back as %q, want %q", l["value"], odd)
	}

	// The traffic above, as the counters tell it.
	series := map[string]float64{}
	for name, mf := range mfs {
		if !strings.HasPrefix(name, "tandem_") {
			continue
		}
		if strings.TrimSpace(mf.GetHelp()) == "" {
			t.Errorf("%s has no help text", name)
		}
		for _, m := range mf.GetMetric() {
			series[seriesKey(name, m)] = m.GetCounter().GetValue() + m.GetGauge().GetValue() + float64(m.GetHistogram().GetSampleCount())
		}
	}
	for key, want := range map[string]float64{
		`tandem_collect_requests_total{endpoint="batch",status="200"}`:       1,
		`tandem_collect_requests_total{endpoint="track",status="401"}`:       1,
		`tandem_events_accepted_total{source="` + n.defaultSourceID() + `"}`: 1,
		`tandem_pipeline_events_stored_total`:                                1,
		`tandem_log_records_total{result="ok"}`:                              1,
		`tandem_ready`:                                                       1,
	} {
		if got, ok := series[key]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", key, got, ok, want)
		}
	}
	var quarantined float64
	for _, m := range mfs["tandem_events_quarantined_total"].GetMetric() {
		quarantined += m.GetCounter().GetValue()
	}
	if quarantined != 1 {
		t.Errorf("tandem_events_quarantined_total sums to %v, want 1", quarantined)
	}
	if h := one("tandem_log_append_seconds").GetHistogram(); h.GetSampleCount() < 1 || len(h.GetBucket()) != len(metrics.DefBuckets)+1 {
		t.Errorf("tandem_log_append_seconds: %d observations in %d buckets", h.GetSampleCount(), len(h.GetBucket()))
	}
}

func labelMap(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, lp := range m.GetLabel() {
		out[lp.GetName()] = lp.GetValue()
	}
	return out
}

func seriesKey(name string, m *dto.Metric) string {
	if len(m.GetLabel()) == 0 {
		return name
	}
	var parts []string
	for _, lp := range m.GetLabel() {
		parts = append(parts, lp.GetName()+`="`+lp.GetValue()+`"`)
	}
	sort.Strings(parts)
	return name + "{" + strings.Join(parts, ",") + "}"
}

// defaultSourceID is the id of the bootstrap source, the one n.writeKey
// belongs to.
func (n *node) defaultSourceID() string {
	n.t.Helper()
	r := n.admin("GET", "/api/v1/sources", nil)
	if r.status != 200 {
		n.t.Fatalf("GET sources: %d %s", r.status, r.body)
	}
	items, _ := r.json(n.t)["items"].([]any)
	for _, it := range items {
		if s, _ := it.(map[string]any); s["name"] == "default" {
			id, _ := s["id"].(string)
			return id
		}
	}
	n.t.Fatalf("no default source in %s", r.body)
	return ""
}

// TestMetricsDocumented holds docs/operations.md to the metrics a node
// registers: every tandem_* metric has a row in the metrics table with its
// type and labels, every histogram a row in the buckets table with its
// bounds, and no row names a metric that does not exist.
func TestMetricsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		labels []string
		cells  []string
	}
	rows := map[string][]row{} // by metric name
	for _, line := range strings.Split(string(doc), "\n") {
		if !strings.HasPrefix(line, "| `tandem_") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "| "), " | ")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		name, labels, _ := strings.Cut(strings.Trim(cells[0], "`"), "{")
		var ls []string
		if labels != "" {
			ls = strings.Split(strings.TrimSuffix(labels, "}"), ",")
			sort.Strings(ls)
		}
		rows[name] = append(rows[name], row{labels: ls, cells: cells})
	}

	n := startNode(t, "", nil)
	registered := map[string]bool{}
	for _, f := range n.srv.Metrics.Families() {
		if !strings.HasPrefix(f.Name, "tandem_") {
			continue
		}
		registered[f.Name] = true
		var typed, bucketed bool
		for _, r := range rows[f.Name] {
			if len(r.cells) < 2 {
				continue
			}
			switch r.cells[1] {
			case f.Type:
				typed = true
				if !slices.Equal(r.labels, f.Labels) {
					t.Errorf("docs/operations.md gives %s the labels %v; it has %v", f.Name, r.labels, f.Labels)
				}
			case metrics.FormatBuckets(f.Bounds):
				bucketed = true
			}
		}
		if !typed {
			t.Errorf("docs/operations.md has no row | `%s…` | %s | … for it", f.Name, f.Type)
		}
		if f.Type == "histogram" && !bucketed {
			t.Errorf("docs/operations.md has no row | `%s` | %s | … giving its buckets", f.Name, metrics.FormatBuckets(f.Bounds))
		}
	}
	for name := range rows {
		if !registered[name] {
			t.Errorf("docs/operations.md documents %s, which a node does not register", name)
		}
	}
}
