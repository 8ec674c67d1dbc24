package metrics

import (
	"strings"
	"testing"
)

func TestExposition(t *testing.T) {
	r := NewRegistry()
	c := r.NewCounterVec("tandem_requests_total", "Requests.", "endpoint", "code")
	c.Add(2, "/v1/track", "200")
	c.Add(1, "/v1/track", "400")
	r.NewGaugeFunc("tandem_lag", "Lag.", func() float64 { return 7 })
	h := r.NewHistogram("tandem_fsync_seconds", "Fsync.", []float64{0.001, 0.01})
	h.Observe(0.0005)
	h.Observe(0.005)
	h.Observe(1)
	var b strings.Builder
	r.Write(&b)
	out := b.String()
	for _, want := range []string{
		`tandem_requests_total{endpoint="/v1/track",code="200"} 2`,
		`tandem_requests_total{endpoint="/v1/track",code="400"} 1`,
		"# TYPE tandem_lag gauge\ntandem_lag 7\n",
		`tandem_fsync_seconds_bucket{le="0.001"} 1`,
		`tandem_fsync_seconds_bucket{le="0.01"} 2`,
		`tandem_fsync_seconds_bucket{le="+Inf"} 3`,
		"tandem_fsync_seconds_count 3",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("exposition lacks %q:\n%s", want, out)
		}
	}
}

func TestDuplicatePanics(t *testing.T) {
	r := NewRegistry()
	r.NewCounter("x", "x")
	defer func() {
		if recover() == nil {
			t.Fatal("registering a name twice did not panic")
		}
	}()
	r.NewCounter("x", "x")
}
