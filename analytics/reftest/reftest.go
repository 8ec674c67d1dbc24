// Package reftest holds a deliberately simple reference implementation of
// tandem's funnel semantics, and random event sets, for cross-checking
// the engines (the Go core in analytics and every backend).
//
// The reference enumerates every chain of distinct events by brute force,
// so it is only fit for small profiles; it shares no code with the
// engines, and evaluates property filters on the events' JSON itself.
// [Cases], [StoredEvent] and [DiffSteps] are what the backends'
// cross-checks share: random cases in one store, and the comparison.
package reftest

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"tandem/analytics"
)

// Event is one event of a random case.
type Event struct {
	Profile string
	Name    string
	T       int64          // µs since the epoch
	Props   map[string]any // properties, JSON-like (float64, string, bool)
	Seq     int            // arrival order
}

// Case is a random funnel question over Events.
type Case struct {
	Events []Event
	Query  analytics.FunnelQuery
}

// Outcome is a profile's reference answer.
type Outcome struct {
	Depth int
	Times []int64 // of the reported chain: latest start, then earliest times
}

// Match reports whether e satisfies c.
func Match(c analytics.Condition, e Event) bool {
	if e.Name != c.Event {
		return false
	}
	for _, f := range c.Where {
		if !holds(f.Op, f.Value, e.Props[f.Property]) {
			return false
		}
	}
	return true
}

// holds says whether the filter op with value want holds for the property
// value v (nil: missing). It is written from the documentation
// (docs/analytics.md), apart from package analytics' own definition, so
// that the cross-checks test that one: a missing property fails every op
// but neq and not_exists; eq and neq compare as numbers when want is a
// number, else as text; in is eq with any of want's values; contains is a
// substring test; gt, gte, lt and lte compare numbers.
func holds(op string, want, v any) bool {
	if op == "neq" {
		return !holds("eq", want, v)
	}
	if op == "not_exists" {
		return v == nil
	}
	if v == nil {
		return false
	}
	if op == "in" {
		return slices.ContainsFunc(want.([]any), func(w any) bool { return holds("eq", w, v) })
	}
	text := jsonText(v)
	num, err := strconv.ParseFloat(text, 64)
	isNum := err == nil
	tests := map[string]func() bool{
		"exists":   func() bool { return true },
		"contains": func() bool { return strings.Contains(text, want.(string)) },
		"gt":       func() bool { return isNum && num > want.(float64) },
		"gte":      func() bool { return isNum && num >= want.(float64) },
		"lt":       func() bool { return isNum && num < want.(float64) },
		"lte":      func() bool { return isNum && num <= want.(float64) },
		"eq": func() bool {
			if n, ok := want.(float64); ok {
				return isNum && num == n
			}
			return text == jsonText(want)
		},
	}
	test, ok := tests[op]
	if !ok {
		panic("reftest: op " + op)
	}
	return test()
}

// jsonText is the text of a JSON scalar as a store reads it from the
// event: a string itself, anything else as JSON writes it.
func jsonText(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	b, err := json.Marshal(v)
	if err != nil {
		panic("reftest: " + err.Error())
	}
	return string(b)
}

// Funnel is the reference answer for one profile's events (any order):
// every chain e1..ek of distinct events, ei satisfying step i, times
// non-decreasing (increasing when strict), ek no later than e1 + window,
// is tried.
func Funnel(q *analytics.FunnelQuery, events []Event) Outcome {
	from, to := q.From.UnixMicro(), q.To.UnixMicro()
	var evs []Event
	for _, e := range events {
		if e.T >= from && e.T < to {
			evs = append(evs, e)
		}
	}
	best := Outcome{}
	used := make([]bool, len(evs))
	var times []int64
	better := func() bool {
		if len(times) != best.Depth {
			return len(times) > best.Depth
		}
		if times[0] != best.Times[0] {
			return times[0] > best.Times[0]
		}
		for i := 1; i < len(times); i++ {
			if times[i] != best.Times[i] {
				return times[i] < best.Times[i]
			}
		}
		return false
	}
	var walk func()
	walk = func() {
		if len(times) > 0 && better() {
			best = Outcome{Depth: len(times), Times: slices.Clone(times)}
		}
		k := len(times)
		if k == len(q.Steps) {
			return
		}
		for i, e := range evs {
			if used[i] || !Match(q.Steps[k].Condition, e) {
				continue
			}
			if k > 0 {
				last := times[k-1]
				if e.T < last || (q.Strict && e.T == last) || e.T > times[0]+q.Window.Micros {
					continue
				}
			}
			used[i] = true
			times = append(times, e.T)
			walk()
			times = times[:k]
			used[i] = false
		}
	}
	walk()
	return best
}

// Profiles groups events by profile, in order of first appearance.
func Profiles(events []Event) (names []string, by map[string][]Event) {
	by = map[string][]Event{}
	for _, e := range events {
		if _, ok := by[e.Profile]; !ok {
			names = append(names, e.Profile)
		}
		by[e.Profile] = append(by[e.Profile], e)
	}
	return names, by
}

// Options shape random cases.
type Options struct {
	Profiles   int  // at most this many profiles
	Events     int  // at most this many events per profile
	Names      int  // event names drawn from the first Names of A, B, C, …
	Steps      int  // at most this many steps
	Ties       bool // times on a coarse grid, so that equal times are common
	Repeats    bool // steps may repeat an event name
	Filters    bool // steps may carry property filters
	StrictToo  bool // strict funnels too
	MaxSeconds int  // events fall in [base, base+MaxSeconds s)
}

// Base is the time random events start at.
var Base = time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)

// Random draws a case.
func Random(r *rand.Rand, o Options) Case {
	var c Case
	np := 1 + r.IntN(o.Profiles)
	seq := 0
	for p := 0; p < np; p++ {
		ne := r.IntN(o.Events + 1)
		for i := 0; i < ne; i++ {
			var off int64
			if o.Ties {
				off = int64(r.IntN(o.MaxSeconds)) * 1e6
			} else {
				off = r.Int64N(int64(o.MaxSeconds) * 1e6)
			}
			e := Event{Profile: fmt.Sprintf("p%d", p), Name: string(rune('A' + r.IntN(o.Names))), T: Base.UnixMicro() + off, Seq: seq}
			if r.IntN(3) > 0 {
				e.Props = map[string]any{"v": float64(r.IntN(3))}
			}
			seq++
			c.Events = append(c.Events, e)
		}
	}
	r.Shuffle(len(c.Events), func(i, j int) { c.Events[i], c.Events[j] = c.Events[j], c.Events[i] })
	ns := 1 + r.IntN(o.Steps)
	var used []string
	for len(c.Query.Steps) < ns {
		name := string(rune('A' + r.IntN(o.Names)))
		if !o.Repeats && slices.Contains(used, name) {
			if len(used) == o.Names {
				break
			}
			continue
		}
		used = append(used, name)
		st := analytics.FunnelStep{Condition: analytics.Condition{Event: name}, Name: name}
		if o.Filters && r.IntN(4) == 0 {
			ops := []string{"eq", "neq", "gt", "lte", "exists", "not_exists", "in"}
			f := analytics.Filter{Property: "v", Op: ops[r.IntN(len(ops))], Value: float64(r.IntN(3))}
			switch f.Op {
			case "exists", "not_exists":
				f.Value = nil
			case "in":
				f.Value = []any{float64(r.IntN(3)), float64(r.IntN(3))}
			}
			st.Where = []analytics.Filter{f}
		}
		c.Query.Steps = append(c.Query.Steps, st)
	}
	c.Query.Window = analytics.Seconds(int64(r.IntN(o.MaxSeconds/2 + 1)))
	c.Query.Strict = o.StrictToo && r.IntN(3) == 0
	c.Query.From = analytics.At(Base.Add(time.Duration(r.IntN(3)) * time.Second))
	c.Query.To = analytics.At(Base.Add(time.Duration(o.MaxSeconds-r.IntN(3)) * time.Second))
	return c
}

// Expected is the reference funnel answer for c: profiles per step, and
// the per-step medians over the reported chains.
func Expected(c *Case) *analytics.FunnelResult {
	names, by := Profiles(c.Events)
	n := len(c.Query.Steps)
	counts := make([]int64, n)
	deltas := make([][]float64, n)
	for _, p := range names {
		o := Funnel(&c.Query, by[p])
		for k := 0; k < o.Depth; k++ {
			counts[k]++
			if k > 0 {
				deltas[k] = append(deltas[k], float64(o.Times[k]-o.Times[k-1])/1e6)
			}
		}
	}
	medians := make([]*float64, n)
	for k := 1; k < n; k++ {
		if len(deltas[k]) == 0 {
			continue
		}
		xs := deltas[k]
		slices.Sort(xs)
		m := xs[len(xs)/2]
		if len(xs)%2 == 0 {
			m = (xs[len(xs)/2-1] + xs[len(xs)/2]) / 2
		}
		medians[k] = &m
	}
	return &analytics.FunnelResult{Steps: analytics.StepResults(&c.Query, counts, medians)}
}
