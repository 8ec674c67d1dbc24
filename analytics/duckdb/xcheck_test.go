package duckdb_test

import (
	"context"
	"math/rand/v2"
	"testing"

	"tandem/analytics"
	adb "tandem/analytics/duckdb"
	"tandem/analytics/reftest"
	"tandem/eventstore"
	"tandem/eventstore/duckdb"
)

// TestFunnelCrossCheck stores random cases in one DuckDB store (each case
// with its own event names and profiles) and compares every answer of the
// backend (SQL, or the Go engine for repeated non-strict steps) and of the
// Go engine over the backend's Scan with the brute-force reference.
func TestFunnelCrossCheck(t *testing.T) {
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
	cases, evs := reftest.Cases(r, reftest.Shapes, perShape)
	if _, err := store.Append(ctx, evs); err != nil {
		t.Fatal(err)
	}
	backend := store.Analytics().(*adb.Backend)
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
			if d := reftest.DiffSteps(got.Steps, want.Steps); d != "" {
				t.Fatalf("case %d %s:\n%s\nquery %+v\nevents %+v", i, name, d, q, c.Events)
			}
		}
		if _, _, ok := backend.FunnelSQL(&c.Query); ok {
			sqlCases++
		}
	}
	t.Logf("%d cases (%d events; %d answered in SQL by the backend), each checked through the backend and the Go engine: no differences from the reference",
		len(cases), len(evs), sqlCases)
}
