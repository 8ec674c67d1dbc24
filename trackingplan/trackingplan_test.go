package trackingplan_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"tandem/event"
	"tandem/statestore"
	"tandem/statestore/statetest"
	"tandem/testserver"
	"tandem/trackingplan"
)

// TestMain stops the test servers TestStore started.
func TestMain(m *testing.M) { testserver.Main(m) }

// TestStore runs the store and checker tests on every state store backend.
func TestStore(t *testing.T) {
	statetest.Each(t, func(t *testing.T, open func(t *testing.T) *statestore.DB) {
		t.Run("Versions", func(t *testing.T) { testVersions(t, open) })
		t.Run("Check", func(t *testing.T) { testCheck(t, open) })
	})
}

func newStore(t *testing.T, open func(t *testing.T) *statestore.DB) *trackingplan.Store {
	t.Helper()
	db := open(t)
	if err := db.Migrate(context.Background(), trackingplan.Migrations()...); err != nil {
		t.Fatal(err)
	}
	return trackingplan.NewStore(db)
}

const priceSchema = `{"type":"object","properties":{"price":{"type":"number"}},"required":["price"]}`

func testVersions(t *testing.T, open func(t *testing.T) *statestore.DB) {
	ctx := context.Background()
	s := newStore(t, open)
	if _, err := s.Get(ctx, "src_a", 0); !errors.Is(err, statestore.ErrNotFound) {
		t.Fatalf("get before put: %v, want not found", err)
	}
	p1, err := s.Put(ctx, trackingplan.Plan{SourceID: "src_a", Unplanned: trackingplan.Allow, CreatedBy: "u1",
		Events: map[string]trackingplan.EventPlan{"Order Completed": {Properties: json.RawMessage(priceSchema)}}})
	if err != nil || p1.Version != 1 {
		t.Fatalf("put 1: %+v %v", p1, err)
	}
	p2, err := s.Put(ctx, trackingplan.Plan{SourceID: "src_a", Unplanned: trackingplan.Block})
	if err != nil || p2.Version != 2 {
		t.Fatalf("put 2: %+v %v", p2, err)
	}
	got, err := s.Get(ctx, "src_a", 0)
	if err != nil || got.Version != 2 || got.Unplanned != trackingplan.Block {
		t.Fatalf("in force: %+v %v", got, err)
	}
	old, err := s.Get(ctx, "src_a", 1)
	if err != nil || old.CreatedBy != "u1" || len(old.Events) != 1 {
		t.Fatalf("version 1: %+v %v", old, err)
	}
	list, err := s.List(ctx)
	if err != nil || len(list) != 1 || list[0].Version != 2 {
		t.Fatalf("list: %+v %v", list, err)
	}
	// Invalid plans are refused with the field.
	for _, bad := range []trackingplan.Plan{
		{SourceID: "src_a", Unplanned: "maybe"},
		{SourceID: "src_a", Unplanned: trackingplan.Allow, Events: map[string]trackingplan.EventPlan{"X": {Properties: json.RawMessage(`{"type":"nonsense"}`)}}},
		{SourceID: "src_a", Unplanned: trackingplan.Allow, Events: map[string]trackingplan.EventPlan{"X": {Traits: json.RawMessage(`{"$ref":"http://example.invalid/s.json"}`)}}},
	} {
		_, err := s.Put(ctx, bad)
		var fe *statestore.FieldError
		if !errors.As(err, &fe) {
			t.Errorf("put %+v: %v, want a field error", bad, err)
		}
	}
	if got, _ := s.Get(ctx, "src_a", 0); got.Version != 2 {
		t.Errorf("a refused plan changed the version in force: %d", got.Version)
	}
}

func ev(src, typ, name, raw string) event.Event {
	return event.Event{SourceID: src, MessageID: name + raw, Type: typ, Name: name, Raw: []byte(raw), ReceivedAt: time.Now()}
}

func testCheck(t *testing.T, open func(t *testing.T) *statestore.DB) {
	ctx := context.Background()
	s := newStore(t, open)
	c := trackingplan.NewChecker(s, time.Hour, nil)
	events := []event.Event{
		ev("src_a", "track", "Order Completed", `{"properties":{"price":"9.99"}}`),
		ev("src_a", "track", "Order Completed", `{"properties":{"price":9.99}}`),
		ev("src_a", "track", "Clicked", `{"properties":{}}`),
		ev("src_a", "identify", "", `{"traits":{"email":42}}`),
		ev("src_b", "track", "Anything", `{}`),
		ev("src_a", "identify", "", `{"traits":{"email":"not an address"}}`),
		ev("src_a", "identify", "", `{"traits":{"email":"ann@example.com"}}`),
	}
	// No plan: everything kept.
	res, err := c.CheckAll(ctx, events)
	if err != nil || len(res.Keep) != 7 || len(res.Problems) != 0 {
		t.Fatalf("without plans: %+v %v", res, err)
	}
	_, err = s.Put(ctx, trackingplan.Plan{SourceID: "src_a", Unplanned: trackingplan.Flag, Events: map[string]trackingplan.EventPlan{
		"Order Completed": {Properties: json.RawMessage(priceSchema)},
		"identify":        {Traits: json.RawMessage(`{"properties":{"email":{"type":"string","format":"email"}}}`)},
	}})
	if err != nil {
		t.Fatal(err)
	}
	// The checker sees the put at once (same store), despite its hour-long refresh.
	res, err = c.CheckAll(ctx, events)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Keep) != 4 || res.Flagged != 1 || len(res.Problems) != 3 {
		t.Fatalf("with plan: keep %d flagged %d problems %+v", len(res.Keep), res.Flagged, res.Problems)
	}
	p := res.Problems[0]
	if p.Code != trackingplan.CodeViolation || p.Field != "properties.price" || !strings.Contains(p.Message, "number") || string(p.Raw) != string(events[0].Raw) {
		t.Errorf("price violation: %+v", p)
	}
	if p := res.Problems[1]; p.Field != "traits.email" {
		t.Errorf("traits violation: %+v", p)
	}
	if p := res.Problems[2]; p.Field != "traits.email" || !strings.Contains(p.Message, "email") {
		t.Errorf("format violation: %+v", p)
	}
	if err := c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	un, err := s.UnplannedEvents(ctx, "src_a")
	if err != nil || len(un) != 1 || un[0].Name != "Clicked" || un[0].Seen != 1 {
		t.Errorf("unplanned: %+v %v", un, err)
	}
	// Block: the unplanned event is quarantined.
	if _, err := s.Put(ctx, trackingplan.Plan{SourceID: "src_a", Unplanned: trackingplan.Block}); err != nil {
		t.Fatal(err)
	}
	res, err = c.CheckAll(ctx, events[2:3])
	if err != nil || len(res.Keep) != 0 || len(res.Problems) != 1 || res.Problems[0].Code != trackingplan.CodeUnplanned || res.Problems[0].Field != "event" {
		t.Errorf("blocked: %+v %v", res, err)
	}
}

func TestDraft(t *testing.T) {
	p := trackingplan.Draft("src_a", []event.Event{
		ev("src_a", "track", "Order Completed", `{"properties":{"price":9.99,"sku":"a"}}`),
		ev("src_a", "track", "Order Completed", `{"properties":{"price":"n/a"},"context":{"traits":{"plan":"pro"}}}`),
		ev("src_a", "identify", "", `{"traits":{"email":"a@example.com"}}`),
	})
	if err := trackingplan.Validate(p); err != nil {
		t.Fatalf("draft does not validate: %v", err)
	}
	var props struct {
		Properties map[string]struct {
			Type any `json:"type"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(p.Events["Order Completed"].Properties, &props); err != nil {
		t.Fatal(err)
	}
	if got, _ := json.Marshal(props.Properties["price"].Type); string(got) != `["number","string"]` {
		t.Errorf("price types: %s", got)
	}
	if props.Properties["sku"].Type != "string" {
		t.Errorf("sku type: %v", props.Properties["sku"].Type)
	}
	if len(p.Events["Order Completed"].Traits) == 0 || len(p.Events["identify"].Traits) == 0 {
		t.Errorf("traits not drafted: %+v", p.Events)
	}
	// No events: an empty draft that flags what arrives.
	db := trackingplan.Draft("src_a", nil)
	if len(db.Events) != 0 || db.Unplanned != trackingplan.Flag {
		t.Errorf("empty draft: %+v", db)
	}
}

func TestPlanCategories(t *testing.T) {
	p := trackingplan.Plan{SourceID: "src_1", Unplanned: trackingplan.Allow, Events: map[string]trackingplan.EventPlan{
		"Order Completed": {
			Properties: json.RawMessage(`{"type":"object","properties":{"card_last4":{"type":"string","x-category":"payment"},"total":{"type":"number"}}}`),
			Traits:     json.RawMessage(`{"type":"object","properties":{"crm_id":{"type":"string","x-category":"identity"}}}`),
		},
	}}
	if err := trackingplan.Validate(p); err != nil {
		t.Fatalf("a plan with x-category: %v", err)
	}
	got := p.Categories()
	if len(got) != 2 || got["properties.card_last4"] != "payment" || got["traits.crm_id"] != "identity" {
		t.Errorf("Categories = %v", got)
	}
	p.Events["Order Completed"] = trackingplan.EventPlan{Properties: json.RawMessage(`{"properties":{"x":{"x-category":7}}}`)}
	var fe *trackingplan.FieldError
	if err := trackingplan.Validate(p); !errors.As(err, &fe) || fe.Field != "events.Order Completed.properties.properties.x.x-category" {
		t.Errorf("a bad x-category: %v", err)
	}
}
