package audience_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"tandem/audience"
	"tandem/event"
	"tandem/statestore"
	"tandem/statestore/statetest"
)

// TestRecordSameAsRowByRow records generated batches of events into the
// computed traits' state twice, once with the multi-row statements of
// [audience.Store.Record] and once event by event as before
// ([audience.Store.RecordRowByRow], the oracle), on every backend, and
// compares every row of the state tables after each batch. The batches
// hold returning people, the same key hit many times in one batch (ties
// in time included), redelivered events (within a batch and across
// batches), events lacking the property or carrying a non-number, and
// sums of numbers whose floating-point total depends on the order they
// are added in.
func TestRecordSameAsRowByRow(t *testing.T) {
	statetest.Each(t, func(t *testing.T, open func(t *testing.T) *statestore.DB) {
		ctx := context.Background()
		stores := [2]*audience.Store{}
		dbs := [2]*statestore.DB{}
		for i := range stores {
			dbs[i] = open(t)
			if err := dbs[i].Migrate(ctx, audience.Migrations()...); err != nil {
				t.Fatal(err)
			}
			stores[i] = audience.NewStore(dbs[i], nil, nil).WithStages([]audience.Stage{{Name: "purchase", Events: []string{"Order Completed"}}})
			for _, tr := range []audience.Trait{
				{Name: "orders", Kind: audience.Count, Event: "Order Completed"},
				{Name: "orders_30d", Kind: audience.Count, Event: "Order Completed", Window: "30d"},
				{Name: "revenue", Kind: audience.Sum, Event: "Order Completed", Property: "total"},
				{Name: "revenue_7d", Kind: audience.Sum, Event: "Order Completed", Property: "total", Window: "7d"},
				{Name: "first_plan", Kind: audience.First, Event: "Plan Viewed", Property: "plan"},
				{Name: "last_plan", Kind: audience.Last, Event: "Plan Viewed", Property: "plan"},
				{Name: "first_order", Kind: audience.First, Event: "Order Completed"},
				{Name: "last_order", Kind: audience.Last, Event: "Order Completed"},
				{Name: "top_plan", Kind: audience.MostFrequent, Event: "Plan Viewed", Property: "plan"},
				{Name: "since_order", Kind: audience.DaysSince, Event: "Order Completed"},
				{Name: "by_color", Kind: audience.MostFrequent, Event: "Order Completed", Property: "item.color"},
			} {
				if _, err := stores[i].Create(ctx, tr); err != nil {
					t.Fatal(err)
				}
			}
		}
		rng := rand.New(rand.NewPCG(15, 2026))
		day0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
		var sent []event.Event // every event so far, for redelivery
		msg := 0
		for batch := range 8 {
			var evs []event.Event
			for range 120 + rng.IntN(150) {
				if len(sent) > 0 && rng.IntN(12) == 0 {
					// Redelivered: an earlier batch's event, or one of this one.
					evs = append(evs, sent[rng.IntN(len(sent))])
					continue
				}
				if len(evs) > 0 && rng.IntN(15) == 0 {
					evs = append(evs, evs[rng.IntN(len(evs))])
					continue
				}
				msg++
				evs = append(evs, genEvent(t, rng, day0, msg))
			}
			sent = append(sent, evs...)
			if err := stores[0].RecordRowByRow(ctx, evs); err != nil {
				t.Fatalf("batch %d: row by row: %v", batch, err)
			}
			if err := stores[1].Record(ctx, evs); err != nil {
				t.Fatalf("batch %d: multi-row: %v", batch, err)
			}
			want, got := stateDump(t, dbs[0]), stateDump(t, dbs[1])
			for _, table := range []string{"point ", "seen ", "bucket ", "stage "} {
				if !slices.ContainsFunc(want, func(l string) bool { return strings.HasPrefix(l, table) }) {
					t.Fatalf("batch %d: no %srows: the workload records too little", batch, table)
				}
			}
			if diff := diffLines(want, got); diff != "" {
				t.Fatalf("batch %d: the multi-row state differs from the row-by-row one (- row by row, + multi-row):\n%s", batch, diff)
			}
		}
	})
}

// genEvent is a track event of one of 12 people (user, anonymous or
// both), at one of a few instants over 6 days (so that times tie and
// days' buckets take several events a batch).
func genEvent(t *testing.T, rng *rand.Rand, day0 time.Time, msg int) event.Event {
	t.Helper()
	person := rng.IntN(12)
	ids := ""
	switch rng.IntN(3) {
	case 0:
		ids = fmt.Sprintf(`"userId":"u%d"`, person)
	case 1:
		ids = fmt.Sprintf(`"anonymousId":"a%d"`, person)
	default:
		ids = fmt.Sprintf(`"userId":"u%d","anonymousId":"a%d"`, person, person)
	}
	at := day0.Add(time.Duration(rng.IntN(6))*24*time.Hour + time.Duration(rng.IntN(4))*time.Hour)
	var name, props string
	switch rng.IntN(5) {
	case 0, 1:
		name = "Order Completed"
		totals := []string{`0.1`, `0.2`, `0.3`, `1e-17`, `1e17`, `-3.75`, `"n/a"`, `null`, `12`}
		colors := []string{`"red"`, `"blue"`, `null`}
		switch rng.IntN(4) {
		case 0:
			props = `{}`
		default:
			props = fmt.Sprintf(`{"total":%s,"item":{"color":%s}}`, totals[rng.IntN(len(totals))], colors[rng.IntN(len(colors))])
		}
	case 2, 3:
		name = "Plan Viewed"
		plans := []string{`"pro"`, `"basic"`, `"team"`, `{"tier":"x"}`, `7`}
		props = fmt.Sprintf(`{"plan":%s}`, plans[rng.IntN(len(plans))])
	default:
		name = "Page Scrolled"
		props = `{"plan":"pro","total":1}`
	}
	src := []string{"src_a", "src_b"}[rng.IntN(2)]
	raw := fmt.Sprintf(`{"type":"track","event":%q,%s,"timestamp":%q,"properties":%s}`, name, ids, at.Format(time.RFC3339Nano), props)
	e, prob := event.ParseEvent("", []byte(raw), at, fmt.Sprintf("m%05d", msg))
	if prob != nil {
		t.Fatalf("%s: %+v", raw, prob)
	}
	e.SourceID = src
	return e
}

// stateDump is every row of the computed traits' and stages' state,
// with trait ids replaced by names (each store made its own ids), as
// sorted lines. Sums print exactly (%b).
func stateDump(t *testing.T, db *statestore.DB) []string {
	t.Helper()
	ctx := context.Background()
	var out []string
	read := func(table, q string, n int) {
		rows, err := db.Query(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			vals := make([]any, n)
			ptrs := make([]any, n)
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			b.WriteString(table)
			for _, v := range vals {
				switch v := v.(type) {
				case float64:
					fmt.Fprintf(&b, " %b", v)
				case []byte:
					fmt.Fprintf(&b, " %q", v)
				default:
					fmt.Fprintf(&b, " %#v", v)
				}
			}
			out = append(out, b.String())
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
	}
	read("point", `SELECT c.name, p.ekey, p.first_at, p.first_msg, p.first_val, p.last_at, p.last_msg, p.last_val
		FROM audience_trait_point p JOIN audience_computed_trait c ON c.id = p.trait_id ORDER BY c.name, p.ekey`, 8)
	read("seen", `SELECT c.name, s.ekey, s.msg FROM audience_trait_seen s JOIN audience_computed_trait c ON c.id = s.trait_id ORDER BY c.name, s.ekey, s.msg`, 3)
	read("bucket", `SELECT c.name, b.ekey, b.day, b.val, b.n, b.s FROM audience_trait_bucket b JOIN audience_computed_trait c ON c.id = b.trait_id ORDER BY c.name, b.ekey, b.day, b.val`, 6)
	read("stage", `SELECT ekey, stage, last_at, last_msg FROM audience_stage ORDER BY ekey, stage`, 4)
	slices.Sort(out)
	return out
}

// diffLines lists the lines only in want (-) and only in got (+), both
// sorted alike; "" when they are equal.
func diffLines(want, got []string) string {
	var b strings.Builder
	i, j := 0, 0
	for (i < len(want) || j < len(got)) && b.Len() < 4000 {
		switch {
		case j >= len(got) || (i < len(want) && want[i] < got[j]):
			fmt.Fprintf(&b, "- %s\n", want[i])
			i++
		case i >= len(want) || got[j] < want[i]:
			fmt.Fprintf(&b, "+ %s\n", got[j])
			j++
		default:
			i++
			j++
		}
	}
	return b.String()
}
