// Package metrics is a small registry of counters, gauges and histograms
// exposed in the Prometheus text format at /metrics. It covers what tandem
// needs without a client library: labelled counters, gauges read on demand
// and fixed-bucket histograms.
package metrics

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Registry holds metrics and writes them out.
type Registry struct {
	mu      sync.Mutex
	metrics []metric
}

type metric interface {
	name() string
	write(w io.Writer)
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{} }

func (r *Registry) add(m metric) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, old := range r.metrics {
		if old.name() == m.name() {
			panic("metrics: duplicate metric " + m.name())
		}
	}
	r.metrics = append(r.metrics, m)
}

// Write writes every metric in the Prometheus text format.
func (r *Registry) Write(w io.Writer) {
	r.mu.Lock()
	ms := append([]metric(nil), r.metrics...)
	r.mu.Unlock()
	sort.Slice(ms, func(i, j int) bool { return ms[i].name() < ms[j].name() })
	for _, m := range ms {
		m.write(w)
	}
}

// Handler serves the registry.
func (r *Registry) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		r.Write(w)
	})
}

func header(w io.Writer, name, help, typ string) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
}

// CounterVec is a counter with labels.
type CounterVec struct {
	n, help string
	labels  []string
	mu      sync.RWMutex
	values  map[string]*atomic.Uint64
}

// NewCounterVec registers a counter with the given label names.
func (r *Registry) NewCounterVec(name, help string, labels ...string) *CounterVec {
	c := &CounterVec{n: name, help: help, labels: labels, values: map[string]*atomic.Uint64{}}
	r.add(c)
	return c
}

// NewCounter registers a counter without labels.
func (r *Registry) NewCounter(name, help string) *Counter {
	return &Counter{v: r.NewCounterVec(name, help).cell(nil)}
}

// Counter is a counter without labels.
type Counter struct{ v *atomic.Uint64 }

// Add adds n.
func (c *Counter) Add(n uint64) { c.v.Add(n) }

// Value returns the current count.
func (c *Counter) Value() uint64 { return c.v.Load() }

// Add adds n to the counter with the given label values.
func (c *CounterVec) Add(n uint64, labelValues ...string) { c.cell(labelValues).Add(n) }

// Value returns the count for the label values.
func (c *CounterVec) Value(labelValues ...string) uint64 { return c.cell(labelValues).Load() }

func (c *CounterVec) cell(lv []string) *atomic.Uint64 {
	if len(lv) != len(c.labels) {
		panic("metrics: " + c.n + ": wrong number of label values")
	}
	key := strings.Join(lv, "\xff")
	c.mu.RLock()
	v := c.values[key]
	c.mu.RUnlock()
	if v != nil {
		return v
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if v = c.values[key]; v == nil {
		v = new(atomic.Uint64)
		c.values[key] = v
	}
	return v
}

func (c *CounterVec) name() string { return c.n }

func (c *CounterVec) write(w io.Writer) {
	header(w, c.n, c.help, "counter")
	c.mu.RLock()
	keys := make([]string, 0, len(c.values))
	for k := range c.values {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "%s%s %d\n", c.n, labelString(c.labels, k), c.values[k].Load())
	}
	c.mu.RUnlock()
}

func labelString(names []string, key string) string {
	if len(names) == 0 {
		return ""
	}
	vals := strings.Split(key, "\xff")
	var b strings.Builder
	b.WriteByte('{')
	for i, n := range names {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(n)
		b.WriteString("=")
		b.WriteString(strconv.Quote(vals[i]))
	}
	b.WriteByte('}')
	return b.String()
}

// GaugeFunc is a gauge whose value is read when metrics are written.
type GaugeFunc struct {
	n, help string
	f       func() float64
}

// NewGaugeFunc registers a gauge computed by f at scrape time.
func (r *Registry) NewGaugeFunc(name, help string, f func() float64) {
	r.add(&GaugeFunc{n: name, help: help, f: f})
}

func (g *GaugeFunc) name() string { return g.n }

func (g *GaugeFunc) write(w io.Writer) {
	header(w, g.n, g.help, "gauge")
	fmt.Fprintf(w, "%s %s\n", g.n, formatFloat(g.f()))
}

// Histogram counts observations into fixed buckets.
type Histogram struct {
	n, help string
	bounds  []float64
	mu      sync.Mutex
	counts  []uint64 // len(bounds)+1, last is +Inf
	sum     float64
	count   uint64
}

// DefBuckets suit latencies in seconds from 100µs to 10s.
var DefBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// NewHistogram registers a histogram with the given upper bounds.
func (r *Registry) NewHistogram(name, help string, bounds []float64) *Histogram {
	h := &Histogram{n: name, help: help, bounds: bounds, counts: make([]uint64, len(bounds)+1)}
	r.add(h)
	return h
}

// Observe records one value.
func (h *Histogram) Observe(v float64) {
	i := sort.SearchFloat64s(h.bounds, v)
	h.mu.Lock()
	h.counts[i]++
	h.sum += v
	h.count++
	h.mu.Unlock()
}

func (h *Histogram) name() string { return h.n }

func (h *Histogram) write(w io.Writer) {
	header(w, h.n, h.help, "histogram")
	h.mu.Lock()
	defer h.mu.Unlock()
	var cum uint64
	for i, b := range h.bounds {
		cum += h.counts[i]
		fmt.Fprintf(w, "%s_bucket{le=%q} %d\n", h.n, formatFloat(b), cum)
	}
	cum += h.counts[len(h.bounds)]
	fmt.Fprintf(w, "%s_bucket{le=\"+Inf\"} %d\n%s_sum %s\n%s_count %d\n", h.n, cum, h.n, formatFloat(h.sum), h.n, h.count)
}

func formatFloat(f float64) string {
	if math.IsInf(f, 1) {
		return "+Inf"
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}
