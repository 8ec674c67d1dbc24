package duckdb_test

import (
	"context"
	"math/rand/v2"
	"testing"

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
// Go engine over the backend's Scan with the brute-force reference. The
// first half runs without profile links; the second half's events are
// stored under keys of their own (user ids, anonymous ids, both) that
// links join into the case's profiles, as identity resolution does, so
// the backend's SQL resolves them.
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
	cases, _ := reftest.Cases(r, reftest.Shapes, perShape)
	half := len(cases) / 2
	var evs, linkedEvs []event.Event
	var links []eventstore.ProfileLink
	for i, c := range cases {
		for _, e := range c.Events {
			ev := reftest.StoredEvent(e)
			if i < half {
				evs = append(evs, ev)
				continue
			}
			// Under a key of its own, linked to the profile.
			switch r.IntN(4) {
			case 0:
				ev.UserID = e.Profile + "~u"
			case 1:
				ev.UserID = e.Profile + "~u"
				ev.AnonymousID = e.Profile + "~x" // the user id is the key
			case 2:
				ev.UserID, ev.AnonymousID = "", e.Profile+"~a"
			case 3:
				ev.UserID = e.Profile // its own id, linked to itself
			}
			linkedEvs = append(linkedEvs, ev)
			links = append(links, eventstore.ProfileLink{Key: eventstore.ProfileKey(ev.UserID, ev.AnonymousID), ProfileID: e.Profile})
		}
	}
	if _, err := store.Append(ctx, evs); err != nil {
		t.Fatal(err)
	}
	backend := store.Analytics().(*adb.Backend)
	engine := &analytics.Engine{Src: backend}
	sqlCases := 0
	for i := range cases {
		if i == half {
			if _, err := store.Append(ctx, linkedEvs); err != nil {
				t.Fatal(err)
			}
			if err := store.LinkProfiles(ctx, links); err != nil {
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
	t.Logf("%d cases (%d events, %d of them under linked keys; %d answered in SQL by the backend), each checked through the backend and the Go engine: no differences from the reference",
		len(cases), len(evs)+len(linkedEvs), len(linkedEvs), sqlCases)
}
