package duckdb_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"tandem/analytics"
	adb "tandem/analytics/duckdb"
	"tandem/analytics/reftest"
	"tandem/event"
	"tandem/eventstore"
	"tandem/eventstore/duckdb"
)

// TestFunnelCrossCheck stores random cases in one DuckDB store (each case
// with its own event names and profiles) and compares every answer of the
// backend (SQL, or the Go engine for repeated non-strict steps) and of the
// Go engine over the backend's Scan with the brute-force reference.
func TestFunnelCrossCheck(t *testing.T) {
	shapes := []reftest.Options{
		{Profiles: 5, Events: 8, Names: 4, Steps: 4, Ties: false, Filters: true, StrictToo: true, MaxSeconds: 20},
		{Profiles: 5, Events: 8, Names: 4, Steps: 4, Ties: true, Filters: true, StrictToo: true, MaxSeconds: 8},
		{Profiles: 4, Events: 8, Names: 3, Steps: 4, Ties: true, Repeats: true, Filters: true, StrictToo: true, MaxSeconds: 6},
	}
	perShape := 400
	if testing.Short() {
		perShape = 100
	}
	store, err := duckdb.Open(":memory:")
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	ctx := context.Background()
	r := rand.New(rand.NewPCG(7, 11))
	var cases []reftest.Case
	var evs []event.Event
	for si, o := range shapes {
		for i := 0; i < perShape; i++ {
			c := reftest.Random(r, o)
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
				evs = append(evs, storedEvent(e))
			}
		}
	}
	if _, err := store.Append(ctx, evs); err != nil {
		t.Fatal(err)
	}
	backend := adb.New(store.DB())
	engine := &analytics.Engine{Src: backend}
	sqlCases := 0
	for i := range cases {
		if i == len(cases)/2 {
			// The second half with a profile link present (to nobody's
			// events), so that the backend's SQL joins profile_links.
			if err := store.LinkProfiles(ctx, []eventstore.ProfileLink{{Key: "user_id:nobody", ProfileID: "x"}}); err != nil {
				t.Fatal(err)
			}
		}
		c := &cases[i]
		want := reftest.Expected(c)
		for name, b := range map[string]analytics.Backend{"backend": backend, "engine": engine} {
			q := c.Query
			got, err := b.Funnel(ctx, &q)
			if err != nil {
				t.Fatalf("case %d %s: %v", i, name, err)
			}
			if !sameSteps(got.Steps, want.Steps) {
				g, _ := json.Marshal(got.Steps)
				w, _ := json.Marshal(want.Steps)
				t.Fatalf("case %d %s:\ngot  %s\nwant %s\nquery %+v\nevents %+v", i, name, g, w, q, c.Events)
			}
		}
		if _, _, ok := adb.FunnelSQL(&c.Query); ok {
			sqlCases++
		}
	}
	t.Logf("%d cases (%d events; %d answered in SQL by the backend), each checked through the backend and the Go engine: no differences from the reference",
		len(cases), len(evs), sqlCases)
}

func storedEvent(e reftest.Event) event.Event {
	ts := time.UnixMicro(e.T).UTC()
	raw, _ := json.Marshal(map[string]any{"type": "track", "event": e.Name, "userId": e.Profile, "properties": e.Props})
	return event.Event{SourceID: "src", MessageID: fmt.Sprintf("m%s-%d", e.Profile, e.Seq), Type: "track", Name: e.Name,
		UserID: e.Profile, Timestamp: ts, ReceivedAt: ts, Raw: raw}
}

// sameSteps compares funnel steps, medians to a microsecond (they are
// computed in floating point by different formulas).
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
