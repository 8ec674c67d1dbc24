package stats_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"tandem/experiment/stats"
)

// TestAAPeeking runs many seeded A/A experiments (no true difference),
// looking at the results every day for 30 days. A fixed-horizon test
// that is read daily and stopped at the first p < 0.05 declares far more
// than 5 % of them significant; the sequential interval, which is valid
// at every look at once, excludes 0 in at most 5 % of them.
func TestAAPeeking(t *testing.T) {
	const sims, days, perDay = 500, 30, 100
	for _, kind := range []string{"mean", "conversion"} {
		t.Run(kind, func(t *testing.T) {
			r := rand.New(rand.NewPCG(42, uint64(len(kind))))
			var fixedOnce, fixedPeek, seqPeek int
			for range sims {
				var c, tr stats.Moments
				var peekHit, seqHit bool
				var last stats.Test
				for d := range days {
					for range perDay {
						if kind == "mean" {
							c.Unit(5+2*r.NormFloat64()+r.ExpFloat64(), 0)
							tr.Unit(5+2*r.NormFloat64()+r.ExpFloat64(), 0)
						} else {
							c.Unit(bern(r, 0.1), 0)
							tr.Unit(bern(r, 0.1), 0)
						}
					}
					var test stats.Test
					if kind == "mean" {
						test = stats.Welch(c.Estimate(), tr.Estimate())
					} else {
						test = stats.TwoProportions(c.Y, c.N, tr.Y, tr.N)
					}
					if test.P < 0.05 {
						peekHit = true
					}
					ci := stats.Sequential(test.Diff, test.SE, stats.MixtureVariance(c.Estimate(), tr.Estimate()))
					if ci[0] > 0 || ci[1] < 0 {
						seqHit = true
					}
					if d == days-1 {
						last = test
					}
				}
				if last.P < 0.05 {
					fixedOnce++
				}
				if peekHit {
					fixedPeek++
				}
				if seqHit {
					seqPeek++
				}
			}
			rate := func(n int) float64 { return float64(n) / sims }
			t.Logf("%s: false-positive rate, fixed horizon read once %.3f, read daily %.3f; sequential read daily %.3f",
				kind, rate(fixedOnce), rate(fixedPeek), rate(seqPeek))
			if rate(seqPeek) > 0.05 {
				t.Errorf("sequential interval: false-positive rate %.3f under daily peeking, want ≤ 0.05", rate(seqPeek))
			}
			if rate(fixedOnce) > 0.08 {
				t.Errorf("fixed-horizon test read once: false-positive rate %.3f, want about 0.05", rate(fixedOnce))
			}
			if rate(fixedPeek) < 0.12 || rate(fixedPeek) < rate(fixedOnce)+0.05 {
				t.Errorf("fixed-horizon test read daily: false-positive rate %.3f, want it clearly above the single look's %.3f",
					rate(fixedPeek), rate(fixedOnce))
			}
		})
	}
}

func bern(r *rand.Rand, p float64) float64 {
	if r.Float64() < p {
		return 1
	}
	return 0
}

// TestSequentialCoversFixed: at any one look the always-valid interval is
// wider than the fixed-horizon one, and it narrows as data grows.
func TestSequentialCoversFixed(t *testing.T) {
	c := stats.Estimate{N: 1000, Mean: 10, Var: 4}
	prev := math.Inf(1)
	for _, n := range []float64{100, 1000, 10000, 100000} {
		c.N = n
		tr := c
		tr.Mean = 10.1
		fixed := stats.Welch(c, tr)
		seq := stats.Sequential(fixed.Diff, fixed.SE, stats.MixtureVariance(c, tr))
		if !(seq[0] < fixed.CI[0] && seq[1] > fixed.CI[1]) {
			t.Errorf("n=%v: sequential %v does not contain fixed %v", n, seq, fixed.CI)
		}
		if w := seq[1] - seq[0]; w >= prev {
			t.Errorf("n=%v: sequential width %v did not shrink from %v", n, w, prev)
		} else {
			prev = w
		}
	}
}

// TestCUPED: with a pre-exposure value correlated with the metric, the
// adjusted estimate keeps the true difference and its variance falls by
// about the squared correlation.
func TestCUPED(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	var c, tr stats.Moments
	const n = 20000
	for range n {
		x := 10 + 3*r.NormFloat64()
		c.Unit(0.8*x+r.NormFloat64(), x)
		x = 10 + 3*r.NormFloat64()
		tr.Unit(0.8*x+0.5+r.NormFloat64(), x)
	}
	all := c.Add(tr)
	theta := stats.CUPED(all)
	if math.Abs(theta-0.8) > 0.02 {
		t.Fatalf("theta = %v, want about 0.8", theta)
	}
	mx := all.X / all.N
	ac, at := c.Adjusted(theta, mx), tr.Adjusted(theta, mx)
	raw := stats.Welch(c.Estimate(), tr.Estimate())
	adj := stats.Welch(ac, at)
	if math.Abs(adj.Diff-0.5) > 4*adj.SE {
		t.Errorf("adjusted diff %v ± %v, want 0.5", adj.Diff, adj.SE)
	}
	// var(y) = 0.64·9 + 1 = 6.76; adjusted ≈ 1: the reduction is ≈ 85 %.
	red := 1 - (ac.Var+at.Var)/(c.Var()+tr.Var())
	if red < 0.8 || red > 0.9 {
		t.Errorf("variance reduction %v, want about 0.85", red)
	}
	if adj.SE >= raw.SE/2 {
		t.Errorf("adjusted SE %v not well below raw %v", adj.SE, raw.SE)
	}
	// No pre-exposure variation: no adjustment.
	var p stats.Moments
	p.Unit(1, 0)
	p.Unit(2, 0)
	if stats.CUPED(p) != 0 {
		t.Error("theta without pre-exposure variation is not 0")
	}
}

func TestSRMFlags(t *testing.T) {
	if _, p := stats.SRM([]float64{5000, 5000}, []float64{1, 1}); p < 0.99 {
		t.Errorf("balanced: p = %v", p)
	}
	if _, p := stats.SRM([]float64{5200, 4800}, []float64{1, 1}); p >= stats.SRMThreshold {
		t.Errorf("5200/4800 against 50/50: p = %v, want a flag", p)
	}
	if _, p := stats.SRM([]float64{5200, 4800}, []float64{52, 48}); p < 0.99 {
		t.Errorf("5200/4800 against 52/48: p = %v", p)
	}
}

func TestRelative(t *testing.T) {
	lift, ci := stats.Relative(stats.Estimate{N: 1e6, Mean: 2, Var: 1}, stats.Estimate{N: 1e6, Mean: 2.2, Var: 1})
	if math.Abs(lift-0.1) > 1e-12 || !(ci[0] < 0.1 && ci[1] > 0.1) || ci[1]-ci[0] > 0.01 {
		t.Errorf("relative lift %v %v", lift, ci)
	}
	if l, _ := stats.Relative(stats.Estimate{N: 10, Mean: 0, Var: 1}, stats.Estimate{N: 10, Mean: 1, Var: 1}); !math.IsNaN(l) {
		t.Errorf("relative lift over a zero control = %v, want NaN", l)
	}
}
