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
	var sp splitter
	return sp.split(make([]uint64, len(weights)), total, weights)
}

// splitter splits with buffers it reuses.
type splitter struct {
	rem        []uint64
	idx        []int
	conv, vals []uint64
}

// split is [Split] into dst (of len(weights)).
func (sp *splitter) split(dst []uint64, total uint64, weights []uint64) []uint64 {
	n := len(weights)
	if n == 0 {
		return dst
	}
	var sum uint64
	for _, w := range weights {
		sum += w
	}
	even := sum == 0
	if even {
		sum = uint64(n)
	}
	rem := grow(sp.rem, n)
	sp.rem = rem
	var given uint64
	for i, w := range weights {
		if even {
			w = 1
		}
		hi, lo := bits.Mul64(total, w)
		dst[i], rem[i] = bits.Div64(hi, lo, sum) // total·w < 2^64·sum: hi < sum
		given += dst[i]
	}
	left := total - given
	if left == 0 {
		return dst
	}
	idx := sp.idx[:0]
	for i := range n {
		idx = append(idx, i)
	}
	sp.idx = idx
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
		dst[i]++
	}
	return dst
}

// credit splits one conversion (and its value) among keys by weights
// into s.
func (sp *splitter) credit(s *sums, keys []int32, weights []uint64, value int64) {
	if len(keys) == 1 {
		s.add(keys[0], conversionUnits, value)
		return
	}
	sp.conv = sp.split(grow(sp.conv, len(keys)), conversionUnits, weights)
	neg := value < 0
	abs := value
	if neg {
		abs = -value
	}
	sp.vals = sp.split(grow(sp.vals, len(keys)), uint64(abs), weights)
	for i, k := range keys {
		v := int64(sp.vals[i])
		if neg {
			v = -v
		}
		if sp.conv[i] == 0 && v == 0 {
			continue
		}
		s.add(k, int64(sp.conv[i]), v)
	}
}

// grow is b resized to n, its contents undefined.
func grow(b []uint64, n int) []uint64 {
	if cap(b) < n {
		return make([]uint64, n)
	}
	return b[:n]
}

// weightScale is what the largest real weight becomes when real weights
// (time decay, Markov) are made integers for [Split].
const weightScale = 1 << 40

// scaled turns non-negative real weights into integers proportional to
// them, the largest weightScale, in dst (reused).
func scaled(dst []uint64, ws []float64) []uint64 {
	m := 0.0
	for _, w := range ws {
		m = max(m, w)
	}
	out := grow(dst, len(ws))
	if m <= 0 || math.IsNaN(m) || math.IsInf(m, 0) {
		clear(out)
		return out
	}
	for i, w := range ws {
		out[i] = uint64(math.Round(w / m * weightScale))
	}
	return out
}

// ruleWeights are a rule-based model's weights of a conversion's touches
// (times ts in µs, in order; the conversion at tc), in dst (reused).
func ruleWeights(dst []uint64, model string, ts []int64, tc int64, halfLifeMicros int64) []uint64 {
	n := len(ts)
	w := grow(dst, n)
	clear(w)
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
		// The largest weight is the latest touch's (ts in order): the
		// weights relative to it, as scaled makes them.
		m := math.Exp2(-float64(tc-ts[n-1]) / float64(halfLifeMicros))
		if m <= 0 {
			return w
		}
		for i, t := range ts {
			w[i] = uint64(math.Round(math.Exp2(-float64(tc-t)/float64(halfLifeMicros)) / m * weightScale))
		}
	}
	return w
}
