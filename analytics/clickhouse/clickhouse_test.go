package clickhouse_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"tandem/analytics"
	ach "tandem/analytics/clickhouse"
	"tandem/analytics/reftest"
	"tandem/analytics/scripttest"
	"tandem/event"
	"tandem/eventstore"
	"tandem/eventstore/clickhouse"
	"tandem/eventstore/duckdb"
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
				b := s.Analytics().(*ach.Backend)
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
	perShape := 200
	if testing.Short() {
		perShape = 30
	}
	store := open(t)
	ctx := context.Background()
	r := rand.New(rand.NewPCG(13, 17))
	cases, evs := reftest.Cases(r, reftest.Shapes, perShape)
	if _, err := store.Append(ctx, evs); err != nil {
		t.Fatal(err)
	}
	backend := store.Analytics()
	links, inSQL := 0, 0
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
		if ach.FunnelInSQL(&q) {
			inSQL++
		}
		got, err := backend.Funnel(ctx, &q)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		if d := reftest.DiffSteps(got.Steps, want.Steps); d != "" {
			t.Fatalf("case %d:\n%s\nquery %+v\nevents %+v", i, d, q, c.Events)
		}
	}
	if inSQL < len(cases)/10 {
		t.Fatalf("only %d of %d cases went through the funnel SQL", inSQL, len(cases))
	}
	t.Logf("%d cases (%d events, %d relinked profiles, %d answered in SQL, the rest by the Go engine): the ClickHouse backend's funnels equal the reference on all", len(cases), len(evs), links, inSQL)
}

// TestAgainstDuckDB stores the same random events and links in the
// ClickHouse store and in an embedded DuckDB store, and compares every
// journey, paths and retention answer (and funnels with breakdowns) of
// the two backends.
func TestAgainstDuckDB(t *testing.T) {
	chs := open(t)
	dds, err := duckdb.Open(":memory:")
	if err != nil {
		t.Fatal(err)
	}
	defer dds.Close()
	ctx := context.Background()
	r := rand.New(rand.NewPCG(21, 23))
	names := []string{"Ad Clicked", "Product Viewed", "Order Completed", "Order Delivered", "Ticket Opened", "Login"}
	base := time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC)
	var evs []event.Event
	for i := 0; i < 3000; i++ {
		p := fmt.Sprintf("u%d", r.IntN(200))
		ts := base.Add(time.Duration(r.Int64N(20*86400)) * time.Second)
		name := names[r.IntN(len(names))]
		typ := "track"
		if r.IntN(10) == 0 {
			typ = "page"
		}
		raw, _ := json.Marshal(map[string]any{"type": typ, "event": name, "userId": p,
			"properties": map[string]any{"plan": fmt.Sprintf("p%d", r.IntN(3)), "n": r.IntN(5)},
			"context":    map[string]any{"traits": map[string]any{"tier": fmt.Sprintf("t%d", r.IntN(2))}}})
		evs = append(evs, event.Event{SourceID: "src", MessageID: fmt.Sprintf("m%d", i), Type: typ, Name: name,
			UserID: p, Timestamp: ts, ReceivedAt: ts, Raw: raw})
	}
	var links []eventstore.ProfileLink
	for i := 0; i < 40; i++ {
		links = append(links, eventstore.ProfileLink{Key: fmt.Sprintf("user_id:u%d", r.IntN(200)), ProfileID: fmt.Sprintf("P%d", r.IntN(15))})
	}
	for _, s := range []scripttest.Store{chs, dds} {
		if _, err := s.Append(ctx, evs); err != nil {
			t.Fatal(err)
		}
		if err := s.LinkProfiles(ctx, links); err != nil {
			t.Fatal(err)
		}
	}
	cb := chs.Analytics().(*ach.Backend)
	cb.BucketRows = 700 // several buckets
	db := dds.Analytics()
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	rng := analytics.Range{From: analytics.At(base.Add(2 * 86400 * time.Second)), To: analytics.At(base.Add(18 * 86400 * time.Second))}
	cond := func(i int) analytics.Condition { return analytics.Condition{Event: names[i%len(names)]} }
	compared := 0
	check := func(what string, run func(analytics.Backend) (any, error)) {
		t.Helper()
		a, err := run(cb)
		if err != nil {
			t.Fatalf("%s: clickhouse: %v", what, err)
		}
		b, err := run(db)
		if err != nil {
			t.Fatalf("%s: duckdb: %v", what, err)
		}
		// Quantiles are computed by different formulas (Go, DuckDB's
		// quantile_cont): equal to a millisecond.
		if x, y := roundSeconds(scripttest.Render(a)), roundSeconds(scripttest.Render(b)); x != y {
			t.Fatalf("%s: answers differ\nclickhouse:\n%s\nduckdb:\n%s", what, x, y)
		}
		compared++
	}
	for i := 0; i < 12; i++ {
		jq := &analytics.JourneyQuery{Within: analytics.Seconds(int64(1+r.IntN(5)) * 86400), Range: rng}
		if err := jq.Validate(now, scripttestStages); err != nil {
			t.Fatal(err)
		}
		check(fmt.Sprintf("journey %d", i), func(b analytics.Backend) (any, error) { return b.Journey(ctx, jq) })
		pq := &analytics.PathsQuery{Start: cond(i), Steps: 1 + r.IntN(4), Range: rng}
		if i%2 == 1 {
			pq.Direction = "previous"
		}
		if err := pq.Validate(now); err != nil {
			t.Fatal(err)
		}
		check(fmt.Sprintf("paths %d", i), func(b analytics.Backend) (any, error) { return b.Paths(ctx, pq) })
		rq := &analytics.RetentionQuery{Start: cond(i), Return: cond(i + 1 + r.IntN(3)), Period: []string{"day", "week"}[i%2],
			Timezone: []string{"UTC", "America/New_York", "Asia/Tokyo"}[i%3], Range: rng}
		if err := rq.Validate(now); err != nil {
			t.Fatal(err)
		}
		check(fmt.Sprintf("retention %d", i), func(b analytics.Backend) (any, error) { return b.Retention(ctx, rq) })
		fq := &analytics.FunnelQuery{Window: analytics.Seconds(int64(r.IntN(4)) * 86400), Range: rng}
		for k := 0; k < 2+r.IntN(3); k++ {
			st := analytics.FunnelStep{Condition: cond(i + k)}
			if r.IntN(3) == 0 {
				st.Where = []analytics.Filter{{Property: "n", Op: "gte", Value: float64(r.IntN(5))}}
			}
			fq.Steps = append(fq.Steps, st)
		}
		fq.Breakdown = []*analytics.Breakdown{nil, {Property: "plan"}, {Trait: "tier"}}[i%3]
		if err := fq.Validate(now); err != nil {
			t.Fatal(err)
		}
		check(fmt.Sprintf("funnel %d", i), func(b analytics.Backend) (any, error) { return b.Funnel(ctx, fq) })
	}
	t.Logf("%d answers over %d events and %d links: ClickHouse and DuckDB backends agree on all", compared, len(evs), len(links))
}

var secondsRE = regexp.MustCompile(`[0-9.]+s\b`)

func roundSeconds(s string) string {
	return secondsRE.ReplaceAllStringFunc(s, func(x string) string {
		f, err := strconv.ParseFloat(strings.TrimSuffix(x, "s"), 64)
		if err != nil {
			return x
		}
		return strconv.FormatFloat(f, 'f', 3, 64) + "s"
	})
}

var scripttestStages = []analytics.Stage{
	{Name: "awareness", Department: "marketing", Events: []string{"Ad Clicked"}},
	{Name: "consideration", Department: "marketing", Events: []string{"Product Viewed"}},
	{Name: "purchase", Department: "sales", Events: []string{"Order Completed"}},
	{Name: "delivery", Department: "operations", Events: []string{"Order Delivered"}},
	{Name: "service", Department: "service", Events: []string{"Ticket Opened"}},
}
