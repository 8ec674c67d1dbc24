package duckdb_test

import (
	"context"
	"testing"
	"time"

	"tandem/analytics"
	"tandem/event"
	"tandem/eventstore/duckdb"
)

// TestFunnelPlanSetting checks that a funnel, which plans its SQL with one
// of DuckDB's optimizers off (a global setting), puts the setting back as
// it found it, an operator's own value included, and still answers.
func TestFunnelPlanSetting(t *testing.T) {
	store, err := duckdb.Open(":memory:")
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	ctx := context.Background()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var evs []event.Event
	for i, name := range []string{"A", "B", "C", "A", "B"} {
		user := "u1"
		if i >= 3 {
			user = "u2"
		}
		evs = append(evs, event.Event{SourceID: "s", MessageID: name + user, Type: "track", Name: name, UserID: user,
			Timestamp: base.Add(time.Duration(i) * time.Minute), ReceivedAt: base, Raw: []byte(`{}`)})
	}
	if _, err := store.Append(ctx, evs); err != nil {
		t.Fatal(err)
	}
	fq := &analytics.FunnelQuery{Window: analytics.Seconds(3600), Range: analytics.Range{From: analytics.At(base), To: analytics.At(base.Add(time.Hour))}}
	for _, n := range []string{"A", "B", "C"} {
		fq.Steps = append(fq.Steps, analytics.FunnelStep{Condition: analytics.Condition{Event: n}})
	}
	if err := fq.Validate(base.Add(2 * time.Hour)); err != nil {
		t.Fatal(err)
	}
	db := store.DB()
	for _, before := range []string{"", "top_n"} {
		if _, err := db.ExecContext(ctx, "SET GLOBAL disabled_optimizers = '"+before+"'"); err != nil {
			t.Fatal(err)
		}
		res, err := store.Analytics().Funnel(ctx, fq)
		if err != nil {
			t.Fatal(err)
		}
		var got []int64
		for _, s := range res.Steps {
			got = append(got, s.Profiles)
		}
		if len(got) != 3 || got[0] != 2 || got[1] != 2 || got[2] != 1 {
			t.Errorf("with %q disabled before: profiles per step %v, want [2 2 1]", before, got)
		}
		var after string
		if err := db.QueryRowContext(ctx, "SELECT current_setting('disabled_optimizers')").Scan(&after); err != nil {
			t.Fatal(err)
		}
		if after != before {
			t.Errorf("disabled_optimizers after a funnel: %q, want %q as before", after, before)
		}
	}
}
