package audience

import (
	"context"
	"encoding/json"
	"math"
	"strconv"
	"time"

	"tandem/event"
	"tandem/eventstore"
	"tandem/statestore"
)

// RecordRowByRow is [Store.Record] as it was before the computed traits'
// state took multi-row statements: a statement (or two) per event and
// trait. The tests keep it as the oracle the multi-row writes must agree
// with, row for row.
func (s *Store) RecordRowByRow(ctx context.Context, events []event.Event) error {
	if err := s.recordStages(ctx, events); err != nil {
		return err
	}
	traits, err := s.List(ctx)
	if err != nil || len(traits) == 0 {
		return err
	}
	return s.recordRowByRow(ctx, traits, events)
}

func (s *Store) recordRowByRow(ctx context.Context, traits []Trait, events []event.Event) error {
	type hit struct {
		t *Trait
		e *event.Event
	}
	var hits []hit
	for i := range events {
		e := &events[i]
		if e.Type != "track" || (e.UserID == "" && e.AnonymousID == "") {
			continue
		}
		for j := range traits {
			if traits[j].Event == e.Name {
				hits = append(hits, hit{&traits[j], e})
			}
		}
	}
	if len(hits) == 0 {
		return nil
	}
	return s.db.Tx(ctx, func(tx *statestore.Tx) error {
		for _, h := range hits {
			if err := applyRowByRow(ctx, tx, h.t, h.e); err != nil {
				return err
			}
		}
		return nil
	})
}

// applyRowByRow records one event into one trait's state.
func applyRowByRow(ctx context.Context, tx *statestore.Tx, t *Trait, e *event.Event) error {
	key := eventstore.ProfileKey(e.UserID, e.AnonymousID)
	msg := strconv.Itoa(len(e.SourceID)) + ":" + e.SourceID + e.MessageID // unambiguous
	var val json.RawMessage
	if t.Property != "" {
		val = property(e.Raw, t.Property)
		if val == nil {
			return nil // the event lacks the property: not counted
		}
	}
	switch t.Kind {
	case First, Last, DaysSince:
		at := e.Timestamp.UnixNano()
		v := string(val)
		if t.Property == "" {
			v = strconv.Quote(e.Timestamp.UTC().Format(time.RFC3339Nano))
		}
		// The earliest event (ties: smallest message) is first; the
		// latest (ties: largest message) is last. Idempotent.
		_, err := tx.Exec(ctx, `INSERT INTO audience_trait_point (trait_id, ekey, first_at, first_msg, first_val, last_at, last_msg, last_val)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (trait_id, ekey) DO UPDATE SET
	first_val = CASE WHEN excluded.first_at < audience_trait_point.first_at OR (excluded.first_at = audience_trait_point.first_at AND excluded.first_msg < audience_trait_point.first_msg) THEN excluded.first_val ELSE audience_trait_point.first_val END,
	first_msg = CASE WHEN excluded.first_at < audience_trait_point.first_at OR (excluded.first_at = audience_trait_point.first_at AND excluded.first_msg < audience_trait_point.first_msg) THEN excluded.first_msg ELSE audience_trait_point.first_msg END,
	first_at = CASE WHEN excluded.first_at < audience_trait_point.first_at THEN excluded.first_at ELSE audience_trait_point.first_at END,
	last_val = CASE WHEN excluded.last_at > audience_trait_point.last_at OR (excluded.last_at = audience_trait_point.last_at AND excluded.last_msg > audience_trait_point.last_msg) THEN excluded.last_val ELSE audience_trait_point.last_val END,
	last_msg = CASE WHEN excluded.last_at > audience_trait_point.last_at OR (excluded.last_at = audience_trait_point.last_at AND excluded.last_msg > audience_trait_point.last_msg) THEN excluded.last_msg ELSE audience_trait_point.last_msg END,
	last_at = CASE WHEN excluded.last_at > audience_trait_point.last_at THEN excluded.last_at ELSE audience_trait_point.last_at END`,
			t.ID, key, at, msg, v, at, msg, v)
		return err
	}
	// Count, Sum, MostFrequent: a bucket per day (and value), each event once.
	var num float64
	bucketVal := ""
	switch t.Kind {
	case Sum:
		if json.Unmarshal(val, &num) != nil || math.IsInf(num, 0) || math.IsNaN(num) {
			return nil // not a number: not summed
		}
	case MostFrequent:
		bucketVal = string(val)
	}
	r, err := tx.Exec(ctx, `INSERT INTO audience_trait_seen (trait_id, ekey, msg) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`, t.ID, key, msg)
	if err != nil {
		return err
	}
	if n, _ := r.RowsAffected(); n == 0 {
		return nil // counted before
	}
	_, err = tx.Exec(ctx, `INSERT INTO audience_trait_bucket (trait_id, ekey, day, val, n, s) VALUES (?, ?, ?, ?, 1, ?)
ON CONFLICT (trait_id, ekey, day, val) DO UPDATE SET n = audience_trait_bucket.n + 1, s = audience_trait_bucket.s + excluded.s`,
		t.ID, key, dayOf(e.Timestamp), bucketVal, num)
	return err
}
