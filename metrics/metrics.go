// Package metrics is tandem's registry of counters, gauges and histograms,
// served at /metrics in the Prometheus exposition format.
//
// It is a thin layer over github.com/prometheus/client_golang: each Registry
// owns its own prometheus.Registry (never the process-wide default one), so
// two nodes in one process, as in tests and the bench, keep their numbers
// apart. The layer keeps the few shapes tandem uses: counters of whole
// things, gauges read at scrape time, histograms with buckets the caller
// chooses, and an info metric for the build. It also remembers what was
// registered (Families), which lets a test hold docs/operations.md to the
// metrics a node really exposes.
package metrics

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

// Registry holds metrics and serves them.
type Registry struct {
	reg *prometheus.Registry

	mu       sync.Mutex
	families []Family
}

// Family describes one metric registered through this package: what the
// exposition's HELP and TYPE lines say, and its label names.
type Family struct {
	Name   string
	Type   string // counter, gauge or histogram
	Help   string
	Labels []string  // label names, sorted
	Bounds []float64 // a histogram's bucket upper bounds, without +Inf
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{reg: prometheus.NewRegistry()} }

// register adds c, panicking on a second metric of the same name as
// prometheus.MustRegister does: that is a programming error.
func (r *Registry) register(c prometheus.Collector, f Family) {
	r.reg.MustRegister(c)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.families = append(r.families, f)
}

// Families lists the metrics registered through this package's constructors,
// by name. The Go and process collectors (AddRuntime) are not in it.
func (r *Registry) Families() []Family {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := slices.Clone(r.families)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// AddRuntime registers the standard Go runtime collector (go_goroutines,
// go_memstats_*, go_gc_duration_seconds, …) and the process collector
// (process_resident_memory_bytes, process_cpu_seconds_total,
// process_open_fds, …). A server calls it once on the registry it serves;
// packages' private registries leave it out.
func (r *Registry) AddRuntime() {
	r.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
}

// Gather implements prometheus.Gatherer.
func (r *Registry) Gather() ([]*dto.MetricFamily, error) { return r.reg.Gather() }

// Write writes every metric in the Prometheus text format.
func (r *Registry) Write(w io.Writer) error {
	mfs, err := r.reg.Gather()
	if err != nil {
		return err
	}
	enc := expfmt.NewEncoder(w, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			return err
		}
	}
	return nil
}

// Handler serves the registry in the text format (gzip'd when the scraper
// asks). A metric that fails to collect makes the scrape a 500 naming it,
// so a broken metric shows instead of silently going missing.
func (r *Registry) Handler() http.Handler {
	return promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{})
}

// sorted returns a sorted copy.
func sorted(s []string) []string {
	out := slices.Clone(s)
	sort.Strings(out)
	return out
}

// CounterVec is a counter with labels.
type CounterVec struct {
	name string
	v    *prometheus.CounterVec
}

// NewCounterVec registers a counter with the given label names.
func (r *Registry) NewCounterVec(name, help string, labels ...string) *CounterVec {
	v := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	r.register(v, Family{Name: name, Type: "counter", Help: help, Labels: sorted(labels)})
	return &CounterVec{name: name, v: v}
}

// Add adds n to the counter with the given label values, which must be as
// many as the label names (else it panics).
func (c *CounterVec) Add(n uint64, labelValues ...string) {
	c.with(labelValues).Add(float64(n))
}

// Value returns the count for the label values.
func (c *CounterVec) Value(labelValues ...string) uint64 {
	return counterValue(c.with(labelValues))
}

func (c *CounterVec) with(lv []string) prometheus.Counter {
	for i, v := range lv {
		if !utf8.ValidString(v) {
			// The exposition format is UTF-8; a stray byte in a value
			// must not turn counting into a panic.
			lv = slices.Clone(lv)
			lv[i] = strings.ToValidUTF8(v, "\uFFFD")
		}
	}
	m, err := c.v.GetMetricWithLabelValues(lv...)
	if err != nil {
		panic(fmt.Sprintf("metrics: %s: %v", c.name, err))
	}
	return m
}

// Counter is a counter without labels.
type Counter struct{ c prometheus.Counter }

// NewCounter registers a counter without labels.
func (r *Registry) NewCounter(name, help string) *Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	r.register(c, Family{Name: name, Type: "counter", Help: help})
	return &Counter{c: c}
}

// Add adds n.
func (c *Counter) Add(n uint64) { c.c.Add(float64(n)) }

// Value returns the current count.
func (c *Counter) Value() uint64 { return counterValue(c.c) }

func counterValue(c prometheus.Counter) uint64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic("metrics: reading a counter: " + err.Error())
	}
	return uint64(m.GetCounter().GetValue())
}

// NewGaugeFunc registers a gauge computed by f at scrape time. f may run
// concurrently with itself and with other metrics' collection.
func (r *Registry) NewGaugeFunc(name, help string, f func() float64) {
	g := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	r.register(g, Family{Name: name, Type: "gauge", Help: help})
}

// NewInfo registers a gauge that is always 1 and carries its information in
// constant labels, like tandem_build_info{version="…"}.
func (r *Registry) NewInfo(name, help string, labels map[string]string) {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: labels})
	g.Set(1)
	names := make([]string, 0, len(labels))
	for k := range labels {
		names = append(names, k)
	}
	r.register(g, Family{Name: name, Type: "gauge", Help: help, Labels: sorted(names)})
}

// DefBuckets are upper bounds in seconds from 100µs to 10s, roughly three
// per decade. The bottom resolves one local fsync on fast storage (a few
// hundred µs); the top is far past what a healthy log append or pipeline
// batch takes, so anything in +Inf is an outage rather than a slow moment.
// docs/operations.md lists the buckets of each histogram and why.
var DefBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// Histogram counts observations into fixed buckets.
type Histogram struct{ h prometheus.Histogram }

// NewHistogram registers a histogram with the given upper bounds, which must
// be increasing; +Inf is implied.
func (r *Registry) NewHistogram(name, help string, bounds []float64) *Histogram {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, Buckets: slices.Clone(bounds)})
	r.register(h, Family{Name: name, Type: "histogram", Help: help, Bounds: slices.Clone(bounds)})
	return &Histogram{h: h}
}

// Observe records one value.
func (h *Histogram) Observe(v float64) { h.h.Observe(v) }

// FormatBuckets renders bucket bounds as docs/operations.md writes them:
// "0.0001, 0.00025, 0.0005, …, 10".
func FormatBuckets(bounds []float64) string {
	parts := make([]string, len(bounds))
	for i, b := range bounds {
		parts[i] = fmt.Sprint(b)
	}
	return strings.Join(parts, ", ")
}
