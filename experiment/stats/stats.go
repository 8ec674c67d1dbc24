// Package stats holds the statistics of experiment results: Welch's
// t-test and the two-proportion z-test with 95 % confidence intervals,
// the delta-method interval of a relative lift, the Bayesian chance to beat
// control, the sample ratio mismatch test, CUPED variance reduction and
// the always-valid (sequential) interval. Every function works on sums
// per group ([Moments]), so a store can aggregate a million units in SQL
// and hand over a few numbers.
//
// docs/experiments.md states each method and its assumptions; the tests
// compare the frequentist results with SciPy to 1e-6.
package stats

import (
	"math"

	"gonum.org/v1/gonum/stat/distuv"
)

// Moments are sums over the units of one group: their count N, the sums of
// the metric's values y and squares, and the sums of the pre-exposure
// values x (for CUPED), their squares and the cross products.
type Moments struct {
	N, Y, YY, X, XX, XY float64
}

// Add returns the sums of m and o.
func (m Moments) Add(o Moments) Moments {
	return Moments{m.N + o.N, m.Y + o.Y, m.YY + o.YY, m.X + o.X, m.XX + o.XX, m.XY + o.XY}
}

// Unit adds one unit with value y and pre-exposure value x.
func (m *Moments) Unit(y, x float64) {
	m.N++
	m.Y += y
	m.YY += y * y
	m.X += x
	m.XX += x * x
	m.XY += x * y
}

// Mean is the mean of y (NaN for no units).
func (m Moments) Mean() float64 {
	if m.N == 0 {
		return math.NaN()
	}
	return m.Y / m.N
}

// Var is the sample variance of y (denominator N-1; NaN below 2 units).
func (m Moments) Var() float64 { return sampleCov(m.N, m.Y, m.Y, m.YY) }

// VarX is the sample variance of x.
func (m Moments) VarX() float64 { return sampleCov(m.N, m.X, m.X, m.XX) }

// CovXY is the sample covariance of x and y.
func (m Moments) CovXY() float64 { return sampleCov(m.N, m.X, m.Y, m.XY) }

func sampleCov(n, sa, sb, sab float64) float64 {
	if n < 2 {
		return math.NaN()
	}
	v := (sab - sa*sb/n) / (n - 1)
	if v < 0 && sa == sb { // rounding of a variance that is 0
		v = 0
	}
	return v
}

// Estimate is a group's mean with its per-unit sample variance and its
// number of units: what the tests compare.
type Estimate struct {
	N, Mean, Var float64
}

// Estimate returns the plain (unadjusted) estimate of y.
func (m Moments) Estimate() Estimate { return Estimate{N: m.N, Mean: m.Mean(), Var: m.Var()} }

// z975 is the 97.5 % quantile of the standard normal distribution.
var z975 = distuv.UnitNormal.Quantile(0.975)

// Test is the comparison of a treatment with control.
type Test struct {
	Diff float64    // treatment mean - control mean
	SE   float64    // standard error of Diff
	Stat float64    // t or z
	DF   float64    // Welch–Satterthwaite degrees of freedom; +Inf for a z-test
	P    float64    // two-sided p-value
	CI   [2]float64 // 95 % interval of Diff
}

// Welch is Welch's unequal-variances t-test of t against c (as
// scipy.stats.ttest_ind(t, c, equal_var=False)) with the 95 % interval
// diff ± t(0.975, df)·se.
func Welch(c, t Estimate) Test {
	vc, vt := c.Var/c.N, t.Var/t.N
	se := math.Sqrt(vc + vt)
	df := (vc + vt) * (vc + vt) / (vc*vc/(c.N-1) + vt*vt/(t.N-1))
	res := Test{Diff: t.Mean - c.Mean, SE: se, DF: df}
	if !(se > 0) || math.IsNaN(df) {
		return degenerate(res)
	}
	res.Stat = res.Diff / se
	st := distuv.StudentsT{Mu: 0, Sigma: 1, Nu: df}
	res.P = 2 * st.Survival(math.Abs(res.Stat))
	q := st.Quantile(0.975)
	res.CI = [2]float64{res.Diff - q*se, res.Diff + q*se}
	return res
}

// TwoProportions is the two-proportion z-test of xt conversions in nt
// units against xc in nc, with the unpooled (Wald) standard error
// sqrt(pc(1-pc)/nc + pt(1-pt)/nt) for both the statistic and the 95 %
// interval, so the interval excludes 0 exactly when p < 0.05.
func TwoProportions(xc, nc, xt, nt float64) Test {
	pc, pt := xc/nc, xt/nt
	return Z(Estimate{N: nc, Mean: pc, Var: pc * (1 - pc)}, Estimate{N: nt, Mean: pt, Var: pt * (1 - pt)})
}

// Z is a large-sample z-test of the difference of means, with standard
// error sqrt(vc/nc + vt/nt) (the variances as given).
func Z(c, t Estimate) Test {
	se := math.Sqrt(c.Var/c.N + t.Var/t.N)
	res := Test{Diff: t.Mean - c.Mean, SE: se, DF: math.Inf(1)}
	if !(se > 0) {
		return degenerate(res)
	}
	res.Stat = res.Diff / se
	res.P = 2 * distuv.UnitNormal.Survival(math.Abs(res.Stat))
	res.CI = [2]float64{res.Diff - z975*se, res.Diff + z975*se}
	return res
}

// degenerate fills a test whose standard error is 0 or undefined: with no
// spread at all there is nothing to infer.
func degenerate(t Test) Test {
	t.Stat, t.P = math.NaN(), math.NaN()
	t.CI = [2]float64{math.NaN(), math.NaN()}
	return t
}

// Relative is the relative lift t/c - 1 with its 95 % interval by the
// delta method: var ≈ vt/(nt·mc²) + mt²·vc/(nc·mc⁴). NaN when the control
// mean is 0.
func Relative(c, t Estimate) (lift float64, ci [2]float64) {
	if c.Mean == 0 || c.N == 0 || t.N == 0 {
		return math.NaN(), [2]float64{math.NaN(), math.NaN()}
	}
	lift = t.Mean/c.Mean - 1
	v := t.Var/(t.N*c.Mean*c.Mean) + t.Mean*t.Mean*c.Var/(c.N*math.Pow(c.Mean, 4))
	se := math.Sqrt(v)
	if math.IsNaN(se) {
		return lift, [2]float64{math.NaN(), math.NaN()}
	}
	return lift, [2]float64{lift - z975*se, lift + z975*se}
}

// SRM is the sample ratio mismatch test: Pearson's chi-squared goodness
// of fit of the observed unit counts against the planned weights (any
// scale; as scipy.stats.chisquare(observed, f_exp) with the expected
// counts in the planned proportions of the observed total), with
// len(observed)-1 degrees of freedom.
func SRM(observed, weights []float64) (chi2, p float64) {
	var n, w float64
	for i := range observed {
		n += observed[i]
		w += weights[i]
	}
	if n == 0 || len(observed) < 2 {
		return 0, 1
	}
	for i, o := range observed {
		e := n * weights[i] / w
		chi2 += (o - e) * (o - e) / e
	}
	return chi2, distuv.ChiSquared{K: float64(len(observed) - 1)}.Survival(chi2)
}

// SRMThreshold is the p-value under which a sample ratio mismatch flags
// an experiment: strict, since with many units a real bug in assignment
// shows as a tiny p-value, and a flag must not fire by chance often.
const SRMThreshold = 0.001

// CUPED is the variance-reduction coefficient θ = cov(x, y)/var(x) over
// all units of all groups (pooled), 0 when x does not vary.
func CUPED(all Moments) float64 {
	vx := all.VarX()
	if !(vx > 0) {
		return 0
	}
	return all.CovXY() / vx
}

// Adjusted is a group's CUPED estimate: the mean of y - θ(x - x̄) with x̄
// the pooled mean of x, and its per-unit variance
// var(y) - 2θ·cov(x, y) + θ²·var(x).
func (m Moments) Adjusted(theta, meanX float64) Estimate {
	e := m.Estimate()
	if theta == 0 {
		return e
	}
	e.Mean -= theta * (m.X/m.N - meanX)
	v := m.Var() - 2*theta*m.CovXY() + theta*theta*m.VarX()
	e.Var = math.Max(v, 0)
	return e
}

// MixtureScale is τ/σ of the sequential interval's normal mixture: the
// effects it is tuned to find are about a tenth of a unit's standard
// deviation.
const MixtureScale = 0.1

// Sequential is the always-valid 95 % confidence sequence for a difference
// estimated as diff with variance v = se² (the normal-mixture boundary of
// the mixture SPRT, Johari et al. 2017; Howard et al. 2021): with mixing
// distribution N(0, τ²),
//
//	diff ± sqrt( v(v+τ²)/τ² · (2·log(1/α) + log((v+τ²)/v)) )
//
// holds the true difference at every look at once with probability ≥
// 1-α (asymptotically, the variances being estimated). tau2 is τ².
func Sequential(diff, se, tau2 float64) [2]float64 {
	v := se * se
	if !(v > 0) || !(tau2 > 0) {
		return [2]float64{math.NaN(), math.NaN()}
	}
	const alpha = 0.05
	h := math.Sqrt(v * (v + tau2) / tau2 * (2*math.Log(1/alpha) + math.Log((v+tau2)/v)))
	return [2]float64{diff - h, diff + h}
}

// MixtureVariance is τ² for a comparison of c and t: (MixtureScale·σ)²
// with σ² the mean of the two per-unit variances.
func MixtureVariance(c, t Estimate) float64 {
	s2 := (c.Var + t.Var) / 2
	return MixtureScale * MixtureScale * s2
}

// ChanceBeta is P(pt > pc) for conversion rates with independent Beta(1, 1)
// (uniform) priors after xc of nc and xt of nt units converted: the
// posteriors are Beta(1+x, 1+n-x), and the probability is
// ∫ f_t(p)·F_c(p) dp, integrated by Simpson's rule on 4,000 intervals over
// the treatment posterior's mass (±12 standard deviations, within [0, 1]).
// Deterministic; accurate to about 1e-7.
func ChanceBeta(xc, nc, xt, nt float64) float64 {
	bc := distuv.Beta{Alpha: 1 + xc, Beta: 1 + nc - xc}
	bt := distuv.Beta{Alpha: 1 + xt, Beta: 1 + nt - xt}
	mt, st := bt.Mean(), bt.StdDev()
	lo, hi := math.Max(0, mt-12*st), math.Min(1, mt+12*st)
	const n = 4000
	h := (hi - lo) / n
	f := func(p float64) float64 { return bt.Prob(p) * bc.CDF(p) }
	sum := f(lo) + f(hi)
	for i := 1; i < n; i++ {
		w := 2.0
		if i%2 == 1 {
			w = 4
		}
		sum += w * f(lo+float64(i)*h)
	}
	return math.Min(1, math.Max(0, sum*h/3))
}

// ChanceNormal is P(μt > μc) for means with flat (improper uniform)
// priors and the normal approximation of each posterior,
// N(mean, var/n): Φ(diff/se).
func ChanceNormal(test Test) float64 {
	if !(test.SE > 0) {
		return math.NaN()
	}
	return distuv.UnitNormal.CDF(test.Diff / test.SE)
}
