package metrics

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"reflect"
	"runtime"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// parse reads a whole text exposition with Prometheus's own parser, in the
// classic (not UTF-8) name rules that every scraper accepts.
func parse(t *testing.T, text []byte) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(text))
	if err != nil {
		t.Fatalf("exposition does not parse: %v\n%s", err, text)
	}
	return mfs
}

func labels(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, lp := range m.GetLabel() {
		out[lp.GetName()] = lp.GetValue()
	}
	return out
}

func TestExposition(t *testing.T) {
	r := NewRegistry()
	c := r.NewCounterVec("tandem_requests_total", "Requests.", "endpoint", "code")
	c.Add(2, "/v1/track", "200")
	c.Add(1, "/v1/track", "400")
	// The format escapes quote, backslash and newline, and nothing else: a
	// tab goes out as is (Go's %q would write \t, which scrapers refuse).
	odd := "say \"hi\" \\ then\nbreak }\tand é"
	c.Add(5, odd, "500")
	r.NewGaugeFunc("tandem_lag", "Lag.", func() float64 { return 7 })
	r.NewInfo("tandem_build_info", "Build.", map[string]string{"version": "v1.2.3", "goversion": "go1.x"})
	h := r.NewHistogram("tandem_fsync_seconds", "Fsync.", []float64{0.001, 0.01})
	h.Observe(0.0005)
	h.Observe(0.005)
	h.Observe(1)

	var b bytes.Buffer
	if err := r.Write(&b); err != nil {
		t.Fatal(err)
	}
	mfs := parse(t, b.Bytes())

	req := mfs["tandem_requests_total"]
	if req.GetType() != dto.MetricType_COUNTER || req.GetHelp() != "Requests." {
		t.Errorf("tandem_requests_total: type %v help %q", req.GetType(), req.GetHelp())
	}
	got := map[[2]string]float64{}
	for _, m := range req.GetMetric() {
		l := labels(m)
		got[[2]string{l["endpoint"], l["code"]}] = m.GetCounter().GetValue()
	}
	want := map[[2]string]float64{{"/v1/track", "200"}: 2, {"/v1/track", "400"}: 1, {odd, "500"}: 5}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("counter series %v, want %v", got, want)
	}
	if v := c.Value(odd, "500"); v != 5 {
		t.Errorf("Value = %d, want 5", v)
	}

	if g := mfs["tandem_lag"]; g.GetType() != dto.MetricType_GAUGE || g.GetMetric()[0].GetGauge().GetValue() != 7 {
		t.Errorf("tandem_lag = %v", g)
	}
	bi := mfs["tandem_build_info"].GetMetric()[0]
	if l := labels(bi); l["version"] != "v1.2.3" || l["goversion"] != "go1.x" || bi.GetGauge().GetValue() != 1 {
		t.Errorf("tandem_build_info = %v", bi)
	}

	hist := mfs["tandem_fsync_seconds"].GetMetric()[0].GetHistogram()
	var cum []uint64
	for _, bk := range hist.GetBucket() {
		cum = append(cum, bk.GetCumulativeCount())
	}
	if !reflect.DeepEqual(cum, []uint64{1, 2, 3}) || hist.GetSampleCount() != 3 || hist.GetSampleSum() != 1.0055 {
		t.Errorf("histogram buckets %v count %d sum %v", cum, hist.GetSampleCount(), hist.GetSampleSum())
	}
}

func TestHandler(t *testing.T) {
	r := NewRegistry()
	r.NewCounter("tandem_things_total", "Things.").Add(3)
	r.AddRuntime()
	srv := httptest.NewServer(r.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("Content-Type %q", ct)
	}
	var b bytes.Buffer
	if _, err := b.ReadFrom(resp.Body); err != nil {
		t.Fatal(err)
	}
	mfs := parse(t, b.Bytes())
	if v := mfs["tandem_things_total"].GetMetric()[0].GetCounter().GetValue(); v != 3 {
		t.Errorf("tandem_things_total = %v", v)
	}
	if mfs["go_goroutines"].GetMetric()[0].GetGauge().GetValue() < 1 {
		t.Error("go_goroutines missing or zero")
	}
	if runtime.GOOS == "linux" && mfs["process_resident_memory_bytes"].GetMetric()[0].GetGauge().GetValue() <= 0 {
		t.Error("process_resident_memory_bytes missing or zero")
	}
}

func TestFamilies(t *testing.T) {
	r := NewRegistry()
	r.NewCounterVec("b_total", "B.", "z", "a")
	r.NewHistogram("a_seconds", "A.", []float64{1, 2})
	r.AddRuntime()
	want := []Family{
		{Name: "a_seconds", Type: "histogram", Help: "A.", Bounds: []float64{1, 2}},
		{Name: "b_total", Type: "counter", Help: "B.", Labels: []string{"a", "z"}},
	}
	if got := r.Families(); !reflect.DeepEqual(got, want) {
		t.Errorf("Families() = %+v, want %+v", got, want)
	}
}

func TestInvalidUTF8LabelDoesNotPanic(t *testing.T) {
	r := NewRegistry()
	c := r.NewCounterVec("x_total", "X.", "v")
	c.Add(1, "bad\xffbyte")
	var b bytes.Buffer
	if err := r.Write(&b); err != nil {
		t.Fatal(err)
	}
	parse(t, b.Bytes())
}

func TestMisuse(t *testing.T) {
	for name, f := range map[string]func(r *Registry){
		"duplicate name": func(r *Registry) {
			r.NewCounter("x", "x")
			r.NewCounter("x", "x")
		},
		"wrong label count": func(r *Registry) {
			r.NewCounterVec("y", "y", "a", "b").Add(1, "only one")
		},
		"unsorted buckets": func(r *Registry) {
			r.NewHistogram("z", "z", []float64{2, 1})
		},
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("did not panic")
				}
			}()
			f(NewRegistry())
		})
	}
}
