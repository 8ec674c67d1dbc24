package privacy

import (
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"tandem/event"
	"tandem/eventstore"
	"tandem/statestore"
)

// Sources of a decision other than the API caller's own label.
const (
	SourceEvent   = "event"   // context.consent.categoryPreferences of an event
	SourceGPC     = "gpc"     // Sec-GPC: 1 on the collection request
	SourceDefault = "default" // no decision: the configured defaults
	SourceAPI     = "api"     // PUT /profiles/{id}/consent without a source
)

// ErrNotFound matches (with errors.Is) statestore.ErrNotFound: no such
// profile.
var ErrNotFound = fmt.Errorf("privacy: profile not found: %w", statestore.ErrNotFound)

// FieldError names the request field at fault.
type FieldError = statestore.FieldError

// Keys finds the event keys of a profile (the identity store, see
// NewIdentityKeys): current is the id profile id is known under now (it
// may have been merged), keys its user_id and anonymous_id identifiers as
// [eventstore.ProfileKey] makes them, user ids first. An unknown profile
// is an error matching statestore.ErrNotFound.
type Keys interface {
	EventKeys(ctx context.Context, profileID string) (current string, keys []string, err error)
	// ProfileFor is the profile holding identifier typ:value, known
	// false when none does yet.
	ProfileFor(ctx context.Context, typ, value string) (id string, known bool, err error)
}

// Migrations are the state store tables of consent and of data-subject
// requests.
func Migrations() []statestore.Migration {
	return []statestore.Migration{{Package: "privacy", Version: 1, SQL: `
CREATE TABLE privacy_consent (
	ekey TEXT NOT NULL,
	purpose TEXT NOT NULL,
	granted BIGINT NOT NULL,
	event_time BIGINT NOT NULL,
	message_id TEXT NOT NULL,
	source TEXT NOT NULL,
	PRIMARY KEY (ekey, purpose)
);
CREATE TABLE privacy_consent_history (
	ekey TEXT NOT NULL,
	purpose TEXT NOT NULL,
	message_id TEXT NOT NULL,
	granted BIGINT NOT NULL,
	event_time BIGINT NOT NULL,
	source TEXT NOT NULL,
	actor TEXT NOT NULL,
	recorded_at BIGINT NOT NULL,
	PRIMARY KEY (ekey, purpose, message_id)
);
CREATE INDEX privacy_consent_history_time ON privacy_consent_history (ekey, event_time)`}, requestMigration, suppressionMigration}
}

// Store keeps consent decisions in the state store.
type Store struct {
	db   *statestore.DB
	cfg  atomic.Pointer[Config] // see SetConfig
	keys Keys
	now  func() time.Time
}

// NewStore returns a consent store over db (migrated with [Migrations]),
// with the configured defaults, finding profiles' keys with keys.
func NewStore(db *statestore.DB, cfg Config, keys Keys) *Store {
	s := &Store{db: db, keys: keys, now: time.Now}
	s.SetConfig(cfg)
	return s
}

// SetConfig puts a new consent configuration in force (checked by
// [Config.Validate]), for the events recorded and the routes judged
// from then on. The decisions recorded stay.
func (s *Store) SetConfig(cfg Config) {
	cfg.Defaults = maps.Clone(cfg.Defaults)
	if cfg.Defaults == nil {
		cfg.Defaults = map[string]bool{}
	}
	cfg.GPCPurposes, cfg.ObjectionPurposes = slices.Clone(cfg.GPCPurposes), slices.Clone(cfg.ObjectionPurposes)
	s.cfg.Store(&cfg)
}

// WithClock makes the store take the time of API decisions from now
// (tests); it returns s.
func (s *Store) WithClock(now func() time.Time) *Store {
	s.now = now
	return s
}

// Config returns the store's configuration.
func (s *Store) Config() Config { return *s.cfg.Load() }

// decision is one purpose granted or refused under an event key.
type decision struct {
	ekey, purpose string
	granted       bool
	at            int64 // event time, ns
	msg           string
	source        string
	actor         string
}

// later reports whether d is later than o: event time, then messageId.
func (d decision) later(o decision) bool {
	return d.at > o.at || (d.at == o.at && d.msg > o.msg)
}

// rawConsent is the part of an event that carries consent.
type rawConsent struct {
	Context struct {
		Consent struct {
			CategoryPreferences map[string]json.RawMessage `json:"categoryPreferences"`
		} `json:"consent"`
		GPC json.RawMessage `json:"gpc"`
	} `json:"context"`
}

// mayCarryConsent reports whether raw holds `"categoryPreferences"` or
// `"gpc"`, in one pass: both hold a "g", a rare letter in events' JSON,
// found by the vectorised byte search (two substring searches over every
// event cost 0.7 µs an event in the pipeline's state-store stage).
func mayCarryConsent(raw []byte) bool {
	for i := 0; i < len(raw); {
		j := bytes.IndexByte(raw[i:], 'g')
		if j < 0 {
			return false
		}
		j += i
		if j >= 1 && bytes.HasPrefix(raw[j-1:], []byte(`"gpc"`)) ||
			j >= 5 && bytes.HasPrefix(raw[j-5:], []byte(`"categoryPreferences"`)) {
			return true
		}
		i = j + 1
	}
	return false
}

// fromEvent returns the decisions event e carries. Most events carry none,
// and cost one byte search each.
func (s *Store) fromEvent(e *event.Event) []decision {
	if !mayCarryConsent(e.Raw) {
		return nil
	}
	var f rawConsent
	if json.Unmarshal(e.Raw, &f) != nil {
		return nil
	}
	key := eventstore.ProfileKey(e.UserID, e.AnonymousID)
	at := e.Timestamp.UnixNano()
	byPurpose := map[string]decision{}
	for name, v := range f.Context.Consent.CategoryPreferences {
		var b bool
		if checkPurpose(name) != "" || json.Unmarshal(v, &b) != nil {
			continue // not a purpose name or not a boolean: not a decision
		}
		byPurpose[strings.ToLower(name)] = decision{ekey: key, purpose: name, granted: b, at: at, msg: e.MessageID, source: SourceEvent}
	}
	if gpc := bytes.TrimSpace(f.Context.GPC); string(gpc) == "true" || string(gpc) == `"1"` || string(gpc) == "1" {
		for _, name := range s.Config().GPCPurposes {
			byPurpose[strings.ToLower(name)] = decision{ekey: key, purpose: name, granted: false, at: at, msg: e.MessageID, source: SourceGPC}
		}
	}
	out := make([]decision, 0, len(byPurpose))
	for _, d := range byPurpose {
		out = append(out, d)
	}
	return out
}

// Record takes the consent decisions of one pipeline batch of valid events
// into the store: the latest per event key and purpose, and the history of
// changes. Recording the same events again changes nothing. A batch
// without consent costs a byte search per event and no query.
func (s *Store) Record(ctx context.Context, events []event.Event) error {
	var ds []decision
	for i := range events {
		ds = append(ds, s.fromEvent(&events[i])...)
	}
	if len(ds) == 0 {
		return nil
	}
	return s.apply(ctx, ds)
}

type slot struct{ ekey, purpose string }

// apply records decisions, in event-time order, in one transaction.
func (s *Store) apply(ctx context.Context, ds []decision) error {
	slices.SortFunc(ds, func(a, b decision) int {
		if c := cmp.Compare(a.at, b.at); c != 0 {
			return c
		}
		return cmp.Or(strings.Compare(a.msg, b.msg), strings.Compare(a.ekey, b.ekey), strings.Compare(a.purpose, b.purpose))
	})
	keySet := map[string]bool{}
	for _, d := range ds {
		keySet[d.ekey] = true
	}
	keys := slices.Sorted(maps.Keys(keySet))
	recorded := s.now().UnixNano()
	return s.db.Tx(ctx, func(tx *statestore.Tx) error {
		latest, err := latestOf(ctx, tx, keys)
		if err != nil {
			return err
		}
		changed := map[slot]decision{}
		for _, d := range ds {
			k := slot{d.ekey, strings.ToLower(d.purpose)}
			cur, ok := latest[k]
			switch {
			case !ok || d.later(cur):
				// In order (the usual case): the history's last entry
				// holds the latest value, so d is a change if it differs.
				if !ok || cur.granted != d.granted {
					if err := addHistory(ctx, tx, d, recorded); err != nil {
						return err
					}
				}
				if ok && cur.purpose != d.purpose {
					// The same purpose under another spelling: one row per purpose.
					if _, err := tx.Exec(ctx, `DELETE FROM privacy_consent WHERE ekey = ? AND purpose = ?`, cur.ekey, cur.purpose); err != nil {
						return fmt.Errorf("privacy: record consent: %w", err)
					}
				}
				latest[k] = d
				changed[k] = d
			default:
				// Late (or redelivered): a change if it differs from the
				// entry before it in event time; then the latest
				// decision must still be the history's last entry.
				prev, found, err := lastHistory(ctx, tx, k, &d)
				if err != nil {
					return err
				}
				if !found || prev != d.granted {
					if err := addHistory(ctx, tx, d, recorded); err != nil {
						return err
					}
				}
				last, _, err := lastHistory(ctx, tx, k, nil)
				if err != nil {
					return err
				}
				if last != cur.granted {
					if err := addHistory(ctx, tx, cur, recorded); err != nil {
						return err
					}
				}
			}
		}
		for _, d := range changed {
			if _, err := tx.Exec(ctx, `INSERT INTO privacy_consent (ekey, purpose, granted, event_time, message_id, source) VALUES (?, ?, ?, ?, ?, ?)
				ON CONFLICT (ekey, purpose) DO UPDATE SET granted = excluded.granted, event_time = excluded.event_time,
					message_id = excluded.message_id, source = excluded.source
				WHERE excluded.event_time > privacy_consent.event_time
				   OR (excluded.event_time = privacy_consent.event_time AND excluded.message_id > privacy_consent.message_id)`,
				d.ekey, d.purpose, b2i(d.granted), d.at, d.msg, d.source); err != nil {
				return fmt.Errorf("privacy: record consent: %w", err)
			}
		}
		return nil
	})
}

func addHistory(ctx context.Context, tx *statestore.Tx, d decision, recorded int64) error {
	if _, err := tx.Exec(ctx, `INSERT INTO privacy_consent_history (ekey, purpose, message_id, granted, event_time, source, actor, recorded_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (ekey, purpose, message_id) DO NOTHING`,
		d.ekey, d.purpose, d.msg, b2i(d.granted), d.at, d.source, d.actor, recorded); err != nil {
		return fmt.Errorf("privacy: record consent history: %w", err)
	}
	return nil
}

// lastHistory returns the value of slot k's last history entry (event
// time, then messageId), before d's when d is not nil.
func lastHistory(ctx context.Context, tx *statestore.Tx, k slot, d *decision) (granted, found bool, err error) {
	q := `SELECT granted FROM privacy_consent_history WHERE ekey = ? AND LOWER(purpose) = ?`
	args := []any{k.ekey, k.purpose}
	if d != nil {
		q += ` AND (event_time < ? OR (event_time = ? AND message_id < ?))`
		args = append(args, d.at, d.at, d.msg)
	}
	var g int64
	err = tx.QueryRow(ctx, q+` ORDER BY event_time DESC, message_id DESC LIMIT 1`, args...).Scan(&g)
	if errors.Is(err, statestore.ErrNotFound) {
		return false, false, nil
	}
	if err != nil {
		return false, false, fmt.Errorf("privacy: read consent history: %w", err)
	}
	return g != 0, true, nil
}

type querier interface {
	Query(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// latestOf reads the latest decision of every purpose of keys, by key and
// lower-cased purpose.
func latestOf(ctx context.Context, q querier, keys []string) (map[slot]decision, error) {
	out := map[slot]decision{}
	for start := 0; start < len(keys); start += chunk {
		part := keys[start:min(start+chunk, len(keys))]
		rows, err := q.Query(ctx, `SELECT ekey, purpose, granted, event_time, message_id, source FROM privacy_consent WHERE ekey IN `+inList(len(part)), anys(part)...)
		if err != nil {
			return nil, fmt.Errorf("privacy: read consent: %w", err)
		}
		for rows.Next() {
			var d decision
			var g int64
			if err := rows.Scan(&d.ekey, &d.purpose, &g, &d.at, &d.msg, &d.source); err != nil {
				rows.Close()
				return nil, fmt.Errorf("privacy: read consent: %w", err)
			}
			d.granted = g != 0
			k := slot{d.ekey, strings.ToLower(d.purpose)}
			if cur, ok := out[k]; !ok || d.later(cur) {
				out[k] = d
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("privacy: read consent: %w", err)
		}
	}
	return out, nil
}

// chunk bounds the keys in one IN list.
const chunk = 400

func inList(n int) string { return "(" + strings.Repeat("?, ", n-1) + "?)" }

func anys(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// State is a profile's consent as the API shows it.
type State struct {
	// Purposes is the consent of every purpose the profile decided or
	// the configuration has a default for.
	Purposes map[string]bool `json:"purposes"`
	// Defaulted lists the purposes whose value is the configured default
	// (the profile made no decision about them), sorted.
	Defaulted []string `json:"defaulted"`
	// UpdatedAt is the time of the profile's latest decision; nil when
	// it made none.
	UpdatedAt *time.Time `json:"updatedAt"`
	// Source is where the latest decision came from: "event", "gpc",
	// "import", the source an API caller named, or "default" when there
	// is none.
	Source string `json:"source"`
}

// decisions returns profile id's current id and its latest decision per
// lower-cased purpose across its keys (the most recent wins). An unknown
// profile has none.
func (s *Store) decisions(ctx context.Context, id string) (string, []string, map[string]decision, error) {
	cur, keys, err := s.keys.EventKeys(ctx, id)
	if err != nil {
		return "", nil, nil, err
	}
	latest, err := latestOf(ctx, s.db, keys)
	if err != nil {
		return "", nil, nil, err
	}
	best := map[string]decision{}
	for k, d := range latest {
		if b, ok := best[k.purpose]; !ok || d.later(b) {
			best[k.purpose] = d
		}
	}
	return cur, keys, best, nil
}

func (s *Store) state(best map[string]decision) State {
	st := State{Purposes: map[string]bool{}, Defaulted: []string{}, Source: SourceDefault}
	var last decision
	for _, d := range best {
		st.Purposes[d.purpose] = d.granted
		if st.UpdatedAt == nil || d.later(last) {
			last = d
			t := time.Unix(0, d.at).UTC()
			st.UpdatedAt = &t
			st.Source = d.source
		}
	}
	for name, v := range s.Config().Defaults {
		if _, ok := best[strings.ToLower(name)]; !ok {
			st.Purposes[name] = v
			st.Defaulted = append(st.Defaulted, name)
		}
	}
	slices.Sort(st.Defaulted)
	return st
}

// State returns profile id's consent. It fails with [ErrNotFound] for an
// unknown profile.
func (s *Store) State(ctx context.Context, id string) (State, error) {
	_, _, best, err := s.decisions(ctx, id)
	if err != nil {
		return State{}, notFound(err)
	}
	return s.state(best), nil
}

func notFound(err error) error {
	if errors.Is(err, statestore.ErrNotFound) {
		return ErrNotFound
	}
	return err
}

// Allowed reports whether profile id's consent allows processing for
// every one of purposes, at this moment: each purpose must be granted by
// the profile's latest decision, or, when it made none, by the configured
// default. No purposes: allowed. An unknown profile (not resolved yet) has
// only the defaults. reason says which purpose refused and why; it names
// no identifier, so it may be logged or shown with a delivery. This is the
// check a destination's route makes before each delivery.
func (s *Store) Allowed(ctx context.Context, id string, purposes []string) (ok bool, reason string, err error) {
	if len(purposes) == 0 {
		return true, "", nil
	}
	_, _, best, err := s.decisions(ctx, id)
	if errors.Is(err, statestore.ErrNotFound) {
		best, err = nil, nil
	}
	if err != nil {
		return false, "", err
	}
	return s.judge(best, purposes)
}

// judge answers Allowed from a profile's latest decisions by lower-cased
// purpose.
func (s *Store) judge(best map[string]decision, purposes []string) (bool, string, error) {
	for _, p := range purposes {
		if d, ok := best[strings.ToLower(p)]; ok {
			if !d.granted {
				return false, fmt.Sprintf("consent for %s refused (%s)", p, d.source), nil
			}
			continue
		}
		if v, ok := s.Config().defaultFor(p); !ok || !v {
			return false, fmt.Sprintf("no consent decision for %s and its default is to refuse", p), nil
		}
	}
	return true, "", nil
}

// AllowedEvent is [Store.Allowed] for the profile of event e, for a
// route that holds events rather than profile ids: the profile holding
// e's userId (else its anonymousId). An event whose identifier no profile
// holds yet (resolution has not reached it) is judged by the decisions of
// its own key and the defaults. The decisions e itself carries count as
// well, by the same latest-wins rule: a route may see an event before the
// pipeline has recorded its consent, and must then judge it by what it
// says rather than by what was known before it.
func (s *Store) AllowedEvent(ctx context.Context, e *event.Event, purposes []string) (ok bool, reason string, err error) {
	if len(purposes) == 0 {
		return true, "", nil
	}
	typ, v := "user_id", e.UserID
	if v == "" {
		typ, v = "anonymous_id", e.AnonymousID
	}
	id, known, err := s.keys.ProfileFor(ctx, typ, v)
	var fe *FieldError
	if errors.As(err, &fe) {
		known, err = false, nil // blocked or invalid: not resolved
	}
	if err != nil {
		return false, "", err
	}
	best := map[string]decision{}
	if known {
		_, _, best, err = s.decisions(ctx, id)
		if errors.Is(err, statestore.ErrNotFound) {
			best, err = map[string]decision{}, nil
		}
		if err != nil {
			return false, "", err
		}
	} else {
		latest, err := latestOf(ctx, s.db, []string{eventstore.ProfileKey(e.UserID, e.AnonymousID)})
		if err != nil {
			return false, "", err
		}
		for k, d := range latest {
			best[k.purpose] = d
		}
	}
	for _, d := range s.fromEvent(e) {
		k := strings.ToLower(d.purpose)
		if b, ok := best[k]; !ok || d.later(b) {
			best[k] = d
		}
	}
	return s.judge(best, purposes)
}

// Change is a consent change as the API's history lists it.
type Change struct {
	Purpose   string    `json:"purpose"`
	Granted   bool      `json:"granted"`
	At        time.Time `json:"at"` // when it was decided: the event's time, or the API call's
	Source    string    `json:"source"`
	MessageID string    `json:"messageId,omitempty"` // the event that carried it
	Actor     string    `json:"actor,omitempty"`     // the user who set it through the API
	// RecordedAt is when tandem recorded it.
	RecordedAt time.Time `json:"recordedAt"`
}

// MaxKeys bounds the event keys of a profile that its history reads.
const MaxKeys = 5000

// History lists profile id's consent changes across its keys, newest
// first (event time, then messageId, then purpose), limit per page (see
// statestore.Limit) after cursor.
func (s *Store) History(ctx context.Context, id string, limit int, cursor string) ([]Change, string, error) {
	limit = statestore.Limit(limit)
	after, err := statestore.DecodeCursor(cursor, 3)
	if err != nil {
		return nil, "", err
	}
	_, keys, err := s.keys.EventKeys(ctx, id)
	if err != nil {
		return nil, "", notFound(err)
	}
	if len(keys) == 0 {
		return []Change{}, "", nil
	}
	keys = keys[:min(len(keys), MaxKeys)]
	q := `SELECT purpose, granted, event_time, message_id, source, actor, recorded_at FROM privacy_consent_history WHERE ekey IN ` + inList(len(keys))
	args := anys(keys)
	if after != nil {
		at, err := strconv.ParseInt(after[0], 10, 64)
		if err != nil {
			return nil, "", &FieldError{Field: "cursor", Message: "not a cursor this list issued", Err: statestore.ErrBadCursor}
		}
		q += ` AND (event_time < ? OR (event_time = ? AND (message_id < ? OR (message_id = ? AND purpose < ?))))`
		args = append(args, at, at, after[1], after[1], after[2])
	}
	q += ` ORDER BY event_time DESC, message_id DESC, purpose DESC LIMIT ?`
	args = append(args, limit+1)
	rows, err := s.db.Query(ctx, q, args...)
	if err != nil {
		return nil, "", fmt.Errorf("privacy: read consent history: %w", err)
	}
	defer rows.Close()
	out := []Change{}
	var lastAt int64
	for rows.Next() {
		var c Change
		var g, at, rec int64
		if err := rows.Scan(&c.Purpose, &g, &at, &c.MessageID, &c.Source, &c.Actor, &rec); err != nil {
			return nil, "", fmt.Errorf("privacy: read consent history: %w", err)
		}
		c.Granted = g != 0
		c.At, c.RecordedAt = time.Unix(0, at).UTC(), time.Unix(0, rec).UTC()
		if len(out) == limit {
			l := out[len(out)-1]
			return out, statestore.EncodeCursor(strconv.FormatInt(lastAt, 10), l.MessageID, l.Purpose), nil
		}
		lastAt = at
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("privacy: read consent history: %w", err)
	}
	return out, "", nil
}

// Set records decisions made outside events (the API, a support call):
// purposes granted or refused by profile id at time at, from source, by
// actor (a user id). They are kept under the profile's first event key.
// It returns the profile's consent afterwards, and fails with
// [ErrNotFound] for an unknown profile or a *FieldError for bad input.
func (s *Store) Set(ctx context.Context, id string, purposes map[string]bool, source, actor string) (State, error) {
	if len(purposes) == 0 {
		return State{}, &FieldError{Field: "purposes", Message: "name at least one purpose, e.g. {\"Advertising\": false}"}
	}
	seen := map[string]string{}
	for _, name := range slices.Sorted(maps.Keys(purposes)) {
		if msg := checkPurpose(name); msg != "" {
			return State{}, &FieldError{Field: "purposes", Message: msg}
		}
		if other, ok := seen[strings.ToLower(name)]; ok {
			return State{}, &FieldError{Field: "purposes." + name, Message: fmt.Sprintf("the same purpose as %q (names are matched without regard to case)", other)}
		}
		seen[strings.ToLower(name)] = name
	}
	if source == "" {
		source = SourceAPI
	}
	if len(source) > 100 {
		return State{}, &FieldError{Field: "source", Message: "at most 100 bytes"}
	}
	_, keys, err := s.keys.EventKeys(ctx, id)
	if err != nil {
		return State{}, notFound(err)
	}
	if len(keys) == 0 {
		return State{}, ErrNotFound
	}
	at := s.now().UTC().UnixNano()
	msg := statestore.NewID("consent")
	ds := make([]decision, 0, len(purposes))
	for name, g := range purposes {
		ds = append(ds, decision{ekey: keys[0], purpose: name, granted: g, at: at, msg: msg, source: source, actor: actor})
	}
	if err := s.apply(ctx, ds); err != nil {
		return State{}, err
	}
	return s.State(ctx, id)
}
