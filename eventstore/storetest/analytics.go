package storetest

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"tandem/analytics"
	"tandem/event"
	"tandem/eventstore"
)

// testPing: an open store answers.
func testPing(t *testing.T, s eventstore.Store) {
	if err := s.Ping(context.Background()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

// testAnalytics: a store that offers analytics (analytics.Provider) gives
// a backend that reads its own layout: event names, times, properties,
// profiles by user and anonymous id, and links made after the events.
func testAnalytics(t *testing.T, s eventstore.Store) {
	p, ok := s.(analytics.Provider)
	if !ok {
		t.Skip("the store offers no analytics")
	}
	ctx := context.Background()
	ev := func(msg, name, uid, aid string, sec int, revenue float64) event.Event {
		e := event.Event{SourceID: "src-1", MessageID: msg, Type: "track", Name: name, UserID: uid, AnonymousID: aid,
			Timestamp: baseTime.Add(time.Duration(sec) * time.Second)}
		e.ReceivedAt = e.Timestamp
		raw, err := json.Marshal(map[string]any{"type": "track", "event": name, "userId": uid, "anonymousId": aid,
			"messageId": msg, "properties": map[string]any{"revenue": revenue}})
		if err != nil {
			t.Fatal(err)
		}
		e.Raw = raw
		return e
	}
	mustAppend(t, s, []event.Event{
		ev("m1", "Viewed", "", "anon-a", 1, 0),
		ev("m2", "Bought", "u-1", "anon-a", 2, 30),
		ev("m3", "Viewed", "u-2", "", 3, 0),
		ev("m4", "Bought", "", "anon-b", 4, 5),
		ev("m5", "Bought", "u-3", "", 90, 30), // outside the range
	}, 5)
	funnel := func() []int64 {
		t.Helper()
		q := &analytics.FunnelQuery{
			Steps: []analytics.FunnelStep{{Condition: analytics.Condition{Event: "Viewed"}},
				{Condition: analytics.Condition{Event: "Bought", Where: []analytics.Filter{{Property: "revenue", Op: "gte", Value: 10.0}}}}},
			Window: analytics.Seconds(3600),
			Range:  analytics.Range{From: analytics.At(baseTime), To: analytics.At(baseTime.Add(time.Minute))},
		}
		if err := q.Validate(time.Now()); err != nil {
			t.Fatal(err)
		}
		res, err := p.Analytics().Funnel(ctx, q)
		if err != nil {
			t.Fatalf("Funnel: %v", err)
		}
		var got []int64
		for _, st := range res.Steps {
			got = append(got, st.Profiles)
		}
		return got
	}
	// Unlinked, the viewers (anon-a, u-2) are not the buyers (u-1, anon-b).
	if got := funnel(); !slices.Equal(got, []int64{2, 0}) {
		t.Fatalf("funnel before links = %v, want [2 0]", got)
	}
	if err := s.LinkProfiles(ctx, []eventstore.ProfileLink{
		{Key: "anonymous_id:anon-a", ProfileID: "prf-1"}, {Key: "user_id:u-1", ProfileID: "prf-1"},
		{Key: "user_id:u-2", ProfileID: "prf-2"}, {Key: "anonymous_id:anon-b", ProfileID: "prf-2"},
	}); err != nil {
		t.Fatal(err)
	}
	// prf-1 viewed, then bought for 30; prf-2 bought for 5 only, which
	// the filter refuses.
	if got := funnel(); !slices.Equal(got, []int64{2, 1}) {
		t.Fatalf("funnel after links = %v, want [2 1]", got)
	}
}
