package analytics_test

import (
	"math/rand/v2"
	"slices"
	"testing"

	"tandem/analytics"
	"tandem/analytics/reftest"
)

// TestFunnelAgainstReference compares the Go core's per-profile answer
// (depth and the reported chain's times) with the brute-force reference
// on random profiles: ties, repeated steps, filters, strict, windows.
func TestFunnelAgainstReference(t *testing.T) {
	shapes := map[string]reftest.Options{
		"ties+repeats":  {Profiles: 4, Events: 8, Names: 3, Steps: 4, Ties: true, Repeats: true, Filters: true, StrictToo: true, MaxSeconds: 8},
		"no ties":       {Profiles: 4, Events: 8, Names: 4, Steps: 4, Ties: false, Repeats: false, Filters: true, StrictToo: true, MaxSeconds: 20},
		"dense repeats": {Profiles: 2, Events: 9, Names: 2, Steps: 5, Ties: true, Repeats: true, StrictToo: true, MaxSeconds: 4},
	}
	const perShape = 5000
	profiles := 0
	for name, o := range shapes {
		r := rand.New(rand.NewPCG(1, uint64(len(name))))
		for i := 0; i < perShape; i++ {
			c := reftest.Random(r, o)
			q := &c.Query
			names, by := reftest.Profiles(c.Events)
			for _, p := range names {
				profiles++
				want := reftest.Funnel(q, by[p])
				pts := points(q, by[p])
				got := analytics.Funnel(pts, len(q.Steps), q.Window.Micros, q.Strict)
				if got.Depth != want.Depth || !slices.Equal(got.Times, want.Times) {
					t.Fatalf("%s case %d profile %s: got depth %d times %v, want %d %v\nquery %+v\nevents %+v",
						name, i, p, got.Depth, got.Times, want.Depth, want.Times, *q, by[p])
				}
			}
		}
	}
	t.Logf("%d cases, %d profiles: no differences", perShape*len(shapes), profiles)
}

// points turns a profile's events into the engine's input: in range,
// masked by the steps, sorted by time with ties in arrival order.
func points(q *analytics.FunnelQuery, evs []reftest.Event) []analytics.Point {
	evs = slices.Clone(evs)
	slices.SortStableFunc(evs, func(a, b reftest.Event) int { return a.Seq - b.Seq })
	var pts []analytics.Point
	for _, e := range evs {
		if e.T < q.From.UnixMicro() || e.T >= q.To.UnixMicro() {
			continue
		}
		var m uint64
		for k, s := range q.Steps {
			if reftest.Match(s.Condition, e) {
				m |= 1 << k
			}
		}
		if m != 0 {
			pts = append(pts, analytics.Point{T: e.T, Mask: m})
		}
	}
	slices.SortStableFunc(pts, func(a, b analytics.Point) int { return int(a.T - b.T) })
	return pts
}
