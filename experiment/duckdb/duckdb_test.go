package duckdb_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	adb "tandem/analytics/duckdb"
	"tandem/event"
	"tandem/eventstore"
	"tandem/eventstore/clickhouse"
	"tandem/eventstore/duckdb"
	"tandem/experiment"
	"tandem/experiment/stats"
	"tandem/testserver"
)

// TestMain stops the ClickHouse server TestRulesClickHouse started.
func TestMain(m *testing.M) { testserver.Main(m) }

var t0 = time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)

type ev struct {
	user, anon, name string
	at               time.Duration
	props            map[string]any
}

var seq int

func mk(e ev) event.Event {
	seq++
	body := map[string]any{"type": "track", "event": e.name, "properties": e.props}
	raw, _ := json.Marshal(body)
	ts := t0.Add(e.at)
	return event.Event{SourceID: "src", MessageID: fmt.Sprintf("m%d", seq), Type: "track", Name: e.name,
		UserID: e.user, AnonymousID: e.anon, Timestamp: ts, ReceivedAt: ts, Raw: raw}
}

func exposure(user string, at time.Duration, v string) ev {
	return ev{user: user, name: "Experiment Viewed", at: at, props: map[string]any{"experiment_id": "hero", "variation_id": v}}
}

func order(user string, at time.Duration, rev any) ev {
	return ev{user: user, name: "Order Completed", at: at, props: map[string]any{"revenue": rev}}
}

func spec() experiment.Spec {
	return experiment.Spec{Key: "hero", ExposureEvent: "Experiment Viewed", ExperimentProperty: "experiment_id",
		VariationProp: "variation_id", Variations: []string{"a", "b"}, From: t0, End: t0.Add(30 * 24 * time.Hour),
		Metrics: []experiment.MetricSpec{
			{Kind: experiment.Conversion, Event: "Order Completed", Window: 7 * 24 * time.Hour, Lookback: 7 * 24 * time.Hour},
			{Kind: experiment.Revenue, Event: "Order Completed", Property: "revenue", Lookback: experiment.DefaultLookback},
			{Kind: experiment.Count, Event: "Page Viewed", Lookback: experiment.DefaultLookback},
		}}
}

func open(t *testing.T) *duckdb.Store {
	t.Helper()
	s, err := duckdb.Open(":memory:")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func both(t *testing.T, s *duckdb.Store, sp experiment.Spec) (sqlSums, goSums *experiment.Sums) {
	t.Helper()
	ctx := context.Background()
	var err error
	if sqlSums, err = s.Experiments().Aggregate(ctx, sp); err != nil {
		t.Fatalf("SQL: %v", err)
	}
	goAgg := experiment.ScanAggregator{Src: s.Analytics().(*adb.Backend)}
	if goSums, err = goAgg.Aggregate(ctx, sp); err != nil {
		t.Fatalf("Go: %v", err)
	}
	return sqlSums, goSums
}

func ys(vals ...[2]float64) stats.Moments {
	var m stats.Moments
	for _, v := range vals {
		m.Unit(v[0], v[1])
	}
	return m
}

// TestRules checks the exposure and metric rules on hand-made profiles,
// through the SQL path and the Go path.
func TestRules(t *testing.T) {
	s := open(t)
	want := storeRules(t, s)
	sq, gs := both(t, s, spec())
	for name, got := range map[string]*experiment.Sums{"SQL": sq, "Go": gs} {
		if !sameSums(got, want) {
			t.Errorf("%s sums:\n got %+v\nwant %+v", name, got, want)
		}
	}
}

// TestRulesClickHouse: on the ClickHouse event store, results go through
// the Go path over its analytics backend, with the same answers.
func TestRulesClickHouse(t *testing.T) {
	ctx := context.Background()
	s, err := clickhouse.Open(ctx, testserver.ClickHouse(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	want := storeRules(t, s)
	agg := experiment.AggregatorFor(s)
	if _, ok := agg.(experiment.ScanAggregator); !ok {
		t.Fatalf("ClickHouse aggregator is %T, want the Go path", agg)
	}
	got, err := agg.Aggregate(ctx, spec())
	if err != nil {
		t.Fatal(err)
	}
	if !sameSums(got, want) {
		t.Errorf("ClickHouse sums:\n got %+v\nwant %+v", got, want)
	}
}

// storeRules stores the hand-made profiles in s and returns their sums.
func storeRules(t *testing.T, s eventstore.Store) *experiment.Sums {
	t.Helper()
	h := time.Hour
	d := 24 * h
	evs := []ev{
		// p1: a; two orders in the window; two page views.
		exposure("p1", h, "a"), order("p1", 2*h, 10), order("p1", 3*h, "5.5"),
		{user: "p1", name: "Page Viewed", at: 90 * time.Minute}, {user: "p1", name: "Page Viewed", at: 100 * time.Minute},
		// p2: b; the order is after the conversion window (7 days) but
		// counts as revenue (no window).
		exposure("p2", h, "b"), order("p2", 9*d, 20),
		// p3: exposed to a, then b before converting: excluded.
		exposure("p3", h, "a"), exposure("p3", 2*h, "b"), order("p3", 3*h, 1),
		// p4: b, converts, then sees a: the later exposure does not count.
		exposure("p4", h, "b"), order("p4", 2*h, 7), exposure("p4", 5*h, "a"),
		// p5: bought before exposure: not a conversion, but its
		// pre-exposure value.
		order("p5", -2*d, 30), exposure("p5", h, "a"),
		// p6: exposed before the experiment's start; p9 after its end;
		// p8 to another experiment: none is a unit.
		exposure("p6", -h, "a"), exposure("p9", 31*d, "a"),
		{user: "p8", name: "Experiment Viewed", at: h, props: map[string]any{"experiment_id": "other", "variation_id": "a"}},
		// An unknown variation is no exposure.
		exposure("p10", h, "zzz"),
	}
	// p7: exposed on the web anonymously, bought as a known customer;
	// identity resolution linked both keys to profile P7.
	evs = append(evs, ev{anon: "a7", name: "Experiment Viewed", at: h, props: map[string]any{"experiment_id": "hero", "variation_id": "b"}},
		order("u7", 2*h, 3))
	var all []event.Event
	for _, e := range evs {
		all = append(all, mk(e))
	}
	ctx := context.Background()
	if _, err := s.Append(ctx, all); err != nil {
		t.Fatal(err)
	}
	if err := s.LinkProfiles(ctx, []eventstore.ProfileLink{{Key: "anonymous_id:a7", ProfileID: "P7"}, {Key: "user_id:u7", ProfileID: "P7"}}); err != nil {
		t.Fatal(err)
	}
	return &experiment.Sums{
		Units:    []int64{2, 3},
		Excluded: 1,
		Metrics: [][]stats.Moments{
			{ys([2]float64{1, 0}, [2]float64{0, 1}), ys([2]float64{0, 0}, [2]float64{1, 0}, [2]float64{1, 0})},
			{ys([2]float64{15.5, 0}, [2]float64{0, 30}), ys([2]float64{20, 0}, [2]float64{7, 0}, [2]float64{3, 0})},
			{ys([2]float64{2, 0}, [2]float64{0, 0}), ys([2]float64{0, 0}, [2]float64{0, 0}, [2]float64{0, 0})},
		},
	}
}

func sameSums(a, b *experiment.Sums) bool {
	if !reflect.DeepEqual(a.Units, b.Units) || a.Excluded != b.Excluded || len(a.Metrics) != len(b.Metrics) {
		return false
	}
	for j := range a.Metrics {
		for i := range a.Metrics[j] {
			x, y := a.Metrics[j][i], b.Metrics[j][i]
			for _, p := range [][2]float64{{x.N, y.N}, {x.Y, y.Y}, {x.YY, y.YY}, {x.X, y.X}, {x.XX, y.XX}, {x.XY, y.XY}} {
				if math.Abs(p[0]-p[1]) > 1e-9*math.Max(1, math.Abs(p[1])) {
					return false
				}
			}
		}
	}
	return true
}

// TestCrossCheck compares the SQL path with the Go path on random
// experiments: repeated and mixed exposures, conversions before and after
// exposure, revenue as numbers and strings, with and without profile
// links.
func TestCrossCheck(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 18))
	for round := range 4 {
		s := open(t)
		var all []event.Event
		vars := []string{"a", "b", "c"}
		for p := range 400 {
			user := fmt.Sprintf("u%d", p)
			anon := ""
			if r.IntN(3) == 0 {
				anon, user = fmt.Sprintf("anon%d", p), ""
			}
			for range r.IntN(4) {
				e := exposure(user, time.Duration(r.IntN(40*24)-5*24)*time.Hour, vars[r.IntN(3)])
				if r.IntN(5) > 0 {
					e.props["variation_id"] = vars[p%3]
				}
				e.anon = anon
				all = append(all, mk(e))
			}
			for range r.IntN(5) {
				var rev any = float64(r.IntN(10000)) / 100
				if r.IntN(4) == 0 {
					rev = fmt.Sprint(rev)
				}
				o := order(user, time.Duration(r.IntN(50*24)-15*24)*time.Hour, rev)
				o.anon = anon
				all = append(all, mk(o))
			}
			for range r.IntN(3) {
				all = append(all, mk(ev{user: user, anon: anon, name: "Page Viewed", at: time.Duration(r.IntN(40*24)) * time.Hour}))
			}
		}
		ctx := context.Background()
		if _, err := s.Append(ctx, all); err != nil {
			t.Fatal(err)
		}
		if round%2 == 1 {
			var links []eventstore.ProfileLink
			for p := 0; p < 400; p += 2 {
				links = append(links, eventstore.ProfileLink{Key: fmt.Sprintf("anonymous_id:anon%d", p), ProfileID: fmt.Sprintf("P%d", p/4)},
					eventstore.ProfileLink{Key: fmt.Sprintf("user_id:u%d", p), ProfileID: fmt.Sprintf("P%d", p/4)})
			}
			if err := s.LinkProfiles(ctx, links); err != nil {
				t.Fatal(err)
			}
		}
		sp := spec()
		sp.Variations = vars
		if round >= 2 {
			sp.Metrics[0].Window = 0 // conversion until the end
			sp.Metrics = append([]experiment.MetricSpec{{Kind: experiment.Count, Event: "Page Viewed", Window: 48 * time.Hour, Lookback: 48 * time.Hour}}, sp.Metrics...)
		}
		sq, gs := both(t, s, sp)
		if !sameSums(sq, gs) {
			t.Fatalf("round %d: SQL and Go differ:\nSQL %+v\n Go %+v", round, sq, gs)
		}
		if sq.Excluded == 0 || sq.Units[0] == 0 {
			t.Fatalf("round %d: the data exercise too little: %+v", round, sq)
		}
	}
}
