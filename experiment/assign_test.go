package experiment_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"tandem/event"
	"tandem/experiment"
	"tandem/experiment/stats"
	"tandem/identity"
	"tandem/statestore/sqlite/sqlitetest"
)

func def(key string, holdout float64, weights ...float64) *experiment.Experiment {
	e := &experiment.Experiment{Key: key, Holdout: holdout}
	for i, w := range weights {
		e.Variations = append(e.Variations, experiment.Variation{Key: fmt.Sprintf("v%d", i), Weight: w})
	}
	return e
}

// TestAssignSplit: over 100,000 profile ids the holdout and the
// variations come out in the planned proportions, within the chi-squared
// bound (p ≥ 0.001, the SRM threshold).
func TestAssignSplit(t *testing.T) {
	for _, e := range []*experiment.Experiment{def("hero", 0, 50, 50), def("checkout", 0.1, 50, 30, 20), def("price", 0.05, 1, 1, 1, 7)} {
		counts := make([]float64, len(e.Variations)+1) // last: holdout
		idx := map[string]int{}
		for i, v := range e.Variations {
			idx[v.Key] = i
		}
		for i := range 100_000 {
			v, hold := experiment.Assign(e, fmt.Sprintf("prf_%08d", i))
			if hold {
				counts[len(e.Variations)]++
				continue
			}
			counts[idx[v]]++
		}
		plan := make([]float64, len(counts))
		var wsum float64
		for _, v := range e.Variations {
			wsum += v.Weight
		}
		for i, v := range e.Variations {
			plan[i] = (1 - e.Holdout) * v.Weight / wsum
		}
		plan[len(e.Variations)] = e.Holdout
		if e.Holdout == 0 {
			counts, plan = counts[:len(counts)-1], plan[:len(plan)-1]
		}
		chi2, p := stats.SRM(counts, plan)
		t.Logf("%s: counts %v, chi2 %.2f, p %.3f", e.Key, counts, chi2, p)
		if p < stats.SRMThreshold {
			t.Errorf("%s: split %v against plan %v: chi2 %.2f, p %.2g", e.Key, counts, plan, chi2, p)
		}
	}
}

// TestAssignIndependent: changing one experiment's split and holdout does
// not move anybody in another; within an experiment, a larger holdout
// only moves profiles into the holdout.
func TestAssignIndependent(t *testing.T) {
	a, b := def("hero", 0, 50, 50), def("checkout", 0, 50, 50)
	before := map[string]string{}
	bBefore := map[string]string{}
	for i := range 20_000 {
		id := fmt.Sprintf("prf_%d", i)
		before[id], _ = experiment.Assign(a, id)
		bBefore[id], _ = experiment.Assign(b, id)
	}
	b.Variations[0].Weight, b.Variations[1].Weight = 90, 10
	b.Holdout = 0.2
	movedB := 0
	for id, v := range before {
		if got, _ := experiment.Assign(a, id); got != v {
			t.Fatalf("%s moved in hero from %s to %s after checkout's split changed", id, v, got)
		}
		if got, _ := experiment.Assign(b, id); got != bBefore[id] {
			movedB++
		}
	}
	if movedB == 0 {
		t.Fatal("changing checkout's split moved nobody in checkout")
	}
	a.Holdout = 0.3
	for id, v := range before {
		if got, hold := experiment.Assign(a, id); !hold && got != v {
			t.Fatalf("%s moved from %s to %s when the holdout grew", id, v, got)
		}
	}
}

// TestAssignAcrossDevices: a person who identifies on two devices gets
// one variation on both (and as the user id), and a new visitor keeps the
// variation assigned before their first event once it is resolved.
func TestAssignAcrossDevices(t *testing.T) {
	ctx := context.Background()
	db := sqlitetest.Open(t)
	if err := db.Migrate(ctx, identity.Migrations()...); err != nil {
		t.Fatal(err)
	}
	ids, err := identity.NewStore(ctx, db, identity.Options{Rules: identity.DefaultRules()})
	if err != nil {
		t.Fatal(err)
	}
	e := def("hero", 0, 50, 50)
	at := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	n := 0
	ev := func(user, anon string) event.Event {
		n++
		raw, _ := json.Marshal(map[string]string{"type": "identify", "userId": user, "anonymousId": anon})
		return event.Event{SourceID: "src", MessageID: fmt.Sprintf("m%d", n), Type: "identify", UserID: user, AnonymousID: anon,
			Timestamp: at.Add(time.Duration(n) * time.Minute), ReceivedAt: at, Raw: raw}
	}
	split := 0
	for i := range 40 {
		d1, d2, user := fmt.Sprintf("phone-%d", i), fmt.Sprintf("laptop-%d", i), fmt.Sprintf("cust-%d", i)
		// Before any event: the id the profile will have.
		pre, known, err := ids.ProfileFor(ctx, identity.AnonymousID, d1)
		if err != nil || known {
			t.Fatalf("ProfileFor before any event: %v %v", known, err)
		}
		if err := ids.Resolve(ctx, []event.Event{ev("", d1)}); err != nil {
			t.Fatal(err)
		}
		got, known, err := ids.ProfileFor(ctx, identity.AnonymousID, d1)
		if err != nil || !known || got != pre {
			t.Fatalf("after the first event: profile %q (known %v, %v), assigned before as %q", got, known, err, pre)
		}
		// Identify on the phone, then on the laptop.
		if err := ids.Resolve(ctx, []event.Event{ev(user, d1)}); err != nil {
			t.Fatal(err)
		}
		laptopBefore, _, _ := ids.ProfileFor(ctx, identity.AnonymousID, d2)
		if err := ids.Resolve(ctx, []event.Event{ev("", d2), ev(user, d2)}); err != nil {
			t.Fatal(err)
		}
		var vs []string
		for _, q := range [][2]string{{identity.AnonymousID, d1}, {identity.AnonymousID, d2}, {identity.UserID, user}} {
			pid, _, err := ids.ProfileFor(ctx, q[0], q[1])
			if err != nil {
				t.Fatal(err)
			}
			v, _ := experiment.Assign(e, pid)
			vs = append(vs, v)
		}
		if vs[0] != vs[1] || vs[1] != vs[2] {
			t.Fatalf("person %d: variations %v on phone, laptop and as user", i, vs)
		}
		if v, _ := experiment.Assign(e, laptopBefore); v != vs[0] {
			split++ // assigned differently before identifying on the laptop
		}
	}
	t.Logf("%d of 40 people had been assigned another variation on the laptop before identifying there (the documented contamination case)", split)
}
