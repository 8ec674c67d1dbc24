package clickhouse_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"tandem/analytics"
	ach "tandem/analytics/clickhouse"
	"tandem/analytics/reftest"
	"tandem/analytics/scripttest"
	"tandem/event"
	"tandem/eventstore"
	"tandem/eventstore/clickhouse"
	"tandem/testserver"
)

func TestMain(m *testing.M) { testserver.Main(m) }

var update = flag.Bool("update", false, "rewrite the expected answers in ../testdata/*.txt")

func open(t *testing.T) *clickhouse.Store {
	t.Helper()
	s, err := clickhouse.Open(context.Background(), testserver.ClickHouse(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestScripts runs the shared analytics scripts against the ClickHouse
// backend (SQL journeys) and the Go engine over its Scan, each script in a
// fresh database. The second pass splits every scan into buckets of one
// row, so that the bucketing by profile is exercised on the same answers.
func TestScripts(t *testing.T) {
	files, _ := filepath.Glob("../testdata/*.txt")
	if len(files) == 0 {
		t.Fatal("no scripts in ../testdata")
	}
	for _, bucketRows := range []int64{ach.DefaultBucketRows, 1} {
		for _, f := range files {
			t.Run(fmt.Sprintf("%s/bucket%d", filepath.Base(f), bucketRows), func(t *testing.T) {
				s := open(t)
				b := ach.New(s)
				b.BucketRows = bucketRows
				scripttest.Run(t, f, s, b, b, *update && bucketRows != 1)
			})
		}
	}
}

// TestFunnelCrossCheck stores random cases in one database (each case with
// its own event names and profiles) and compares the backend's funnel
// answers with the brute-force reference.
func TestFunnelCrossCheck(t *testing.T) {
	shapes := []reftest.Options{
		{Profiles: 5, Events: 8, Names: 4, Steps: 4, Ties: false, Filters: true, StrictToo: true, MaxSeconds: 20},
		{Profiles: 5, Events: 8, Names: 4, Steps: 4, Ties: true, Filters: true, StrictToo: true, MaxSeconds: 8},
		{Profiles: 4, Events: 8, Names: 3, Steps: 4, Ties: true, Repeats: true, Filters: true, StrictToo: true, MaxSeconds: 6},
	}
	perShape := 200
	if testing.Short() {
		perShape = 30
	}
	store := open(t)
	ctx := context.Background()
	r := rand.New(rand.NewPCG(13, 17))
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
	backend := ach.New(store)
	links := 0
	for i := range cases {
		if i == len(cases)/2 {
			// The second half with profile links present, so that scans
			// join profile_links: one to nobody's events, and one that
			// moves a random case's profile to a new id (the reference
			// sees the renamed profile).
			if err := store.LinkProfiles(ctx, []eventstore.ProfileLink{{Key: "user_id:nobody", ProfileID: "x"}}); err != nil {
				t.Fatal(err)
			}
		}
		c := &cases[i]
		if i > len(cases)/2 && len(c.Events) > 0 && i%5 == 0 {
			old := c.Events[0].Profile
			if err := store.LinkProfiles(ctx, []eventstore.ProfileLink{{Key: eventstore.ProfileKey(old, ""), ProfileID: "P." + old}}); err != nil {
				t.Fatal(err)
			}
			for j := range c.Events {
				if c.Events[j].Profile == old {
					c.Events[j].Profile = "P." + old
				}
			}
			links++
		}
		want := reftest.Expected(c)
		q := c.Query
		got, err := backend.Funnel(ctx, &q)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		if !sameSteps(got.Steps, want.Steps) {
			g, _ := json.Marshal(got.Steps)
			w, _ := json.Marshal(want.Steps)
			t.Fatalf("case %d:\ngot  %s\nwant %s\nquery %+v\nevents %+v", i, g, w, q, c.Events)
		}
	}
	t.Logf("%d cases (%d events, %d relinked profiles): the ClickHouse backend's funnels equal the reference on all", len(cases), len(evs), links)
}

func storedEvent(e reftest.Event) event.Event {
	ts := time.UnixMicro(e.T).UTC()
	raw, _ := json.Marshal(map[string]any{"type": "track", "event": e.Name, "userId": e.Profile, "properties": e.Props})
	return event.Event{SourceID: "src", MessageID: fmt.Sprintf("m%s-%d", e.Profile, e.Seq), Type: "track", Name: e.Name,
		UserID: e.Profile, Timestamp: ts, ReceivedAt: ts, Raw: raw}
}

// sameSteps compares funnel steps, medians to a microsecond.
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
