package metrics

import (
	"fmt"
	"slices"

	"github.com/prometheus/client_golang/prometheus"
)

// HistogramVec is a histogram with labels.
type HistogramVec struct {
	name string
	v    *prometheus.HistogramVec
}

// NewHistogramVec registers a histogram with the given bucket upper bounds
// (increasing; +Inf is implied) and label names.
func (r *Registry) NewHistogramVec(name, help string, bounds []float64, labels ...string) *HistogramVec {
	v := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: slices.Clone(bounds)}, labels)
	r.register(v, Family{Name: name, Type: "histogram", Help: help, Labels: sorted(labels), Bounds: slices.Clone(bounds)})
	return &HistogramVec{name: name, v: v}
}

// Observe records v for the given label values.
func (h *HistogramVec) Observe(v float64, labelValues ...string) {
	m, err := h.v.GetMetricWithLabelValues(labelValues...)
	if err != nil {
		panic(fmt.Sprintf("metrics: %s: %v", h.name, err))
	}
	m.Observe(v)
}

// Delete removes the series with the given label values (a thing that no
// longer exists, such as a deleted destination).
func (h *HistogramVec) Delete(labelValues ...string) { h.v.DeleteLabelValues(labelValues...) }

// GaugeVec is a gauge with labels, set by its owner.
type GaugeVec struct {
	name string
	v    *prometheus.GaugeVec
}

// NewGaugeVec registers a gauge with the given label names.
func (r *Registry) NewGaugeVec(name, help string, labels ...string) *GaugeVec {
	v := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
	r.register(v, Family{Name: name, Type: "gauge", Help: help, Labels: sorted(labels)})
	return &GaugeVec{name: name, v: v}
}

// Set sets the gauge with the given label values.
func (g *GaugeVec) Set(v float64, labelValues ...string) {
	m, err := g.v.GetMetricWithLabelValues(labelValues...)
	if err != nil {
		panic(fmt.Sprintf("metrics: %s: %v", g.name, err))
	}
	m.Set(v)
}

// Delete removes the series with the given label values.
func (g *GaugeVec) Delete(labelValues ...string) { g.v.DeleteLabelValues(labelValues...) }

// DeletePartial removes every series of a CounterVec whose labels include
// the given ones, e.g. {"destination": id}.
func (c *CounterVec) DeletePartial(labels map[string]string) { c.v.DeletePartialMatch(labels) }
