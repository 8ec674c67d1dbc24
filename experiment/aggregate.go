package experiment

import (
	"context"
	"errors"
	"math"
	"strconv"
	"strings"
	"time"

	"tandem/analytics"
	"tandem/experiment/stats"
)

// Spec is what an [Aggregator] sums: an experiment's exposures and
// metrics over the event store, with the semantics of the package doc.
type Spec struct {
	Key                                              string
	ExposureEvent, ExperimentProperty, VariationProp string
	Variations                                       []string
	From, End                                        time.Time // exposures at From <= t < End; metric events before End
	Metrics                                          []MetricSpec
}

// MetricSpec is one metric of a [Spec].
type MetricSpec struct {
	Kind, Event, Property string
	Window                time.Duration // 0: until End
	Lookback              time.Duration // the pre-exposure period for CUPED
}

// SpecOf is the Spec of e at now.
func SpecOf(e *Experiment, now time.Time) Spec {
	s := Spec{Key: e.Key, ExposureEvent: e.ExposureEvent, ExperimentProperty: e.ExperimentProperty,
		VariationProp: e.VariationProperty, From: e.From, End: e.End(now)}
	for _, v := range e.Variations {
		s.Variations = append(s.Variations, v.Key)
	}
	for _, m := range e.Metrics {
		s.Metrics = append(s.Metrics, MetricSpec{Kind: m.Kind, Event: m.Event, Property: m.Property, Window: m.Window.D, Lookback: m.Lookback()})
	}
	return s
}

// Sums are an experiment's per-variation sums: what the statistics need.
type Sums struct {
	// Units[i] is the number of profiles analysed in variation i (first
	// exposed to it and not excluded).
	Units []int64
	// Metrics[j][i] are metric j's sums over variation i's units: y the
	// metric's value, x its pre-exposure value.
	Metrics [][]stats.Moments
	// Excluded counts profiles exposed to more than one variation.
	Excluded int64
}

func newSums(vars, metrics int) *Sums {
	s := &Sums{Units: make([]int64, vars), Metrics: make([][]stats.Moments, metrics)}
	for j := range s.Metrics {
		s.Metrics[j] = make([]stats.Moments, vars)
	}
	return s
}

// Aggregator computes an experiment's [Sums] from stored events. An event
// store offers a native one through [Provider]; [ScanAggregator] computes
// them in Go from any analytics.Source.
type Aggregator interface {
	Aggregate(ctx context.Context, s Spec) (*Sums, error)
}

// Provider is an event store that aggregates experiments natively
// (eventstore/duckdb, in one SQL query).
type Provider interface {
	Experiments() Aggregator
}

// ScanAggregator computes Sums in Go from a stream of each profile's
// events (an analytics.Source: the analytics backend of any event store).
// It reads the events once per metric; it is the reference the SQL path
// is checked against, and the path for stores without a native one.
type ScanAggregator struct {
	Src analytics.Source
}

// ErrTooLarge is returned for a spec with more conditions than a scan
// takes.
var ErrTooLarge = errors.New("experiment: too many variations and metrics for one scan")

// Aggregate implements [Aggregator].
func (a ScanAggregator) Aggregate(ctx context.Context, s Spec) (*Sums, error) {
	k := len(s.Variations)
	if k+2 > 62 {
		return nil, ErrTooLarge
	}
	out := newSums(k, len(s.Metrics))
	var lookback time.Duration
	for _, m := range s.Metrics {
		lookback = max(lookback, m.Lookback)
	}
	conds := make([]analytics.Condition, 0, k+2)
	for _, v := range s.Variations {
		conds = append(conds, analytics.Condition{Event: s.ExposureEvent, Where: []analytics.Filter{
			{Property: s.ExperimentProperty, Op: "eq", Value: s.Key},
			{Property: s.VariationProp, Op: "eq", Value: v},
		}})
	}
	m0 := s.Metrics[0]
	for j, m := range s.Metrics {
		spec := analytics.ScanSpec{
			Range:      analytics.Range{From: analytics.At(s.From.Add(-lookback)), To: analytics.At(s.End)},
			Conditions: append(conds[:k:k], analytics.Condition{Event: m0.Event}, analytics.Condition{Event: m.Event}),
			Property:   m.Property,
		}
		first := j == 0
		err := a.Src.Scan(ctx, spec, func(seq *analytics.Sequence) error {
			u, ok := unitOf(seq.Points, k, s, m0)
			if !ok {
				return nil
			}
			if u.contaminated {
				if first {
					out.Excluded++
				}
				return nil
			}
			if first {
				out.Units[u.v]++
			}
			y, x := metricValues(seq.Points, uint64(1)<<(k+1), u.t0, s.End.UnixMicro(), m)
			out.Metrics[j][u.v].Unit(y, x)
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

type unit struct {
	v            int
	t0           int64
	contaminated bool
}

// unitOf applies the exposure rules to one profile's points (bit i:
// exposure to variation i; bit k: the first metric's event).
func unitOf(points []analytics.Point, k int, s Spec, m0 MetricSpec) (unit, bool) {
	from, end := s.From.UnixMicro(), s.End.UnixMicro()
	vmask := uint64(1)<<k - 1
	u := unit{v: -1}
	for _, p := range points {
		if p.T < from || p.T >= end || p.Mask&vmask == 0 {
			continue
		}
		if u.v < 0 || p.T < u.t0 {
			u.v, u.t0 = lowBit(p.Mask&vmask), p.T
		}
	}
	if u.v < 0 {
		return u, false
	}
	// The first conversion on the first metric: exposures from then on
	// do not count.
	conv := int64(math.MaxInt64)
	wEnd := windowEnd(u.t0, m0.Window, end)
	for _, p := range points {
		if p.Mask&(1<<k) != 0 && p.T >= u.t0 && p.T < wEnd && p.T < conv {
			conv = p.T
		}
	}
	for _, p := range points {
		if p.T >= from && p.T < end && p.T < conv && p.Mask&vmask&^(1<<u.v) != 0 {
			u.contaminated = true
		}
	}
	return u, true
}

func lowBit(m uint64) int {
	for i := 0; i < 64; i++ {
		if m&(1<<i) != 0 {
			return i
		}
	}
	return -1
}

func windowEnd(t0 int64, w time.Duration, end int64) int64 {
	if w <= 0 {
		return end
	}
	return min(end, t0+w.Microseconds())
}

// metricValues are a unit's value y after exposure and x before it, of
// the events with bit.
func metricValues(points []analytics.Point, bit uint64, t0, end int64, m MetricSpec) (y, x float64) {
	wEnd := windowEnd(t0, m.Window, end)
	pre := t0 - m.Lookback.Microseconds()
	for _, p := range points {
		if p.Mask&bit == 0 {
			continue
		}
		var v float64
		switch m.Kind {
		case Conversion, Count:
			v = 1
		case Revenue:
			v = propNumber(p.Prop)
		}
		switch {
		case p.T >= t0 && p.T < wEnd:
			y = add(m.Kind, y, v)
		case p.T < t0 && p.T >= pre:
			x = add(m.Kind, x, v)
		}
	}
	return y, x
}

func add(kind string, acc, v float64) float64 {
	if kind == Conversion {
		return 1
	}
	return acc + v
}

// propNumber is a revenue property's value: a JSON number or a string
// holding one; anything else is 0.
func propNumber(p *string) float64 {
	if p == nil {
		return 0
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(*p), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0
	}
	return f
}

// AggregatorFor is the aggregator for an event store: its own when it is
// a [Provider] (DuckDB: SQL), else a [ScanAggregator] over its analytics
// backend when that streams profiles (ClickHouse: the Go path), else nil.
func AggregatorFor(store any) Aggregator {
	if p, ok := store.(Provider); ok {
		return p.Experiments()
	}
	if p, ok := store.(analytics.Provider); ok {
		if src, ok := p.Analytics().(analytics.Source); ok {
			return ScanAggregator{Src: src}
		}
	}
	return nil
}
