package privacy_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"tandem/event"
	"tandem/identity"
	"tandem/privacy"
	"tandem/statestore"
	"tandem/statestore/statetest"
)

// TestRequests keeps, lists, updates and completes requests on every state
// store backend.
func TestRequests(t *testing.T) {
	statetest.Each(t, func(t *testing.T, open func(t *testing.T) *statestore.DB) {
		ctx := context.Background()
		db := open(t)
		if err := db.Migrate(ctx, privacy.Migrations()...); err != nil {
			t.Fatal(err)
		}
		now := time.Date(2024, 6, 1, 10, 0, 0, 0, time.UTC)
		rs := privacy.NewRequests(db).WithClock(func() time.Time { return now })
		var fe *statestore.FieldError
		if _, err := rs.Create(ctx, privacy.NewRequest{Type: "forget", Identity: privacy.Identity{Type: "email", Value: "a@b.c"}, Method: "x"}); !errors.As(err, &fe) || fe.Field != "type" {
			t.Fatalf("bad type: %v", err)
		}
		if _, err := rs.Create(ctx, privacy.NewRequest{Type: "access", Identity: privacy.Identity{Type: "email", Value: "a@b.c"}}); !errors.As(err, &fe) || fe.Field != "verification.method" {
			t.Fatalf("no verification: %v", err)
		}
		var ids []string
		for _, typ := range []string{"access", "erasure", "portability"} {
			r, err := rs.Create(ctx, privacy.NewRequest{Type: typ, Identity: privacy.Identity{Type: "user_id", Value: "u1"}, VerifiedBy: "usr_1", Method: "call back"})
			if err != nil {
				t.Fatal(err)
			}
			if r.Status != privacy.StatusReceived || !r.Deadline.Equal(now.Add(30*24*time.Hour)) || r.Verification.By != "usr_1" {
				t.Fatalf("created: %+v", r)
			}
			ids = append(ids, r.ID)
		}
		got, next, err := rs.List(ctx, 2, "")
		if err != nil || len(got) != 2 || got[0].ID != ids[2] || got[1].ID != ids[1] || next == "" {
			t.Fatalf("page 1: %v %q %v", got, next, err)
		}
		got, next, err = rs.List(ctx, 2, next)
		if err != nil || len(got) != 1 || got[0].ID != ids[0] || next != "" {
			t.Fatalf("page 2: %v %q %v", got, next, err)
		}
		now = now.Add(time.Hour)
		if _, err := rs.AddStep(ctx, ids[1], privacy.Step{Store: "event store", Status: privacy.StatusCompleted}); err != nil {
			t.Fatal(err)
		}
		if _, err := rs.Update(ctx, ids[1], func(r *privacy.Request) { r.Status = privacy.StatusCompleted }); err != nil {
			t.Fatal(err)
		}
		r, err := rs.Get(ctx, ids[1])
		if err != nil || r.Status != privacy.StatusCompleted || r.CompletedAt == nil || !r.CompletedAt.Equal(now) ||
			len(r.Steps) != 1 || r.Steps[0].Store != "event store" || !r.Steps[0].At.Equal(now) {
			t.Fatalf("after update: %+v %v", r, err)
		}
		if _, err := rs.Get(ctx, "dsr_nope"); !errors.Is(err, statestore.ErrNotFound) {
			t.Fatalf("unknown: %v", err)
		}
	})
}

// TestObjectionPurposes: an objection refuses the configured purposes, or
// the default marketing ones; a bad name is refused at start.
func TestObjectionPurposes(t *testing.T) {
	if got := (privacy.Config{}).Objection(); len(got) != 3 || got[0] != "Advertising" {
		t.Errorf("default: %v", got)
	}
	if got := (privacy.Config{ObjectionPurposes: []string{"Newsletter"}}).Objection(); len(got) != 1 || got[0] != "Newsletter" {
		t.Errorf("configured: %v", got)
	}
	err := privacy.Config{ObjectionPurposes: []string{"ok", " bad"}}.Validate()
	var ve *privacy.ValidationError
	if !errors.As(err, &ve) || ve.Key != "consent.objection_purposes[1]" {
		t.Errorf("validate: %v", err)
	}
}

// TestEraseConsent: Store.Erase deletes the decisions and history kept
// under the given keys, and no one else's.
func TestEraseConsent(t *testing.T) {
	statetest.Each(t, func(t *testing.T, open func(t *testing.T) *statestore.DB) {
		ctx := context.Background()
		db := open(t)
		if err := db.Migrate(ctx, append(identity.Migrations(), privacy.Migrations()...)...); err != nil {
			t.Fatal(err)
		}
		ids, err := identity.NewStore(ctx, db, identity.Options{Rules: identity.DefaultRules()})
		if err != nil {
			t.Fatal(err)
		}
		cs := privacy.NewStore(db, privacy.DefaultConfig(), ids)
		var evs []event.Event
		for i, u := range []string{"ann", "bob"} {
			raw := []byte(`{"type":"track","userId":"` + u + `","context":{"consent":{"categoryPreferences":{"Advertising":true}}}}`)
			evs = append(evs, event.Event{SourceID: "src", MessageID: "m-" + u, Type: "track", Name: "x", UserID: u,
				Timestamp: time.Date(2024, 6, 1, 10, i, 0, 0, time.UTC), Raw: raw})
		}
		if err := ids.Resolve(ctx, evs); err != nil {
			t.Fatal(err)
		}
		if err := cs.Record(ctx, evs); err != nil {
			t.Fatal(err)
		}
		n, err := cs.Erase(ctx, []string{"user_id:ann"})
		if err != nil || n != 2 { // the decision and its history entry
			t.Fatalf("Erase = %d, %v", n, err)
		}
		for u, want := range map[string]bool{"ann": false, "bob": true} {
			id, _, err := ids.ProfileFor(ctx, "user_id", u)
			if err != nil {
				t.Fatal(err)
			}
			st, err := cs.State(ctx, id)
			if err != nil || st.Purposes["Advertising"] != want {
				t.Errorf("%s: %+v, %v", u, st, err)
			}
			h, _, err := cs.History(ctx, id, 10, "")
			if err != nil || (len(h) == 1) != want {
				t.Errorf("%s history: %+v, %v", u, h, err)
			}
		}
	})
}
