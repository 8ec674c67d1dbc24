package reftest

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"tandem/analytics"
	"tandem/event"
)

// Shapes are the case shapes the backends' cross-checks draw from:
// distinct times, tied times, and tied times with repeated steps; all
// with property filters and strict funnels.
var Shapes = []Options{
	{Profiles: 5, Events: 8, Names: 4, Steps: 4, Ties: false, Filters: true, StrictToo: true, MaxSeconds: 20},
	{Profiles: 5, Events: 8, Names: 4, Steps: 4, Ties: true, Filters: true, StrictToo: true, MaxSeconds: 8},
	{Profiles: 4, Events: 8, Names: 3, Steps: 4, Ties: true, Repeats: true, Filters: true, StrictToo: true, MaxSeconds: 6},
}

// Cases draws perShape cases of each shape for one shared event store:
// every case's profiles, event names and step events are prefixed with
// its own "s<shape>c<i>.", so that cases do not see each other's events.
// It returns the cases and all their events as the store keeps them (see
// [StoredEvent]).
func Cases(r *rand.Rand, shapes []Options, perShape int) ([]Case, []event.Event) {
	var cases []Case
	var evs []event.Event
	for si, o := range shapes {
		for i := 0; i < perShape; i++ {
			c := Random(r, o)
			prefix := fmt.Sprintf("s%dc%d.", si, i)
			for j := range c.Events {
				c.Events[j].Profile = prefix + c.Events[j].Profile
				c.Events[j].Name = prefix + c.Events[j].Name
			}
			for j := range c.Query.Steps {
				c.Query.Steps[j].Event = prefix + c.Query.Steps[j].Event
			}
			cases = append(cases, c)
			for _, e := range c.Events {
				evs = append(evs, StoredEvent(e))
			}
		}
	}
	return cases, evs
}

// StoredEvent is e as a track event from source "src" whose userId is
// e's profile.
func StoredEvent(e Event) event.Event {
	ts := time.UnixMicro(e.T).UTC()
	raw, _ := json.Marshal(map[string]any{"type": "track", "event": e.Name, "userId": e.Profile, "properties": e.Props})
	return event.Event{SourceID: "src", MessageID: fmt.Sprintf("m%s-%d", e.Profile, e.Seq), Type: "track", Name: e.Name,
		UserID: e.Profile, Timestamp: ts, ReceivedAt: ts, Raw: raw}
}

// DiffSteps returns "" when got and want are the same funnel steps, else
// both as JSON. Medians are compared to a microsecond: engines compute
// them in floating point by different formulas.
func DiffSteps(got, want []analytics.FunnelStepResult) string {
	if sameSteps(got, want) {
		return ""
	}
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(want)
	return fmt.Sprintf("got  %s\nwant %s", g, w)
}

func sameSteps(a, b []analytics.FunnelStepResult) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if x.Name != y.Name || x.Profiles != y.Profiles || x.Conversion != y.Conversion || x.FromPrevious != y.FromPrevious {
			return false
		}
		if (x.MedianSeconds == nil) != (y.MedianSeconds == nil) {
			return false
		}
		if x.MedianSeconds != nil && math.Abs(*x.MedianSeconds-*y.MedianSeconds) > 1e-6 {
			return false
		}
	}
	return true
}
