package analytics

import (
	"cmp"
	"context"
	"slices"
	"strconv"
	"time"
)

// Backend answers analytics queries. Queries passed in have been
// validated (their Validate method returned nil).
type Backend interface {
	Funnel(ctx context.Context, q *FunnelQuery) (*FunnelResult, error)
	Journey(ctx context.Context, q *JourneyQuery) (*JourneyResult, error)
	Paths(ctx context.Context, q *PathsQuery) (*PathsResult, error)
	Retention(ctx context.Context, q *RetentionQuery) (*RetentionResult, error)
}

// Provider is an event store that offers an analytics [Backend] over its
// own tables (eventstore/duckdb, eventstore/clickhouse). It is optional:
// the server asks the event store for it, and a store without it serves
// no analytics.
type Provider interface {
	Analytics() Backend
}

// Point is one event of a profile as the engine sees it.
type Point struct {
	T    int64  // event time, µs since the Unix epoch
	Mask uint64 // bit i: the event satisfies ScanSpec.Conditions[i]
	// Name is the event's name, filled when ScanSpec.Names is set.
	Name string
	// Prop is the ScanSpec.Property value (nil: missing), when asked.
	Prop *string
}

// Sequence is one profile's events for a scan.
type Sequence struct {
	Profile string
	Trait   *string // the ScanSpec.Trait value, when asked (nil: none)
	Points  []Point // ordered by T; equal times in any order
}

// ScanSpec says what a Source streams.
type ScanSpec struct {
	Range
	Conditions []Condition // at most 64
	// All streams every named event (track, page, screen) of the
	// profiles that have an event satisfying a condition, not only the
	// events that satisfy one. Used by paths.
	All      bool
	Names    bool   // fill Point.Name
	Property string // fill Point.Prop with properties.<Property>
	Trait    string // fill Sequence.Trait (see Breakdown.Trait)
}

// Source streams each profile's events in time order: the seam between
// the Go engine and an event store. fn is called once per profile that
// has at least one streamed event, in any order of profiles; the Sequence
// is only valid during the call. An event's profile is
// eventstore.ProfileOf its profile link, user id and anonymous id.
type Source interface {
	Scan(ctx context.Context, spec ScanSpec, fn func(*Sequence) error) error
}

// Engine is a [Backend] that computes every answer in Go from a [Source].
// Stores with a faster native path for some query (eventstore/duckdb's
// funnels in SQL) wrap it and override those methods.
type Engine struct {
	Src Source
}

// Funnel implements [Backend].
func (e *Engine) Funnel(ctx context.Context, q *FunnelQuery) (*FunnelResult, error) {
	spec := ScanSpec{Range: q.Range, Conditions: q.Conditions()}
	if q.Breakdown != nil {
		spec.Property, spec.Trait = q.Breakdown.Property, q.Breakdown.Trait
	}
	total := newFunnelAgg(len(q.Steps))
	groups := map[string]*funnelAgg{}
	var none *funnelAgg
	err := e.Src.Scan(ctx, spec, func(s *Sequence) error {
		pf := Funnel(s.Points, len(q.Steps), q.Window.Micros, q.Strict)
		if pf.Depth == 0 {
			return nil
		}
		total.add(pf)
		if q.Breakdown == nil {
			return nil
		}
		v := s.Trait
		if q.Breakdown.Property != "" {
			v = FirstStepProp(s.Points)
		}
		if v == nil {
			if none == nil {
				none = newFunnelAgg(len(q.Steps))
			}
			none.add(pf)
			return nil
		}
		g := groups[*v]
		if g == nil {
			g = newFunnelAgg(len(q.Steps))
			groups[*v] = g
		}
		g.add(pf)
		return nil
	})
	if err != nil {
		return nil, err
	}
	res := &FunnelResult{Steps: total.result(q)}
	if q.Breakdown != nil {
		for v, g := range groups {
			res.Breakdown = append(res.Breakdown, FunnelBreakdown{Value: &v, Steps: g.result(q)})
		}
		if none != nil {
			res.Breakdown = append(res.Breakdown, FunnelBreakdown{Steps: none.result(q)})
		}
		SortBreakdown(res.Breakdown)
	}
	return res, nil
}

// FirstStepProp is the property of the earliest step-1 event (the smallest
// value among equally early ones; missing sorts first).
func FirstStepProp(points []Point) *string {
	var v *string
	found := false
	var at int64
	for _, p := range points {
		if p.Mask&1 == 0 {
			continue
		}
		if found && p.T > at {
			break
		}
		if !found || (v != nil && (p.Prop == nil || *p.Prop < *v)) {
			v = p.Prop
		}
		found, at = true, p.T
	}
	return v
}

// SortBreakdown orders breakdown groups by first-step profiles, most
// first, then by value (none last).
func SortBreakdown(b []FunnelBreakdown) {
	slices.SortFunc(b, func(x, y FunnelBreakdown) int {
		if c := cmp.Compare(y.Steps[0].Profiles, x.Steps[0].Profiles); c != 0 {
			return c
		}
		switch {
		case x.Value == nil && y.Value == nil:
			return 0
		case x.Value == nil:
			return 1
		case y.Value == nil:
			return -1
		}
		return cmp.Compare(*x.Value, *y.Value)
	})
}

// StageTimes are one profile's first times (µs) at each stage, -1 for a
// stage not reached.
type StageTimes []int64

// FirstTimes computes a profile's StageTimes from points whose mask bit i
// says the event belongs to stage i.
func FirstTimes(points []Point, stages int) StageTimes {
	st := make(StageTimes, stages)
	for i := range st {
		st[i] = -1
	}
	for _, p := range points {
		for k := 0; k < stages; k++ {
			if p.Mask&(1<<k) != 0 && st[k] < 0 {
				st[k] = p.T
			}
		}
	}
	return st
}

// JourneyAgg sums profiles' stage times into a journey answer. The rules:
// a profile reaches a stage at its first event of the stage in the range;
// its time from the previous stage counts when it reached both, this one
// no earlier. A profile that reached stage k at time t, with t+Within no
// later than the range's end, is stuck at the hand-off to stage k+1 when
// it reached k+1 never, or before t, or later than t+Within.
type JourneyAgg struct {
	q        *JourneyQuery
	counts   []int64
	deltas   [][]float64
	reached  []int64
	stuck    []int64
	samples  [][]string
	gapStuck map[string]int64
	gapSamp  map[string][]string
}

// NewJourneyAgg starts an empty aggregate for q.
func NewJourneyAgg(q *JourneyQuery) *JourneyAgg {
	n := len(q.Stages)
	return &JourneyAgg{q: q, counts: make([]int64, n), deltas: make([][]float64, n),
		reached: make([]int64, n), stuck: make([]int64, n), samples: make([][]string, n),
		gapStuck: map[string]int64{}, gapSamp: map[string][]string{}}
}

// Add counts one profile.
func (a *JourneyAgg) Add(profile string, st StageTimes) {
	end := a.q.ToMicros()
	for k, t := range st {
		if t < 0 {
			continue
		}
		a.counts[k]++
		if k > 0 && st[k-1] >= 0 && t >= st[k-1] {
			a.deltas[k] = append(a.deltas[k], float64(t-st[k-1])/1e6)
		}
		if k+1 < len(st) && t+a.q.Within.Micros <= end {
			a.reached[k]++
			next := st[k+1]
			if next < t || next > t+a.q.Within.Micros {
				a.stuck[k]++
				a.samples[k] = addSample(a.samples[k], profile, a.q.Sample)
				b := boundary(a.q.Stages[k], a.q.Stages[k+1])
				a.gapStuck[b]++
				a.gapSamp[b] = addSample(a.gapSamp[b], profile, a.q.Sample)
			}
		}
	}
}

// addSample keeps the n smallest ids, sorted.
func addSample(s []string, id string, n int) []string {
	i, found := slices.BinarySearch(s, id)
	if found || (len(s) >= n && i >= n) {
		return s
	}
	s = slices.Insert(s, i, id)
	if len(s) > n {
		s = s[:n]
	}
	return s
}

func boundary(a, b Stage) string { return a.Department + "→" + b.Department }

// Result is the journey answer.
func (a *JourneyAgg) Result() *JourneyResult {
	st := a.q.Stages
	res := &JourneyResult{Stages: make([]StageResult, len(st)), Handoffs: []Handoff{}, Gaps: []Gap{}}
	for k, s := range st {
		r := StageResult{Name: s.Name, Department: s.Department, Profiles: a.counts[k]}
		if k > 0 {
			r.P90Seconds = Quantile(a.deltas[k], 0.9)
			r.MedianSeconds = Quantile(a.deltas[k], 0.5)
		}
		res.Stages[k] = r
	}
	var order []string
	for k := 0; k+1 < len(st); k++ {
		b := boundary(st[k], st[k+1])
		res.Handoffs = append(res.Handoffs, Handoff{
			From: st[k].Name, To: st[k+1].Name, FromDepartment: st[k].Department, ToDepartment: st[k+1].Department,
			Boundary: b, Reached: a.reached[k], Stuck: a.stuck[k], Sample: nonNil(a.samples[k]),
		})
		if !slices.Contains(order, b) {
			order = append(order, b)
		}
	}
	for _, b := range order {
		res.Gaps = append(res.Gaps, Gap{Boundary: b, Stuck: a.gapStuck[b], Sample: nonNil(a.gapSamp[b])})
	}
	return res
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// stageSpec is what a journey scans: one per stage, an
// event of any of the stage's names (expanded by the backend).
func stageSpec(q *JourneyQuery) ScanSpec {
	spec := ScanSpec{Range: q.Range}
	for _, s := range q.Stages {
		for _, name := range s.Events {
			spec.Conditions = append(spec.Conditions, Condition{Event: name})
		}
	}
	return spec
}

// Journey implements [Backend].
func (e *Engine) Journey(ctx context.Context, q *JourneyQuery) (*JourneyResult, error) {
	spec := stageSpec(q)
	// stageOf maps condition bits to stage bits.
	stageOf := make([]int, 0, len(spec.Conditions))
	for k, s := range q.Stages {
		for range s.Events {
			stageOf = append(stageOf, k)
		}
	}
	agg := NewJourneyAgg(q)
	var pts []Point
	err := e.Src.Scan(ctx, spec, func(s *Sequence) error {
		pts = pts[:0]
		for _, p := range s.Points {
			var m uint64
			for c := range stageOf {
				if p.Mask&(1<<c) != 0 {
					m |= 1 << stageOf[c]
				}
			}
			pts = append(pts, Point{T: p.T, Mask: m})
		}
		agg.Add(s.Profile, FirstTimes(pts, len(q.Stages)))
		return nil
	})
	if err != nil {
		return nil, err
	}
	return agg.Result(), nil
}

// Paths implements [Backend]. For each profile it takes its first start
// event in the range ("next") or its last ("previous") and the Steps named
// events after (before) it; every such path adds the profile to its nodes
// and edges.
func (e *Engine) Paths(ctx context.Context, q *PathsQuery) (*PathsResult, error) {
	spec := ScanSpec{Range: q.Range, Conditions: []Condition{q.Start}, All: true, Names: true}
	nodes := map[string]*PathNode{}
	edges := map[[2]string]int64{}
	node := func(depth int, name string) string {
		id := strconv.Itoa(depth) + ":" + name
		n := nodes[id]
		if n == nil {
			n = &PathNode{ID: id, Name: name, Depth: depth}
			nodes[id] = n
		}
		n.Profiles++
		return id
	}
	err := e.Src.Scan(ctx, spec, func(s *Sequence) error {
		idx := -1
		for i, p := range s.Points {
			if p.Mask&1 != 0 {
				idx = i
				if q.Direction == "next" {
					break
				}
			}
		}
		if idx < 0 {
			return nil
		}
		prev := node(0, s.Points[idx].Name)
		for d := 1; d <= q.Steps; d++ {
			i, depth := idx+d, d
			if q.Direction == "previous" {
				i, depth = idx-d, -d
			}
			if i < 0 || i >= len(s.Points) {
				break
			}
			id := node(depth, s.Points[i].Name)
			if q.Direction == "previous" {
				edges[[2]string{id, prev}]++
			} else {
				edges[[2]string{prev, id}]++
			}
			prev = id
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return PathsAnswer(nodes, edges, q.Limit), nil
}

// PathsAnswer keeps the Limit heaviest edges (ties by source, target) and
// the nodes they touch, plus the start node.
func PathsAnswer(nodes map[string]*PathNode, edges map[[2]string]int64, limit int) *PathsResult {
	res := &PathsResult{Nodes: []PathNode{}, Edges: []PathEdge{}}
	for k, w := range edges {
		res.Edges = append(res.Edges, PathEdge{Source: k[0], Target: k[1], Profiles: w})
	}
	slices.SortFunc(res.Edges, func(a, b PathEdge) int {
		return cmp.Or(cmp.Compare(b.Profiles, a.Profiles), cmp.Compare(a.Source, b.Source), cmp.Compare(a.Target, b.Target))
	})
	if len(res.Edges) > limit {
		res.Edges = res.Edges[:limit]
	}
	keep := map[string]bool{}
	for _, e := range res.Edges {
		keep[e.Source], keep[e.Target] = true, true
	}
	for id, n := range nodes {
		if keep[id] || n.Depth == 0 {
			res.Nodes = append(res.Nodes, *n)
		}
	}
	slices.SortFunc(res.Nodes, func(a, b PathNode) int {
		return cmp.Or(cmp.Compare(a.Depth, b.Depth), cmp.Compare(b.Profiles, a.Profiles), cmp.Compare(a.Name, b.Name))
	})
	return res
}

// PeriodIndex numbers the period of t (µs) in loc: days since 1970-01-01,
// weeks (Monday first) since the Monday 1969-12-29, or months since
// January 1970, all counted in loc's calendar.
func PeriodIndex(t int64, period string, loc *time.Location) int64 {
	lt := time.UnixMicro(t).In(loc)
	y, m, d := lt.Date()
	days := civilDays(y, m, d)
	switch period {
	case "week":
		return floorDiv(days+3, 7) // 1970-01-01 was a Thursday
	case "month":
		return int64(y-1970)*12 + int64(m-1)
	}
	return days
}

// PeriodStart is the start of period index n in loc.
func PeriodStart(n int64, period string, loc *time.Location) time.Time {
	switch period {
	case "week":
		return time.Date(1970, 1, 1, 0, 0, 0, 0, loc).AddDate(0, 0, int(n*7-3))
	case "month":
		return time.Date(1970+int(floorDiv(n, 12)), time.Month(n-floorDiv(n, 12)*12+1), 1, 0, 0, 0, 0, loc)
	}
	return time.Date(1970, 1, 1, 0, 0, 0, 0, loc).AddDate(0, 0, int(n))
}

func civilDays(y int, m time.Month, d int) int64 {
	return int64(time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix() / 86400)
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// Retention implements [Backend]. A profile's cohort is the period of its
// first start event in the range; it returned in the k-th later period
// when it has a return event in the range in cohort period + k.
func (e *Engine) Retention(ctx context.Context, q *RetentionQuery) (*RetentionResult, error) {
	spec := ScanSpec{Range: q.Range, Conditions: []Condition{q.Start, q.Return}}
	type cohort struct {
		profiles int64
		returned []int64
	}
	cohorts := map[int64]*cohort{}
	seen := make([]bool, q.Periods+1)
	err := e.Src.Scan(ctx, spec, func(s *Sequence) error {
		first := int64(-1)
		var c0 int64
		clear(seen)
		for _, p := range s.Points {
			if p.Mask&1 != 0 && first < 0 {
				first = p.T
				c0 = PeriodIndex(p.T, q.Period, q.Location)
			}
		}
		if first < 0 {
			return nil
		}
		c := cohorts[c0]
		if c == nil {
			c = &cohort{returned: make([]int64, q.Periods)}
			cohorts[c0] = c
		}
		c.profiles++
		for _, p := range s.Points {
			if p.Mask&2 == 0 {
				continue
			}
			k := PeriodIndex(p.T, q.Period, q.Location) - c0
			if k >= 1 && k <= int64(q.Periods) && !seen[k] {
				seen[k] = true
				c.returned[k-1]++
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	res := &RetentionResult{Cohorts: []Cohort{}}
	for n, c := range cohorts {
		res.Cohorts = append(res.Cohorts, NewCohort(PeriodStart(n, q.Period, q.Location), c.profiles, c.returned))
	}
	slices.SortFunc(res.Cohorts, func(a, b Cohort) int { return a.Start.Compare(b.Start) })
	return res, nil
}

// NewCohort fills Share from the counts.
func NewCohort(start time.Time, profiles int64, returned []int64) Cohort {
	c := Cohort{Start: start, Profiles: profiles, Returned: returned, Share: make([]float64, len(returned))}
	for i, r := range returned {
		if profiles > 0 {
			c.Share[i] = float64(r) / float64(profiles)
		}
	}
	return c
}
