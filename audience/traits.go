package audience

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"tandem/event"
	"tandem/eventstore"
	"tandem/statestore"
)

// Kinds of computed trait.
const (
	Count        = "count"         // events in the window
	Sum          = "sum"           // sum of a numeric property in the window
	First        = "first"         // the property's value on the earliest event
	Last         = "last"          // the property's value on the latest event
	MostFrequent = "most_frequent" // the property value seen most often in the window
	DaysSince    = "days_since"    // whole days since the latest event
)

// Kinds lists the kinds of computed trait.
var Kinds = []string{Count, Sum, First, Last, MostFrequent, DaysSince}

// MaxWindowDays bounds a window.
const MaxWindowDays = 3650

// ErrNotFound matches statestore.ErrNotFound: no such computed trait or
// profile.
var ErrNotFound = fmt.Errorf("audience: not found: %w", statestore.ErrNotFound)

// ErrConflict matches statestore.ErrConflict: the name is taken.
var ErrConflict = fmt.Errorf("audience: a computed trait with that name exists: %w", statestore.ErrConflict)

// FieldError names the request field at fault.
type FieldError = statestore.FieldError

// Keys finds a profile's event keys (the identity store).
type Keys interface {
	EventKeys(ctx context.Context, profileID string) (current string, keys []string, err error)
}

// Trait is a computed trait's definition.
type Trait struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Kind      string    `json:"kind"`
	Event     string    `json:"event"`
	Property  string    `json:"property,omitempty"`
	Window    string    `json:"window,omitempty"` // "30d"; empty: all time
	CreatedAt time.Time `json:"createdAt"`
	days      int
}

var (
	nameRE   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,63}$`)
	windowRE = regexp.MustCompile(`^([1-9][0-9]{0,3})d$`)
)

// Validate checks a definition and fills its window in days.
func (t *Trait) Validate() error {
	if !nameRE.MatchString(t.Name) {
		return &FieldError{Field: "name", Message: "must be a letter or _ followed by up to 63 letters, digits or _ (rules name it)"}
	}
	if !slices.Contains(Kinds, t.Kind) {
		return &FieldError{Field: "kind", Message: "must be one of " + strings.Join(Kinds, ", ")}
	}
	if t.Event == "" || len(t.Event) > 200 {
		return &FieldError{Field: "event", Message: "must be a track event name of 1 to 200 bytes"}
	}
	needProp := t.Kind == Sum || t.Kind == MostFrequent
	switch {
	case needProp && t.Property == "":
		return &FieldError{Field: "property", Message: "is required for kind " + t.Kind}
	case (t.Kind == Count || t.Kind == DaysSince) && t.Property != "":
		return &FieldError{Field: "property", Message: "is not used by kind " + t.Kind}
	case len(t.Property) > 200:
		return &FieldError{Field: "property", Message: "must be at most 200 bytes"}
	}
	t.days = 0
	if t.Window != "" {
		if t.Kind == First || t.Kind == Last || t.Kind == DaysSince {
			return &FieldError{Field: "window", Message: "is not used by kind " + t.Kind}
		}
		m := windowRE.FindStringSubmatch(t.Window)
		if m == nil {
			return &FieldError{Field: "window", Message: `must be a number of days such as "30d"`}
		}
		d, _ := strconv.Atoi(m[1])
		if d > MaxWindowDays {
			return &FieldError{Field: "window", Message: fmt.Sprintf("must be at most %dd", MaxWindowDays)}
		}
		t.days = d
	}
	return nil
}

// Migrations are the state store tables of computed traits and audiences.
func Migrations() []statestore.Migration {
	return []statestore.Migration{{Package: "audience", Version: 1, SQL: `
CREATE TABLE audience_computed_trait (
	id TEXT PRIMARY KEY,
	name TEXT NOT NULL UNIQUE,
	kind TEXT NOT NULL,
	event TEXT NOT NULL,
	property TEXT NOT NULL,
	window_spec TEXT NOT NULL,
	created_at BIGINT NOT NULL
);
CREATE TABLE audience_trait_bucket (
	trait_id TEXT NOT NULL,
	ekey TEXT NOT NULL,
	day BIGINT NOT NULL,
	val TEXT NOT NULL,
	n BIGINT NOT NULL,
	s DOUBLE PRECISION NOT NULL,
	PRIMARY KEY (trait_id, ekey, day, val)
);
CREATE TABLE audience_trait_seen (
	trait_id TEXT NOT NULL,
	ekey TEXT NOT NULL,
	msg TEXT NOT NULL,
	PRIMARY KEY (trait_id, ekey, msg)
);
CREATE TABLE audience_trait_point (
	trait_id TEXT NOT NULL,
	ekey TEXT NOT NULL,
	first_at BIGINT NOT NULL,
	first_msg TEXT NOT NULL,
	first_val TEXT NOT NULL,
	last_at BIGINT NOT NULL,
	last_msg TEXT NOT NULL,
	last_val TEXT NOT NULL,
	PRIMARY KEY (trait_id, ekey)
)`}, audienceMigration, stageMigration}
}

var stageMigration = statestore.Migration{Package: "audience", Version: 3, SQL: `
CREATE TABLE audience_stage (
	ekey TEXT NOT NULL,
	stage TEXT NOT NULL,
	last_at BIGINT NOT NULL,
	last_msg TEXT NOT NULL,
	PRIMARY KEY (ekey, stage)
)`}

// Stage is a lifecycle stage, reached by any of its track events (the
// journey's configured stages).
type Stage struct {
	Name   string
	Events []string
}

// WithStages makes the store keep which lifecycle stages each key
// reached (for rules' stage and stages); it returns s.
func (s *Store) WithStages(stages []Stage) *Store {
	s.SetStages(stages)
	return s
}

// SetStages puts a new lifecycle in force, for the events recorded from
// then on (the stages keys reached before stay as they were recorded).
func (s *Store) SetStages(stages []Stage) {
	st := slices.Clone(stages)
	s.stages.Store(&st)
}

// lifecycle returns the stages in force (nil for none).
func (s *Store) lifecycle() []Stage {
	if p := s.stages.Load(); p != nil {
		return *p
	}
	return nil
}

// Store keeps computed trait definitions and their per-key state.
type Store struct {
	db     *statestore.DB
	keys   Keys
	events eventstore.Store // backfill source; nil: no backfill
	now    func() time.Time
	stages atomic.Pointer[[]Stage] // see SetStages
}

// NewStore returns a store over db (migrated with [Migrations]) finding
// profiles' keys with keys and backfilling new traits from events (nil:
// no backfill).
func NewStore(db *statestore.DB, keys Keys, events eventstore.Store) *Store {
	return &Store{db: db, keys: keys, events: events, now: time.Now}
}

// WithClock makes the store read the time from now (tests); it returns s.
func (s *Store) WithClock(now func() time.Time) *Store {
	s.now = now
	return s
}

// Create defines a computed trait and backfills it from the stored events.
func (s *Store) Create(ctx context.Context, t Trait) (Trait, error) {
	if err := t.Validate(); err != nil {
		return Trait{}, err
	}
	t.ID = statestore.NewID("ctr")
	t.CreatedAt = s.now().UTC().Truncate(time.Millisecond)
	_, err := s.db.Exec(ctx, `INSERT INTO audience_computed_trait (id, name, kind, event, property, window_spec, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		t.ID, t.Name, t.Kind, t.Event, t.Property, t.Window, t.CreatedAt.UnixMilli())
	if errors.Is(err, statestore.ErrConflict) {
		return Trait{}, ErrConflict
	}
	if err != nil {
		return Trait{}, err
	}
	if err := s.backfill(ctx, t); err != nil {
		return Trait{}, fmt.Errorf("audience: backfill %s: %w", t.Name, err)
	}
	return t, nil
}

// backfill records the stored events of t's event name into t's state.
// Events the pipeline records meanwhile are counted once (see Record).
func (s *Store) backfill(ctx context.Context, t Trait) error {
	if s.events == nil {
		return nil
	}
	q := eventstore.Query{Type: "track", Name: t.Event, Limit: eventstore.MaxLimit}
	for {
		p, err := s.events.List(ctx, q)
		if err != nil {
			return err
		}
		if err := s.record(ctx, []Trait{t}, p.Events); err != nil {
			return err
		}
		if p.Next == "" {
			return nil
		}
		q.Cursor = p.Next
	}
}

// List returns every computed trait, by name.
func (s *Store) List(ctx context.Context) ([]Trait, error) {
	rows, err := s.db.Query(ctx, `SELECT id, name, kind, event, property, window_spec, created_at FROM audience_computed_trait ORDER BY name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Trait{}
	for rows.Next() {
		var t Trait
		var at int64
		if err := rows.Scan(&t.ID, &t.Name, &t.Kind, &t.Event, &t.Property, &t.Window, &at); err != nil {
			return nil, err
		}
		t.CreatedAt = time.UnixMilli(at).UTC()
		_ = t.Validate() // fills days; stored definitions were valid
		out = append(out, t)
	}
	return out, rows.Err()
}

// Get returns the computed trait with id.
func (s *Store) Get(ctx context.Context, id string) (Trait, error) {
	all, err := s.List(ctx)
	if err != nil {
		return Trait{}, err
	}
	for _, t := range all {
		if t.ID == id {
			return t, nil
		}
	}
	return Trait{}, ErrNotFound
}

// Delete removes a computed trait and its state.
func (s *Store) Delete(ctx context.Context, id string) error {
	return s.db.Tx(ctx, func(tx *statestore.Tx) error {
		r, err := tx.Exec(ctx, `DELETE FROM audience_computed_trait WHERE id = ?`, id)
		if err != nil {
			return err
		}
		if n, _ := r.RowsAffected(); n == 0 {
			return ErrNotFound
		}
		for _, tbl := range []string{"audience_trait_bucket", "audience_trait_seen", "audience_trait_point"} {
			if _, err := tx.Exec(ctx, `DELETE FROM `+tbl+` WHERE trait_id = ?`, id); err != nil {
				return err
			}
		}
		return nil
	})
}

// Record takes a batch of events into the state of every computed trait
// (a pipeline step, after identity resolution). Recording the same event
// again changes nothing.
func (s *Store) Record(ctx context.Context, events []event.Event) error {
	if err := s.recordStages(ctx, events); err != nil {
		return err
	}
	traits, err := s.List(ctx)
	if err != nil || len(traits) == 0 {
		return err
	}
	return s.record(ctx, traits, events)
}

// recordStages keeps, per key and stage, the latest event that reached it.
// A batch's hits are collapsed in memory first (the latest per key and
// stage, as the upsert would keep it), then written in multi-row upserts:
// one statement per stageChunk rows instead of one per event.
func (s *Store) recordStages(ctx context.Context, events []event.Event) error {
	stages := s.lifecycle()
	if len(stages) == 0 {
		return nil
	}
	type hitKey struct{ ekey, stage string }
	// A hit is its event; the message text the row keeps is made for
	// the latest hit of each key and stage only (and to break a tie),
	// the key once an event.
	type hit struct {
		at int64
		e  *event.Event
	}
	msgOf := func(e *event.Event) string {
		return strconv.Itoa(len(e.SourceID)) + ":" + e.SourceID + e.MessageID
	}
	hits := map[hitKey]hit{}
	for i := range events {
		e := &events[i]
		if e.Type != "track" || (e.UserID == "" && e.AnonymousID == "") {
			continue
		}
		ekey := ""
		for _, st := range stages {
			if !slices.Contains(st.Events, e.Name) {
				continue
			}
			if ekey == "" {
				ekey = eventstore.ProfileKey(e.UserID, e.AnonymousID)
			}
			k := hitKey{ekey, st.Name}
			h := hit{e.Timestamp.UnixNano(), e}
			if old, ok := hits[k]; !ok || h.at > old.at || (h.at == old.at && msgOf(e) > msgOf(old.e)) {
				hits[k] = h
			}
		}
	}
	if len(hits) == 0 {
		return nil
	}
	keys := make([]hitKey, 0, len(hits))
	for k := range hits {
		keys = append(keys, k)
	}
	// A fixed order: concurrent writers on PostgreSQL lock rows alike.
	slices.SortFunc(keys, func(a, b hitKey) int {
		if c := strings.Compare(a.ekey, b.ekey); c != 0 {
			return c
		}
		return strings.Compare(a.stage, b.stage)
	})
	const stageChunk = 400
	one := "(?, ?, ?, ?)"
	return s.db.Tx(ctx, func(tx *statestore.Tx) error {
		for start, end := range tx.Parts(len(keys), stageChunk) {
			part := keys[start:end]
			args := make([]any, 0, 4*len(part))
			for _, k := range part {
				h := hits[k]
				args = append(args, k.ekey, k.stage, h.at, msgOf(h.e))
			}
			if _, err := tx.ExecCached(ctx, `INSERT INTO audience_stage (ekey, stage, last_at, last_msg) VALUES `+strings.Repeat(one+", ", len(part)-1)+one+`
ON CONFLICT (ekey, stage) DO UPDATE SET
	last_msg = CASE WHEN excluded.last_at > audience_stage.last_at OR (excluded.last_at = audience_stage.last_at AND excluded.last_msg > audience_stage.last_msg) THEN excluded.last_msg ELSE audience_stage.last_msg END,
	last_at = CASE WHEN excluded.last_at > audience_stage.last_at THEN excluded.last_at ELSE audience_stage.last_at END`, args...); err != nil {
				return err
			}
		}
		return nil
	})
}

// StagesOfKeys returns the lifecycle stages the keys reached, in the
// configured order, and the stage of the latest of their stage events
// ("" when none).
func (s *Store) StagesOfKeys(ctx context.Context, keys []string) (reached []string, current string, err error) {
	reached = []string{}
	stages := s.lifecycle()
	if len(keys) == 0 || len(stages) == 0 {
		return reached, "", nil
	}
	args := make([]any, len(keys))
	for i, k := range keys {
		args[i] = k
	}
	rows, err := s.db.Query(ctx, `SELECT stage, last_at, last_msg FROM audience_stage WHERE ekey IN (`+strings.TrimSuffix(strings.Repeat("?, ", len(keys)), ", ")+`)`, args...)
	if err != nil {
		return nil, "", err
	}
	defer rows.Close()
	got := map[string]bool{}
	var bestAt int64
	var bestMsg string
	for rows.Next() {
		var st, msg string
		var at int64
		if err := rows.Scan(&st, &at, &msg); err != nil {
			return nil, "", err
		}
		got[st] = true
		if current == "" || at > bestAt || (at == bestAt && msg > bestMsg) {
			current, bestAt, bestMsg = st, at, msg
		}
	}
	if err := rows.Err(); err != nil {
		return nil, "", err
	}
	for _, st := range stages {
		if got[st.Name] {
			reached = append(reached, st.Name)
		}
	}
	return reached, current, nil
}

// record takes events into the state of traits, in one transaction.
func (s *Store) record(ctx context.Context, traits []Trait, events []event.Event) error {
	w := traitWrites{points: map[pointKey]*point{}, seen: map[seenKey]int{}}
	for i := range events {
		e := &events[i]
		if e.Type != "track" || (e.UserID == "" && e.AnonymousID == "") {
			continue
		}
		key, msg := "", ""
		for j := range traits {
			if t := &traits[j]; t.Event == e.Name {
				if key == "" {
					key = eventstore.ProfileKey(e.UserID, e.AnonymousID)
					msg = strconv.Itoa(len(e.SourceID)) + ":" + e.SourceID + e.MessageID // unambiguous
				}
				w.add(t, e, key, msg)
			}
		}
	}
	if len(w.points) == 0 && len(w.counted) == 0 {
		return nil
	}
	return s.db.Tx(ctx, func(tx *statestore.Tx) error { return w.write(ctx, tx) })
}

// traitWrites is what a batch of events changes in the computed traits'
// state, collapsed in memory so that each table takes multi-row
// statements (one row per key per statement) instead of a statement per
// event: the same state as applying the events one at a time, in order.
type traitWrites struct {
	// points: the earliest and latest event of each (trait, key), for
	// First, Last and DaysSince.
	points map[pointKey]*point
	// counted: the events of Count, Sum and MostFrequent, in event
	// order, each (trait, key, message) once (the first); seen indexes
	// them.
	counted []countHit
	seen    map[seenKey]int
}

type pointKey struct{ trait, ekey string }

// point is a (trait, key)'s earliest and latest event: time, message,
// value.
type point struct {
	firstAt, lastAt   int64
	firstMsg, lastMsg string
	firstVal, lastVal string
}

type seenKey struct{ trait, ekey, msg string }

// countHit is an event to count into a day's bucket (and value).
type countHit struct {
	seenKey
	day int64
	val string
	num float64
	sum bool // Sum: num is added; its additions keep their order
}

// add takes one event of one trait in (an event lacking the property,
// or a sum's event whose property is not a number, is not counted).
func (w *traitWrites) add(t *Trait, e *event.Event, key, msg string) {
	var val json.RawMessage
	if t.Property != "" {
		val = property(e.Raw, t.Property)
		if val == nil {
			return // the event lacks the property: not counted
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
		// latest (ties: largest message) is last; a tie with what is
		// held already keeps it, as the upsert does.
		k := pointKey{t.ID, key}
		p, ok := w.points[k]
		if !ok {
			w.points[k] = &point{at, at, msg, msg, v, v}
			return
		}
		if at < p.firstAt || (at == p.firstAt && msg < p.firstMsg) {
			p.firstAt, p.firstMsg, p.firstVal = at, msg, v
		}
		if at > p.lastAt || (at == p.lastAt && msg > p.lastMsg) {
			p.lastAt, p.lastMsg, p.lastVal = at, msg, v
		}
		return
	}
	h := countHit{seenKey: seenKey{t.ID, key, msg}, day: dayOf(e.Timestamp)}
	switch t.Kind {
	case Sum:
		if json.Unmarshal(val, &h.num) != nil || math.IsInf(h.num, 0) || math.IsNaN(h.num) {
			return // not a number: not summed
		}
		h.sum = true
	case MostFrequent:
		h.val = string(val)
	}
	if _, ok := w.seen[h.seenKey]; ok {
		return // the same event again: counted once
	}
	w.seen[h.seenKey] = len(w.counted)
	w.counted = append(w.counted, h)
}

// Rows per statement: a point row binds 8 values, a seen row 3, a bucket
// row 6.
const traitChunk = 400

// write stores w in tx. Rows go in key order, so that concurrent writers
// on PostgreSQL lock them alike.
func (w *traitWrites) write(ctx context.Context, tx *statestore.Tx) error {
	pks := make([]pointKey, 0, len(w.points))
	for k := range w.points {
		pks = append(pks, k)
	}
	slices.SortFunc(pks, func(a, b pointKey) int {
		return cmp.Or(strings.Compare(a.trait, b.trait), strings.Compare(a.ekey, b.ekey))
	})
	for start, end := range tx.Parts(len(pks), traitChunk) {
		part := pks[start:end]
		args := make([]any, 0, 8*len(part))
		for _, k := range part {
			p := w.points[k]
			args = append(args, k.trait, k.ekey, p.firstAt, p.firstMsg, p.firstVal, p.lastAt, p.lastMsg, p.lastVal)
		}
		if _, err := tx.ExecCached(ctx, `INSERT INTO audience_trait_point (trait_id, ekey, first_at, first_msg, first_val, last_at, last_msg, last_val)
VALUES `+rows(len(part), 8)+`
ON CONFLICT (trait_id, ekey) DO UPDATE SET
	first_val = CASE WHEN excluded.first_at < audience_trait_point.first_at OR (excluded.first_at = audience_trait_point.first_at AND excluded.first_msg < audience_trait_point.first_msg) THEN excluded.first_val ELSE audience_trait_point.first_val END,
	first_msg = CASE WHEN excluded.first_at < audience_trait_point.first_at OR (excluded.first_at = audience_trait_point.first_at AND excluded.first_msg < audience_trait_point.first_msg) THEN excluded.first_msg ELSE audience_trait_point.first_msg END,
	first_at = CASE WHEN excluded.first_at < audience_trait_point.first_at THEN excluded.first_at ELSE audience_trait_point.first_at END,
	last_val = CASE WHEN excluded.last_at > audience_trait_point.last_at OR (excluded.last_at = audience_trait_point.last_at AND excluded.last_msg > audience_trait_point.last_msg) THEN excluded.last_val ELSE audience_trait_point.last_val END,
	last_msg = CASE WHEN excluded.last_at > audience_trait_point.last_at OR (excluded.last_at = audience_trait_point.last_at AND excluded.last_msg > audience_trait_point.last_msg) THEN excluded.last_msg ELSE audience_trait_point.last_msg END,
	last_at = CASE WHEN excluded.last_at > audience_trait_point.last_at THEN excluded.last_at ELSE audience_trait_point.last_at END`, args...); err != nil {
			return err
		}
	}
	if len(w.counted) == 0 {
		return nil
	}
	// Which events are new to the seen table: only those count.
	order := make([]int, len(w.counted))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return compareSeen(w.counted[a].seenKey, w.counted[b].seenKey) })
	fresh := make([]bool, len(w.counted))
	for start, end := range tx.Parts(len(order), traitChunk) {
		part := order[start:end]
		args := make([]any, 0, 3*len(part))
		for _, i := range part {
			k := w.counted[i].seenKey
			args = append(args, k.trait, k.ekey, k.msg)
		}
		r, err := tx.QueryCached(ctx, `INSERT INTO audience_trait_seen (trait_id, ekey, msg) VALUES `+rows(len(part), 3)+` ON CONFLICT DO NOTHING RETURNING trait_id, ekey, msg`, args...)
		if err != nil {
			return err
		}
		for r.Next() {
			var k seenKey
			if err := r.Scan(&k.trait, &k.ekey, &k.msg); err != nil {
				r.Close()
				return err
			}
			if i, ok := w.seen[k]; ok {
				fresh[i] = true
			}
		}
		r.Close()
		if err := r.Err(); err != nil {
			return err
		}
	}
	// The buckets' additions, by bucket, in event order: a count adds
	// its events at once; a sum adds each event's number on its own, in
	// order, one statement (round) after another, so that the floating
	// point sum is the one the events added one at a time make.
	type bucketKey struct {
		trait, ekey string
		day         int64
		val         string
	}
	type bucket struct {
		n    int64
		nums []float64 // a sum's additions, in order
	}
	buckets := map[bucketKey]*bucket{}
	var keys []bucketKey
	rounds := 0
	for i, h := range w.counted {
		if !fresh[i] {
			continue
		}
		k := bucketKey{h.trait, h.ekey, h.day, h.val}
		b, ok := buckets[k]
		if !ok {
			b = &bucket{}
			buckets[k] = b
			keys = append(keys, k)
		}
		if h.sum {
			b.nums = append(b.nums, h.num)
			rounds = max(rounds, len(b.nums))
		} else {
			b.n++
			rounds = max(rounds, 1)
		}
	}
	slices.SortFunc(keys, func(a, b bucketKey) int {
		return cmp.Or(strings.Compare(a.trait, b.trait), strings.Compare(a.ekey, b.ekey), cmp.Compare(a.day, b.day), strings.Compare(a.val, b.val))
	})
	for round := range rounds {
		var args []any
		for _, k := range keys {
			b := buckets[k]
			switch {
			case round < len(b.nums):
				args = append(args, k.trait, k.ekey, k.day, k.val, int64(1), b.nums[round])
			case round == 0 && b.n > 0:
				args = append(args, k.trait, k.ekey, k.day, k.val, b.n, float64(0))
			}
		}
		n := len(args) / 6
		for start, end := range tx.Parts(n, traitChunk) {
			if _, err := tx.ExecCached(ctx, `INSERT INTO audience_trait_bucket (trait_id, ekey, day, val, n, s) VALUES `+rows(end-start, 6)+`
ON CONFLICT (trait_id, ekey, day, val) DO UPDATE SET n = audience_trait_bucket.n + excluded.n, s = audience_trait_bucket.s + excluded.s`, args[6*start:6*end]...); err != nil {
				return err
			}
		}
	}
	return nil
}

func compareSeen(a, b seenKey) int {
	return cmp.Or(strings.Compare(a.trait, b.trait), strings.Compare(a.ekey, b.ekey), strings.Compare(a.msg, b.msg))
}

// rows is the VALUES list of n rows of per placeholders each.
func rows(n, per int) string {
	one := "(" + strings.Repeat("?, ", per-1) + "?)"
	return strings.Repeat(one+", ", n-1) + one
}

// dayOf is t's UTC day number.
func dayOf(t time.Time) int64 {
	u := t.Unix()
	d := u / 86400
	if u < 0 && u%86400 != 0 {
		d--
	}
	return d
}

// property is the compact JSON of properties.PATH of a raw event (PATH
// dotted), nil when absent or null.
func property(raw []byte, path string) json.RawMessage {
	cur, ok := findProperty(raw, path)
	if !ok {
		return propertyDecoded(raw, path)
	}
	if cur == nil {
		return nil
	}
	return compactValue(cur)
}

// propertyDecoded is property by decoding the event's JSON: the
// definition findProperty follows.
func propertyDecoded(raw []byte, path string) json.RawMessage {
	var ev struct {
		Properties json.RawMessage `json:"properties"`
	}
	if json.Unmarshal(raw, &ev) != nil {
		return nil
	}
	cur := ev.Properties
	for _, part := range strings.Split(path, ".") {
		var obj map[string]json.RawMessage
		if json.Unmarshal(cur, &obj) != nil {
			return nil
		}
		var ok bool
		if cur, ok = obj[part]; !ok {
			return nil
		}
	}
	return compactValue(cur)
}

// compactValue is a JSON value re-encoded compactly (object keys sorted),
// nil when it is null or not valid JSON.
func compactValue(cur json.RawMessage) json.RawMessage {
	var v any
	if json.Unmarshal(cur, &v) != nil || v == nil {
		return nil
	}
	b, _ := json.Marshal(v)
	return b
}

// findProperty finds the bytes of properties.PATH in raw (a valid JSON
// object, as the pipeline's events are) without decoding the event: the
// value the decoding in propertyDecoded finds, nil when it finds none.
// It declines (ok false) where the two could differ: raw not an object,
// a key with an escape or a non-ASCII byte (the decoder unescapes keys
// and folds "properties" by Unicode rules), a value not shaped as
// expected.
func findProperty(raw []byte, path string) (val []byte, ok bool) {
	// The decoder matches the field "properties" exactly or without
	// regard to case, and the last of several such keys wins.
	cur, found, ok := lastMember(raw, func(k []byte) bool { return strings.EqualFold(string(k), "properties") })
	if !ok {
		return nil, false
	}
	if !found {
		return nil, true
	}
	for part := range strings.SplitSeq(path, ".") {
		if len(cur) == 0 || cur[0] != '{' {
			if len(cur) > 0 && cur[0] == 'n' {
				return nil, true // null decodes as an empty map
			}
			return nil, false // not an object: leave it to the decoder
		}
		cur, found, ok = lastMember(cur, func(k []byte) bool { return string(k) == part })
		if !ok {
			return nil, false
		}
		if !found {
			return nil, true
		}
	}
	return cur, true
}

// lastMember returns the value of the last member of the JSON object obj
// whose key match accepts, trimmed of space. ok is false when obj is not
// an object this scanner reads with certainty (see findProperty).
func lastMember(obj []byte, match func(key []byte) bool) (val []byte, found, ok bool) {
	i := skipSpace(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return nil, false, false
	}
	i = skipSpace(obj, i+1)
	if i < len(obj) && obj[i] == '}' {
		return nil, false, true
	}
	for {
		if i >= len(obj) || obj[i] != '"' {
			return nil, false, false
		}
		start := i + 1
		end := start
		for end < len(obj) && obj[end] != '"' {
			if c := obj[end]; c == '\\' || c >= 0x80 || c < 0x20 {
				return nil, false, false
			}
			end++
		}
		if end >= len(obj) {
			return nil, false, false
		}
		key := obj[start:end]
		i = skipSpace(obj, end+1)
		if i >= len(obj) || obj[i] != ':' {
			return nil, false, false
		}
		vs := skipSpace(obj, i+1)
		ve, vok := skipValue(obj, vs)
		if !vok {
			return nil, false, false
		}
		if match(key) {
			val, found = obj[vs:ve], true
		}
		i = skipSpace(obj, ve)
		if i >= len(obj) {
			return nil, false, false
		}
		switch obj[i] {
		case ',':
			i = skipSpace(obj, i+1)
		case '}':
			return val, found, true
		default:
			return nil, false, false
		}
	}
}

// skipValue returns the end of the JSON value at i (valid JSON assumed;
// false for what it cannot read).
func skipValue(b []byte, i int) (int, bool) {
	if i >= len(b) {
		return i, false
	}
	switch b[i] {
	case '"':
		for j := i + 1; j < len(b); j++ {
			switch b[j] {
			case '\\':
				j++
			case '"':
				return j + 1, true
			}
		}
		return len(b), false
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, true
				}
			case '"':
				e, ok := skipValue(b, j)
				if !ok {
					return e, false
				}
				j = e - 1
			}
		}
		return len(b), false
	default:
		j := i
		for j < len(b) {
			switch b[j] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				if j == i {
					return j, false
				}
				return j, true
			}
			j++
		}
		return j, j > i
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// Values returns the computed traits of a profile by name: those with no
// event for the profile are left out. An unknown profile matches
// statestore.ErrNotFound.
func (s *Store) Values(ctx context.Context, profileID string) (map[string]any, error) {
	_, keys, err := s.keys.EventKeys(ctx, profileID)
	if err != nil {
		return nil, err
	}
	return s.ValuesOfKeys(ctx, keys)
}

// ValuesOfKeys combines the state of event keys into computed trait values.
func (s *Store) ValuesOfKeys(ctx context.Context, keys []string) (map[string]any, error) {
	out := map[string]any{}
	if len(keys) == 0 {
		return out, nil
	}
	traits, err := s.List(ctx)
	if err != nil {
		return nil, err
	}
	now := s.now()
	today := dayOf(now)
	in := strings.TrimSuffix(strings.Repeat("?, ", len(keys)), ", ")
	for _, t := range traits {
		args := []any{t.ID}
		for _, k := range keys {
			args = append(args, k)
		}
		switch t.Kind {
		case First, Last, DaysSince:
			rows, err := s.db.Query(ctx, `SELECT first_at, first_msg, first_val, last_at, last_msg, last_val FROM audience_trait_point WHERE trait_id = ? AND ekey IN (`+in+`)`, args...)
			if err != nil {
				return nil, err
			}
			found := false
			var fAt, lAt int64
			var fMsg, fVal, lMsg, lVal string
			for rows.Next() {
				var a, b int64
				var am, av, bm, bv string
				if err := rows.Scan(&a, &am, &av, &b, &bm, &bv); err != nil {
					rows.Close()
					return nil, err
				}
				if !found || a < fAt || (a == fAt && am < fMsg) {
					fAt, fMsg, fVal = a, am, av
				}
				if !found || b > lAt || (b == lAt && bm > lMsg) {
					lAt, lMsg, lVal = b, bm, bv
				}
				found = true
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return nil, err
			}
			if !found {
				continue
			}
			switch t.Kind {
			case First:
				out[t.Name] = json.RawMessage(fVal)
			case Last:
				out[t.Name] = json.RawMessage(lVal)
			default:
				d := max(0, int64(now.Sub(time.Unix(0, lAt))/(24*time.Hour)))
				out[t.Name] = d
			}
		default:
			from := int64(math.MinInt64)
			if t.days > 0 {
				from = today - int64(t.days) + 1
			}
			args = append(args, from)
			rows, err := s.db.Query(ctx, `SELECT val, SUM(n), SUM(s) FROM audience_trait_bucket WHERE trait_id = ? AND ekey IN (`+in+`) AND day >= ? GROUP BY val ORDER BY val`, args...)
			if err != nil {
				return nil, err
			}
			var total int64
			var sum float64
			best, bestN := "", int64(0)
			for rows.Next() {
				var v string
				var n int64
				var f float64
				if err := rows.Scan(&v, &n, &f); err != nil {
					rows.Close()
					return nil, err
				}
				total += n
				sum += f
				if n > bestN { // ties: the smallest value, as rows come sorted
					best, bestN = v, n
				}
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return nil, err
			}
			switch t.Kind {
			case Count:
				out[t.Name] = total
			case Sum:
				out[t.Name] = sum
			case MostFrequent:
				if bestN > 0 {
					out[t.Name] = json.RawMessage(best)
				}
			}
		}
	}
	return out, nil
}

// stateKeys are the event keys with any computed trait state.
func (s *Store) stateKeys(ctx context.Context) ([]string, error) {
	rows, err := s.db.Query(ctx, `SELECT ekey FROM audience_trait_bucket UNION SELECT ekey FROM audience_trait_point`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// Expire deletes what the computed traits keep of events before before
// (retention, docs/privacy.md): day buckets of days wholly before it, and
// first/last points and lifecycle stages last seen before it; a point
// whose first event is before it keeps its last as its first. It returns
// how many rows it deleted or changed. Buckets mix every source's events, so they
// follow the retention's default age, not a source's.
func (s *Store) Expire(ctx context.Context, before time.Time) (int64, error) {
	var n int64
	err := s.db.Tx(ctx, func(tx *statestore.Tx) error {
		n = 0
		for _, q := range []struct {
			sql string
			arg int64
		}{
			{`DELETE FROM audience_trait_bucket WHERE day < ?`, dayOf(before)},
			{`DELETE FROM audience_trait_point WHERE last_at < ?`, before.UnixNano()},
			{`DELETE FROM audience_stage WHERE last_at < ?`, before.UnixNano()},
		} {
			if err := ctx.Err(); err != nil {
				return err
			}
			res, err := tx.Exec(ctx, q.sql, q.arg)
			if err != nil {
				return err
			}
			d, _ := res.RowsAffected()
			n += d
		}
		// A point whose first event expired but whose last did not: the
		// first becomes the last (the earliest value kept).
		res, err := tx.Exec(ctx, `UPDATE audience_trait_point SET first_at = last_at, first_msg = last_msg, first_val = last_val WHERE first_at < ?`, before.UnixNano())
		if err != nil {
			return err
		}
		d, _ := res.RowsAffected()
		n += d
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("audience: expire: %w", err)
	}
	return n, nil
}
