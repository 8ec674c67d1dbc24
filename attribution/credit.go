package attribution

import (
	"math"
	"math/bits"
	"slices"
)

// The models.
const (
	FirstTouch = "first_touch"
	LastTouch  = "last_touch"
	Linear     = "linear"
	TimeDecay  = "time_decay"
	Position   = "position"
	Markov     = "markov"
)

// Models lists every model; the rule-based ones are all but Markov.
var Models = []string{FirstTouch, LastTouch, Linear, TimeDecay, Position, Markov}

// Split divides total units among weights exactly: each share is the
// floor of total·w/Σw, and the units left over (fewer than len(weights))
// go one each to the largest remainders, equal remainders to the lower
// index. The shares sum to total. A zero sum of weights splits evenly.
func Split(total uint64, weights []uint64) []uint64 {
	n := len(weights)
	out := make([]uint64, n)
	if n == 0 {
		return out
	}
	var sum uint64
	for _, w := range weights {
		sum += w
	}
	if sum == 0 {
		weights = slices.Repeat([]uint64{1}, n)
		sum = uint64(n)
	}
	rem := make([]uint64, n)
	var given uint64
	for i, w := range weights {
		hi, lo := bits.Mul64(total, w)
		out[i], rem[i] = bits.Div64(hi, lo, sum) // total·w < 2^64·sum: hi < sum
		given += out[i]
	}
	left := total - given
	if left == 0 {
		return out
	}
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		switch {
		case rem[a] > rem[b]:
			return -1
		case rem[a] < rem[b]:
			return 1
		}
		return 0
	})
	for _, i := range idx[:left] {
		out[i]++
	}
	return out
}

// weightScale is what the largest real weight becomes when real weights
// (time decay, Markov) are made integers for [Split].
const weightScale = 1 << 40

// scaled turns non-negative real weights into integers proportional to
// them, the largest weightScale.
func scaled(ws []float64) []uint64 {
	m := 0.0
	for _, w := range ws {
		m = max(m, w)
	}
	out := make([]uint64, len(ws))
	if m <= 0 || math.IsNaN(m) || math.IsInf(m, 0) {
		return out
	}
	for i, w := range ws {
		out[i] = uint64(math.Round(w / m * weightScale))
	}
	return out
}

// ruleWeights are a rule-based model's weights of a conversion's touches
// (times ts in µs, in order; the conversion at tc).
func ruleWeights(model string, ts []int64, tc int64, halfLifeMicros int64) []uint64 {
	n := len(ts)
	w := make([]uint64, n)
	switch model {
	case FirstTouch:
		w[0] = 1
	case LastTouch:
		w[n-1] = 1
	case Linear:
		for i := range w {
			w[i] = 1
		}
	case Position:
		// 40/20/40 as integers: the ends 2(n-2) each, the middle touches
		// 1 each (0.2 shared among n-2); one touch all, two half each.
		switch n {
		case 1:
			w[0] = 1
		case 2:
			w[0], w[1] = 1, 1
		default:
			for i := range w {
				w[i] = 1
			}
			w[0], w[n-1] = uint64(2*(n-2)), uint64(2*(n-2))
		}
	case TimeDecay:
		f := make([]float64, n)
		for i, t := range ts {
			f[i] = math.Exp2(-float64(tc-t) / float64(halfLifeMicros))
		}
		return scaled(f)
	}
	return w
}
