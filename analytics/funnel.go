package analytics

import "slices"

// ProfileFunnel is one profile's funnel outcome: Depth, the deepest step
// any chain reached (0: none), and Times, the event times (µs) of the
// reported chain, one per reached step.
//
// The reported chain is the one that starts at the latest step-1 event
// from which Depth is reached, taking each following step at its earliest
// possible time.
type ProfileFunnel struct {
	Depth int
	Times []int64
}

// Funnel computes one profile's funnel over points, its events in time
// order (ties in any order), where bit i of a point's Mask says the event
// satisfies step i. window is in µs; strict requires each step strictly
// later than the previous one.
//
// The depth is found in one pass that keeps, for each step, the latest
// start of a chain that has reached it; events of the same instant are
// taken together, matching distinct events to consecutive steps (so one
// event satisfies at most one step of a chain, and equal times can go in
// step order). The reported chain's times are then found by a search from
// that start.
func Funnel(points []Point, steps int, window int64, strict bool) ProfileFunnel {
	// start[k] is the latest start of a chain that reached step k+1
	// (0-based k), valid when has[k].
	var start [MaxSteps]int64
	var has [MaxSteps]bool
	full := uint64(1)<<steps - 1
	for i := 0; i < len(points); {
		j := i + 1
		for j < len(points) && points[j].T == points[i].T {
			j++
		}
		group := points[i:j]
		i = j
		t := group[0].T
		var union uint64
		multi := false
		for _, p := range group {
			union |= p.Mask & full
			if p.Mask&(p.Mask-1)&full != 0 {
				multi = true
			}
		}
		if union == 0 {
			continue
		}
		if strict || len(group) == 1 {
			// At most one event of this instant per chain: every step
			// extends from the state before the instant.
			for k := steps - 1; k >= 0; k-- {
				if union&(1<<k) == 0 {
					continue
				}
				if k == 0 {
					start[0], has[0] = t, true
					continue
				}
				if has[k-1] && t <= start[k-1]+window && (!has[k] || start[k-1] > start[k]) {
					start[k], has[k] = start[k-1], true
				}
			}
			continue
		}
		// Several events at this instant: a chain may take several of
		// them, one per step. prev is the state before the instant.
		prev, prevHas := start, has
		for to := 1; to <= steps; to++ {
			// Chains entering at level from (0: starting here) and
			// taking steps from+1..to from this instant's events.
			for from := to - 1; from >= 0; from-- {
				var s int64
				switch {
				case from == 0:
					s = t
				case prevHas[from-1] && t <= prev[from-1]+window:
					s = prev[from-1]
				default:
					continue
				}
				if has[to-1] && s <= start[to-1] {
					continue
				}
				if !matchable(group, from, to, multi) {
					continue
				}
				start[to-1], has[to-1] = s, true
			}
		}
	}
	depth := 0
	for depth < steps && has[depth] {
		depth++
	}
	if depth == 0 {
		return ProfileFunnel{}
	}
	return ProfileFunnel{Depth: depth, Times: chainTimes(points, depth, start[depth-1], window, strict)}
}

// matchable reports whether steps from+1..to (1-based) can each be matched
// to a distinct event of group.
func matchable(group []Point, from, to int, multi bool) bool {
	if !multi {
		var union uint64
		for _, p := range group {
			union |= p.Mask
		}
		for k := from; k < to; k++ {
			if union&(1<<k) == 0 {
				return false
			}
		}
		return true
	}
	// Bipartite matching of steps to events by augmenting paths.
	owner := make([]int, len(group)) // step matched to each event, -1 none
	for i := range owner {
		owner[i] = -1
	}
	var try func(k int, seen []bool) bool
	try = func(k int, seen []bool) bool {
		for e, p := range group {
			if p.Mask&(1<<k) == 0 || seen[e] {
				continue
			}
			seen[e] = true
			if owner[e] < 0 || try(owner[e], seen) {
				owner[e] = k
				return true
			}
		}
		return false
	}
	for k := from; k < to; k++ {
		if !try(k, make([]bool, len(group))) {
			return false
		}
	}
	return true
}

// chainTimes finds the lexicographically earliest step times of a chain of
// depth steps that starts at s, by a depth-first search that keeps the
// best chain found and prunes prefixes that cannot beat it. (Among events
// of one instant the choice matters only when an event satisfies several
// steps: taking it for one step may leave a later step without an event.)
func chainTimes(points []Point, depth int, s int64, window int64, strict bool) []int64 {
	var best []int64
	times := make([]int64, 0, depth)
	used := make([]bool, len(points))
	var dfs func(k int, from int, last int64, tight bool)
	dfs = func(k int, from int, last int64, tight bool) {
		if k == depth {
			best = append(best[:0], times...)
			return
		}
		for i := from; i < len(points); i++ {
			p := points[i]
			if p.T > s+window || (k == 0 && p.T > s) {
				return
			}
			if best != nil && tight && p.T > best[k] {
				return
			}
			if used[i] || p.Mask&(1<<k) == 0 || (k == 0 && p.T != s) {
				continue
			}
			if k > 0 && (p.T < last || strict && p.T == last) {
				continue
			}
			used[i] = true
			times = append(times, p.T)
			// Later steps may take events of the same instant that come
			// before i in points, so the search goes on from the first
			// event of this instant.
			next := i
			for next > 0 && points[next-1].T == p.T {
				next--
			}
			dfs(k+1, next, p.T, best == nil || (tight && p.T == best[k]))
			used[i] = false
			times = times[:len(times)-1]
		}
	}
	first := 0
	for first < len(points) && points[first].T < s {
		first++
	}
	dfs(0, first, s, true)
	return best
}

// funnelAgg sums profile outcomes into a funnel answer.
type funnelAgg struct {
	counts []int64
	deltas [][]float64 // deltas[k]: seconds from step k-1 to k
}

func newFunnelAgg(steps int) *funnelAgg {
	return &funnelAgg{counts: make([]int64, steps), deltas: make([][]float64, steps)}
}

func (a *funnelAgg) add(pf ProfileFunnel) {
	for k := 0; k < pf.Depth; k++ {
		a.counts[k]++
		if k > 0 {
			a.deltas[k] = append(a.deltas[k], float64(pf.Times[k]-pf.Times[k-1])/1e6)
		}
	}
}

func (a *funnelAgg) result(q *FunnelQuery) []FunnelStepResult {
	medians := make([]*float64, len(q.Steps))
	for k := 1; k < len(q.Steps); k++ {
		medians[k] = Quantile(a.deltas[k], 0.5)
	}
	return StepResults(q, a.counts, medians)
}

// StepResults builds a funnel's steps from per-step profile counts and
// medians (seconds), computing the conversion rates.
func StepResults(q *FunnelQuery, counts []int64, medians []*float64) []FunnelStepResult {
	out := make([]FunnelStepResult, len(q.Steps))
	for k, s := range q.Steps {
		r := FunnelStepResult{Name: s.Name, Profiles: counts[k], MedianSeconds: medians[k]}
		if counts[0] > 0 {
			r.Conversion = float64(counts[k]) / float64(counts[0])
		}
		switch {
		case k == 0:
			r.FromPrevious = 1
			if counts[0] == 0 {
				r.FromPrevious = 0
			}
		case counts[k-1] > 0:
			r.FromPrevious = float64(counts[k]) / float64(counts[k-1])
		}
		if k == 0 {
			r.MedianSeconds = nil
		}
		out[k] = r
	}
	return out
}

// Quantile is the q-quantile of xs by linear interpolation between the
// closest ranks (DuckDB's quantile_cont and median); nil for no values. It
// sorts xs.
func Quantile(xs []float64, q float64) *float64 {
	if len(xs) == 0 {
		return nil
	}
	slices.Sort(xs)
	pos := q * float64(len(xs)-1)
	lo := int(pos)
	v := xs[lo]
	if lo+1 < len(xs) {
		v += (pos - float64(lo)) * (xs[lo+1] - xs[lo])
	}
	return &v
}
