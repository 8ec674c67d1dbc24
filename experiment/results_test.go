package experiment_test

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"tandem/experiment"
	"tandem/experiment/stats"
)

func moments(n int, f func(i int) (y, x float64)) stats.Moments {
	var m stats.Moments
	for i := range n {
		m.Unit(f(i))
	}
	return m
}

// TestFromSums: the results put the right test behind each metric kind,
// leave the control's comparison null, flag a sample ratio mismatch, and
// apply CUPED only when the pre-exposure value varies.
func TestFromSums(t *testing.T) {
	e := &experiment.Experiment{ID: "exp_1", Key: "k", Control: "a",
		Variations: []experiment.Variation{{Key: "a", Weight: 1}, {Key: "b", Weight: 1}},
		Metrics:    []experiment.Metric{{Name: "conv", Kind: experiment.Conversion, Event: "x"}, {Name: "rev", Kind: experiment.Revenue, Event: "x", Property: "v"}}}
	// 1000 and 1100 units (SRM against 50/50: p ≈ 0.03, not flagged).
	ca := moments(1000, func(i int) (float64, float64) { return b2f(i%10 == 0), 0 })
	cb := moments(1100, func(i int) (float64, float64) { return b2f(i%8 == 0), 0 })
	ra := moments(1000, func(i int) (float64, float64) { return float64(i % 7), float64(i % 7 / 2) })
	rb := moments(1100, func(i int) (float64, float64) { return float64(i%7) + 0.3, float64(i % 7 / 2) })
	sums := &experiment.Sums{Units: []int64{1000, 1100}, Metrics: [][]stats.Moments{{ca, cb}, {ra, rb}}, Excluded: 3}
	res := experiment.FromSums(e, time.Now(), sums)
	if res.SRM.Flagged || res.Exposures.Units != 2100 || res.Exposures.Excluded != 3 {
		t.Fatalf("srm %+v exposures %+v", res.SRM, res.Exposures)
	}
	conv := res.Metrics[0]
	if conv.CUPED.Theta != 0 || conv.Variations[0].Lift != nil || conv.Variations[0].PValue != nil {
		t.Fatalf("conversion: %+v", conv)
	}
	want := stats.TwoProportions(100, 1000, 138, 1100)
	b := conv.Variations[1]
	if float64(b.Lift.Absolute) != want.Diff || float64(*b.PValue) != want.P || float64(b.Lift.CI95[0]) != want.CI[0] {
		t.Errorf("conversion lift %+v p %v, want the z-test %+v", b.Lift, *b.PValue, want)
	}
	if c := float64(*b.ChanceToBeatControl); math.Abs(c-stats.ChanceBeta(100, 1000, 138, 1100)) > 1e-12 {
		t.Errorf("chance %v", c)
	}
	rev := res.Metrics[1]
	if rev.CUPED.Theta == 0 || !(rev.CUPED.VarianceReduction > 0.5) {
		t.Fatalf("revenue CUPED %+v, want a large reduction (x explains most of y)", rev.CUPED)
	}
	rv := rev.Variations[1]
	// The true difference is 0.3 and the adjusted interval is narrow.
	if lo, hi := float64(rv.Lift.CI95[0]), float64(rv.Lift.CI95[1]); !(lo < 0.3 && hi > 0.3 && hi-lo < 0.2) {
		t.Errorf("revenue CI %v %v", lo, hi)
	}
	if s := *rv.SequentialCI95; !(s[0] < rv.Lift.CI95[0] && s[1] > rv.Lift.CI95[1]) {
		t.Errorf("sequential %v does not contain the fixed interval %v", s, rv.Lift.CI95)
	}
	// A mismatch is flagged; undefined numbers are null in JSON.
	sums.Units = []int64{1000, 1300}
	sums.Metrics[0][1].N, sums.Metrics[1][1].N = 1300, 1300
	if res := experiment.FromSums(e, time.Now(), sums); !res.SRM.Flagged {
		t.Errorf("1000/1300 against 50/50 not flagged: %+v", res.SRM)
	}
	empty := &experiment.Sums{Units: []int64{0, 0}, Metrics: [][]stats.Moments{{{}, {}}, {{}, {}}}}
	b2, err := json.Marshal(experiment.FromSums(e, time.Now(), empty))
	if err != nil {
		t.Fatalf("marshal of results without units: %v", err)
	}
	if !strings.Contains(string(b2), `"mean":null`) || !strings.Contains(string(b2), `"lift":null`) {
		t.Errorf("results without units: %s", b2)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
