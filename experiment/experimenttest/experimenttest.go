// Package experimenttest is the test suite of package experiment's store,
// run against any state store backend (experiment's own tests run it on
// every backend with statetest.Each).
package experimenttest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"tandem/experiment"
	"tandem/statestore"
)

// Run runs the suite; open must return a new, empty database for each call.
func Run(t *testing.T, open func(t *testing.T) *statestore.DB) {
	t.Run("CreateGetList", func(t *testing.T) { t.Parallel(); testCreateGetList(t, newStore(t, open)) })
	t.Run("Validation", func(t *testing.T) { t.Parallel(); testValidation(t, newStore(t, open)) })
}

func newStore(t *testing.T, open func(t *testing.T) *statestore.DB) *experiment.Store {
	t.Helper()
	db := open(t)
	for range 2 { // migrations are idempotent
		if err := db.Migrate(context.Background(), experiment.Migrations()...); err != nil {
			t.Fatalf("Migrate: %v", err)
		}
	}
	return experiment.NewStore(db)
}

// Valid returns a valid definition with key.
func Valid(key string) experiment.Experiment {
	return experiment.Experiment{
		Key:        key,
		Variations: []experiment.Variation{{Key: "control", Weight: 50}, {Key: "new-hero", Weight: 50}},
		Metrics: []experiment.Metric{
			{Name: "purchase", Kind: experiment.Conversion, Event: "Order Completed", Window: experiment.Window(7 * 24 * time.Hour)},
			{Name: "revenue", Kind: experiment.Revenue, Event: "Order Completed", Property: "revenue"},
		},
	}
}

func testCreateGetList(t *testing.T, s *experiment.Store) {
	ctx := context.Background()
	var made []experiment.Experiment
	for i := range 5 {
		e, err := s.Create(ctx, Valid(fmt.Sprintf("exp-%d", i)), "usr_1")
		if err != nil {
			t.Fatalf("Create: %v", err)
		}
		if e.ID == "" || e.Name != e.Key || e.Control != "control" || e.ExposureEvent != experiment.DefaultExposureEvent ||
			e.ExperimentProperty != "experiment_id" || e.VariationProperty != "variation_id" || e.From.IsZero() || e.CreatedBy != "usr_1" {
			t.Fatalf("Create did not fill the defaults: %+v", e)
		}
		made = append(made, e)
	}
	if _, err := s.Create(ctx, Valid("exp-1"), "usr_1"); !errors.Is(err, statestore.ErrConflict) {
		t.Fatalf("Create with a taken key: %v, want ErrConflict", err)
	}
	got, err := s.Get(ctx, made[2].ID)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := json.Marshal(got)
	b, _ := json.Marshal(made[2])
	if string(a) != string(b) {
		t.Fatalf("Get:\n got %s\nwant %s", a, b)
	}
	if got, err := s.ByKey(ctx, "exp-3"); err != nil || got.ID != made[3].ID {
		t.Fatalf("ByKey = %v, %v", got.ID, err)
	}
	if _, err := s.Get(ctx, "exp_missing"); !errors.Is(err, statestore.ErrNotFound) {
		t.Fatalf("Get of a missing id: %v", err)
	}
	var ids []string
	cursor := ""
	for {
		page, next, err := s.List(ctx, 2, cursor)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range page {
			ids = append(ids, e.ID)
		}
		if next == "" {
			break
		}
		cursor = next
	}
	if len(ids) != 5 {
		t.Fatalf("List pages gave %v", ids)
	}
	for i := range ids {
		if ids[i] != made[i].ID {
			t.Fatalf("List order %v, want creation order", ids)
		}
	}
	if _, _, err := s.List(ctx, 2, "bogus"); !errors.Is(err, statestore.ErrBadCursor) {
		t.Fatalf("List with a bad cursor: %v", err)
	}
}

func testValidation(t *testing.T, s *experiment.Store) {
	ctx := context.Background()
	for _, tc := range []struct {
		field string
		edit  func(e *experiment.Experiment)
	}{
		{"key", func(e *experiment.Experiment) { e.Key = "" }},
		{"key", func(e *experiment.Experiment) { e.Key = "has space" }},
		{"variations", func(e *experiment.Experiment) { e.Variations = e.Variations[:1] }},
		{"variations[1].key", func(e *experiment.Experiment) { e.Variations[1].Key = "control" }},
		{"variations[0].weight", func(e *experiment.Experiment) { e.Variations[0].Weight = 0 }},
		{"control", func(e *experiment.Experiment) { e.Control = "nope" }},
		{"holdout", func(e *experiment.Experiment) { e.Holdout = 1 }},
		{"metrics", func(e *experiment.Experiment) { e.Metrics = nil }},
		{"metrics[0].kind", func(e *experiment.Experiment) { e.Metrics[0].Kind = "median" }},
		{"metrics[1].property", func(e *experiment.Experiment) { e.Metrics[1].Property = "" }},
		{"metrics[0].property", func(e *experiment.Experiment) { e.Metrics[0].Property = "x" }},
		{"metrics[0].event", func(e *experiment.Experiment) { e.Metrics[0].Event = "" }},
		{"metrics[1].name", func(e *experiment.Experiment) { e.Metrics[1].Name = "purchase" }},
		{"metrics[0].window", func(e *experiment.Experiment) { e.Metrics[0].Window = experiment.Window(-time.Hour) }},
		{"to", func(e *experiment.Experiment) { to := time.Now().Add(-time.Hour); e.To = &to }},
	} {
		e := Valid("v")
		tc.edit(&e)
		_, err := s.Create(ctx, e, "u")
		var fe *statestore.FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("%s: err = %v, want a FieldError for it", tc.field, err)
		}
	}
	var w experiment.Duration
	if err := json.Unmarshal([]byte(`"3x"`), &w); err != nil {
		t.Fatal(err)
	}
	e := Valid("bad-window")
	e.Metrics[0].Window = w
	var fe *statestore.FieldError
	if _, err := s.Create(ctx, e, "u"); !errors.As(err, &fe) || fe.Field != "metrics[0].window" {
		t.Errorf("window \"3x\": %v", err)
	}
}
