package experiment

import (
	"context"
	"encoding/json"
	"math"
	"time"

	"tandem/experiment/stats"
)

// Num is a number in a result that may be undefined (no units, no
// spread): JSON null then.
type Num float64

// MarshalJSON writes null for NaN and infinities.
func (n Num) MarshalJSON() ([]byte, error) {
	f := float64(n)
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return []byte("null"), nil
	}
	return json.Marshal(f)
}

// Results are an experiment's results.
type Results struct {
	ID        string            `json:"id"`
	Key       string            `json:"key"`
	From      time.Time         `json:"from"`
	End       time.Time         `json:"end"`
	Control   string            `json:"control"`
	SRM       SRM               `json:"srm"`
	Exposures Exposures         `json:"exposures"`
	Metrics   []MetricResult    `json:"metrics"`
	Methods   map[string]string `json:"methods"`
}

// SRM is the sample ratio mismatch check.
type SRM struct {
	ChiSquared Num       `json:"chiSquared"`
	PValue     Num       `json:"pValue"`
	Flagged    bool      `json:"flagged"`
	Expected   []float64 `json:"expected"` // planned share of each variation, in order
	Observed   []int64   `json:"observed"`
}

// Exposures sums up who was analysed.
type Exposures struct {
	Units int64 `json:"units"`
	// Excluded are profiles exposed to more than one variation (before
	// their first conversion on the first metric).
	Excluded int64 `json:"excluded"`
}

// MetricResult is one metric's results per variation.
type MetricResult struct {
	Name      string `json:"name"`
	Kind      string `json:"kind"`
	Guardrail bool   `json:"guardrail"`
	// CUPED is the variance reduction applied (theta 0: none, for lack
	// of pre-exposure variation).
	CUPED      CUPED             `json:"cuped"`
	Variations []VariationResult `json:"variations"`
}

// CUPED reports the adjustment.
type CUPED struct {
	Theta             Num `json:"theta"`
	VarianceReduction Num `json:"varianceReduction"`
}

// VariationResult is one variation's numbers for a metric. Mean and StdDev
// are of the unadjusted metric; the lift and what follows compare with
// control after CUPED. Lift and the comparisons are null for control.
type VariationResult struct {
	Key                 string  `json:"key"`
	Units               int64   `json:"units"`
	Mean                Num     `json:"mean"`
	StdDev              Num     `json:"stddev"`
	Lift                *Lift   `json:"lift"`
	PValue              *Num    `json:"pValue"`
	ChanceToBeatControl *Num    `json:"chanceToBeatControl"`
	SequentialCI95      *[2]Num `json:"sequentialCi95"`
}

// Lift is the difference with control.
type Lift struct {
	Absolute     Num    `json:"absolute"`
	Relative     Num    `json:"relative"`
	CI95         [2]Num `json:"ci95"`
	RelativeCI95 [2]Num `json:"relativeCi95"`
}

// methods describes, in the answer, what was computed (docs/experiments.md
// has the details).
var methods = map[string]string{
	"conversion":          "two-proportion z-test, unpooled standard error; after CUPED a z-test on the adjusted values",
	"count":               "Welch's t-test (Welch–Satterthwaite degrees of freedom)",
	"revenue":             "Welch's t-test (Welch–Satterthwaite degrees of freedom)",
	"relativeCi95":        "delta method",
	"chanceToBeatControl": "conversion: Beta(1,1) prior on each rate, Beta-Binomial posterior, integrated numerically; count and revenue: flat prior on each mean, normal approximation",
	"sequentialCi95":      "normal-mixture confidence sequence (mixture SPRT), mixing N(0, (0.1·σ)²), α = 0.05, valid under continuous monitoring",
	"srm":                 "chi-squared goodness of fit against the planned split; flagged when p < 0.001",
	"cuped":               "θ = cov(x, y)/var(x) pooled over all units, x the metric's value in the lookback before exposure",
}

// FromSums turns sums into results.
func FromSums(e *Experiment, end time.Time, s *Sums) *Results {
	res := &Results{ID: e.ID, Key: e.Key, From: e.From, End: end, Control: e.Control, Methods: methods}
	ci := 0
	for i, v := range e.Variations {
		if v.Key == e.Control {
			ci = i
		}
	}
	obs := make([]float64, len(s.Units))
	for i, n := range s.Units {
		obs[i] = float64(n)
		res.Exposures.Units += n
	}
	res.Exposures.Excluded = s.Excluded
	w := e.Weights()
	chi2, p := stats.SRM(obs, w)
	var wsum float64
	for _, x := range w {
		wsum += x
	}
	res.SRM = SRM{ChiSquared: Num(chi2), PValue: Num(p), Flagged: p < stats.SRMThreshold, Observed: s.Units}
	for _, x := range w {
		res.SRM.Expected = append(res.SRM.Expected, x/wsum)
	}
	for j, m := range e.Metrics {
		ms := s.Metrics[j]
		var all stats.Moments
		for _, x := range ms {
			all = all.Add(x)
		}
		theta := stats.CUPED(all)
		meanX := all.X / all.N
		mr := MetricResult{Name: m.Name, Kind: m.Kind, Guardrail: m.Guardrail, CUPED: CUPED{Theta: Num(theta), VarianceReduction: 0}}
		var rawVar, adjVar float64
		adj := make([]stats.Estimate, len(ms))
		for i := range ms {
			adj[i] = ms[i].Adjusted(theta, meanX)
			if ms[i].N >= 2 {
				rawVar += ms[i].Var() * ms[i].N
				adjVar += adj[i].Var * ms[i].N
			}
		}
		if theta != 0 && rawVar > 0 {
			mr.CUPED.VarianceReduction = Num(1 - adjVar/rawVar)
		}
		for i, v := range e.Variations {
			vr := VariationResult{Key: v.Key, Units: int64(ms[i].N), Mean: Num(ms[i].Mean()), StdDev: Num(math.Sqrt(ms[i].Var()))}
			if i != ci {
				vr.compare(m.Kind, theta, ms[ci], ms[i], adj[ci], adj[i])
			}
			mr.Variations = append(mr.Variations, vr)
		}
		res.Metrics = append(res.Metrics, mr)
	}
	return res
}

func (vr *VariationResult) compare(kind string, theta float64, c, t stats.Moments, ac, at stats.Estimate) {
	var test stats.Test
	switch {
	case kind == Conversion && theta == 0:
		test = stats.TwoProportions(c.Y, c.N, t.Y, t.N)
	case kind == Conversion:
		test = stats.Z(ac, at)
	default:
		test = stats.Welch(ac, at)
	}
	rel, relCI := stats.Relative(ac, at)
	if kind == Conversion && theta == 0 {
		// The relative interval of rates uses the binomial variances.
		rel, relCI = stats.Relative(stats.Estimate{N: c.N, Mean: c.Mean(), Var: c.Mean() * (1 - c.Mean())},
			stats.Estimate{N: t.N, Mean: t.Mean(), Var: t.Mean() * (1 - t.Mean())})
	}
	vr.Lift = &Lift{Absolute: Num(test.Diff), Relative: Num(rel), CI95: [2]Num{Num(test.CI[0]), Num(test.CI[1])},
		RelativeCI95: [2]Num{Num(relCI[0]), Num(relCI[1])}}
	p := Num(test.P)
	vr.PValue = &p
	var chance float64
	if kind == Conversion {
		chance = stats.ChanceBeta(c.Y, c.N, t.Y, t.N)
	} else {
		chance = stats.ChanceNormal(test)
	}
	if c.N == 0 || t.N == 0 {
		chance = math.NaN()
	}
	ch := Num(chance)
	vr.ChanceToBeatControl = &ch
	seq := stats.Sequential(test.Diff, test.SE, stats.MixtureVariance(ac, at))
	vr.SequentialCI95 = &[2]Num{Num(seq[0]), Num(seq[1])}
}

// Analyze computes e's results at now with agg.
func Analyze(ctx context.Context, agg Aggregator, e *Experiment, now time.Time) (*Results, error) {
	end := e.End(now)
	s, err := agg.Aggregate(ctx, SpecOf(e, now))
	if err != nil {
		return nil, err
	}
	return FromSums(e, end, s), nil
}
