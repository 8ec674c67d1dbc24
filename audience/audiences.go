package audience

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strconv"
	"time"

	"tandem/event"
	"tandem/identity"
	"tandem/statestore"
)

// The events a membership change emits (track events of the source
// [SourceID], appended to the event log like collected ones).
const (
	EventEntered = "Audience Entered"
	EventExited  = "Audience Exited"
	SourceID     = "tandem-audiences"
)

// Appender makes log entries durable (the event log's group committer).
type Appender interface {
	Append(ctx context.Context, entries []byte) error
}

// Profiles gives what rules read of a profile (the identity store).
type Profiles interface {
	Keys
	ProfileFor(ctx context.Context, typ, value string) (id string, known bool, err error)
	Profile(ctx context.Context, id string) (identity.Profile, error)
}

// Audience is an audience's definition.
type Audience struct {
	ID           string    `json:"id"`
	Name         string    `json:"name"`
	Rule         string    `json:"rule"`
	Destinations []string  `json:"destinations"`
	CreatedAt    time.Time `json:"createdAt"`
	rule         *Rule
}

// Member is a profile in an audience since a time.
type Member struct {
	ProfileID string    `json:"profileId"`
	Since     time.Time `json:"since"`
}

var audienceMigration = statestore.Migration{Package: "audience", Version: 2, SQL: `
CREATE TABLE audience_def (
	id TEXT PRIMARY KEY,
	name TEXT NOT NULL UNIQUE,
	rule TEXT NOT NULL,
	destinations TEXT NOT NULL,
	created_at BIGINT NOT NULL
);
CREATE TABLE audience_member (
	audience_id TEXT NOT NULL,
	profile_id TEXT NOT NULL,
	member BIGINT NOT NULL,
	since BIGINT NOT NULL,
	seq BIGINT NOT NULL,
	PRIMARY KEY (audience_id, profile_id)
)`}

// Audiences keeps audience definitions and memberships.
type Audiences struct {
	db       *statestore.DB
	traits   *Store
	profiles Profiles
	log      Appender
	logger   *slog.Logger
	now      func() time.Time
}

// NewAudiences returns the audiences over db (migrated with
// [Migrations]), reading computed traits from traits and
// profiles from profiles, emitting membership changes to log (nil: not
// emitted).
func NewAudiences(db *statestore.DB, traits *Store, profiles Profiles, log Appender, logger *slog.Logger) *Audiences {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Audiences{db: db, traits: traits, profiles: profiles, log: log, logger: logger, now: time.Now}
}

// WithClock makes the audiences read the time from now (tests).
func (a *Audiences) WithClock(now func() time.Time) *Audiences {
	a.now = now
	return a
}

var destRE = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,100}$`)

// Create defines an audience and evaluates it for every profile with
// computed trait state or traits (see [Audiences.Sweep]).
func (a *Audiences) Create(ctx context.Context, name, rule string, destinations []string) (Audience, error) {
	if !nameRE.MatchString(name) {
		return Audience{}, &FieldError{Field: "name", Message: "must be a letter or _ followed by up to 63 letters, digits or _"}
	}
	r, err := ParseRule(rule)
	if err != nil {
		return Audience{}, err
	}
	if destinations == nil {
		destinations = []string{}
	}
	for i, d := range destinations {
		if !destRE.MatchString(d) {
			return Audience{}, &FieldError{Field: "destinations[" + strconv.Itoa(i) + "]", Message: "not a destination id"}
		}
	}
	au := Audience{ID: statestore.NewID("aud"), Name: name, Rule: rule, Destinations: destinations, CreatedAt: a.now().UTC().Truncate(time.Millisecond), rule: r}
	dj, _ := json.Marshal(destinations)
	_, err = a.db.Exec(ctx, `INSERT INTO audience_def (id, name, rule, destinations, created_at) VALUES (?, ?, ?, ?, ?)`, au.ID, name, rule, string(dj), au.CreatedAt.UnixMilli())
	if errors.Is(err, statestore.ErrConflict) {
		return Audience{}, fmt.Errorf("audience: an audience with that name exists: %w", statestore.ErrConflict)
	}
	if err != nil {
		return Audience{}, err
	}
	return au, a.Sweep(ctx)
}

// List returns every audience, by name.
func (a *Audiences) List(ctx context.Context) ([]Audience, error) {
	rows, err := a.db.Query(ctx, `SELECT id, name, rule, destinations, created_at FROM audience_def ORDER BY name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Audience{}
	for rows.Next() {
		var au Audience
		var dj string
		var at int64
		if err := rows.Scan(&au.ID, &au.Name, &au.Rule, &dj, &at); err != nil {
			return nil, err
		}
		_ = json.Unmarshal([]byte(dj), &au.Destinations)
		au.CreatedAt = time.UnixMilli(at).UTC()
		if au.rule, err = ParseRule(au.Rule); err != nil {
			return nil, fmt.Errorf("audience %s: stored rule: %w", au.ID, err)
		}
		out = append(out, au)
	}
	return out, rows.Err()
}

// Get returns the audience with id.
func (a *Audiences) Get(ctx context.Context, id string) (Audience, error) {
	all, err := a.List(ctx)
	if err != nil {
		return Audience{}, err
	}
	for _, au := range all {
		if au.ID == id {
			return au, nil
		}
	}
	return Audience{}, ErrNotFound
}

// Members lists an audience's members by profile id, a page at a time.
func (a *Audiences) Members(ctx context.Context, id string, limit int, cursor string) ([]Member, string, error) {
	if _, err := a.Get(ctx, id); err != nil {
		return nil, "", err
	}
	after, err := statestore.DecodeCursor(cursor, 1)
	if err != nil {
		return nil, "", err
	}
	from := ""
	if after != nil {
		from = after[0]
	}
	limit = statestore.Limit(limit)
	rows, err := a.db.Query(ctx, `SELECT profile_id, since FROM audience_member WHERE audience_id = ? AND member = 1 AND profile_id > ? ORDER BY profile_id LIMIT ?`, id, from, limit+1)
	if err != nil {
		return nil, "", err
	}
	defer rows.Close()
	out := []Member{}
	for rows.Next() {
		var m Member
		var since int64
		if err := rows.Scan(&m.ProfileID, &since); err != nil {
			return nil, "", err
		}
		m.Since = time.UnixMilli(since).UTC()
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, "", err
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		next = statestore.EncodeCursor(out[limit-1].ProfileID)
	}
	return out, next, nil
}

// Of returns the names of the audiences profile id (current) is in.
func (a *Audiences) Of(ctx context.Context, id string) ([]string, error) {
	rows, err := a.db.Query(ctx, `SELECT d.name FROM audience_member m JOIN audience_def d ON d.id = m.audience_id WHERE m.profile_id = ? AND m.member = 1 ORDER BY d.name`, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, rows.Err()
}

// Record evaluates the audiences for the profiles a batch of events
// touches (a pipeline step, after computed traits).
func (a *Audiences) Record(ctx context.Context, events []event.Event) error {
	auds, err := a.List(ctx)
	if err != nil || len(auds) == 0 {
		return err // no audiences: no lookups
	}
	seen := map[string]bool{}
	var ids []string
	for i := range events {
		e := &events[i]
		if e.SourceID == SourceID {
			continue // our own membership events change nothing
		}
		for _, ident := range [][2]string{{"user_id", e.UserID}, {"anonymous_id", e.AnonymousID}} {
			if ident[1] == "" {
				continue
			}
			id, known, err := a.profiles.ProfileFor(ctx, ident[0], ident[1])
			if err != nil {
				return err
			}
			if known && !seen[id] {
				seen[id] = true
				ids = append(ids, id)
			}
		}
	}
	if len(ids) == 0 {
		return nil
	}
	return a.evaluate(ctx, auds, ids)
}

// Evaluate brings the memberships of profiles ids up to date now (after
// an unmerge, for the profiles involved).
func (a *Audiences) Evaluate(ctx context.Context, ids ...string) error {
	auds, err := a.List(ctx)
	if err != nil || len(auds) == 0 {
		return err
	}
	return a.evaluate(ctx, auds, ids)
}

// Sweep evaluates every audience for its members and every profile with
// computed trait state, so that memberships follow time (windows
// expiring, days passing) without events. The server runs it
// periodically.
func (a *Audiences) Sweep(ctx context.Context) error {
	auds, err := a.List(ctx)
	if err != nil || len(auds) == 0 {
		return err
	}
	seen := map[string]bool{}
	var ids []string
	add := func(id string) {
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	rows, err := a.db.Query(ctx, `SELECT DISTINCT profile_id FROM audience_member WHERE member = 1`)
	if err != nil {
		return err
	}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return err
		}
		add(id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	keys, err := a.traits.stateKeys(ctx)
	if err != nil {
		return err
	}
	for _, k := range keys {
		typ, v, _ := cut(k)
		id, known, err := a.profiles.ProfileFor(ctx, typ, v)
		if err != nil {
			return err
		}
		if known {
			add(id)
		}
	}
	slices.Sort(ids)
	return a.evaluate(ctx, auds, ids)
}

func cut(key string) (string, string, bool) {
	for i := 0; i < len(key); i++ {
		if key[i] == ':' {
			return key[:i], key[i+1:], true
		}
	}
	return key, "", false
}

// evaluate brings the memberships of profiles ids up to date, emitting a
// change event for each change. A profile merged into another leaves its
// audiences (the profile it joined is evaluated under its own id).
func (a *Audiences) evaluate(ctx context.Context, auds []Audience, ids []string) error {
	now := a.now().UTC()
	var entries []byte
	type change struct {
		aud, profile string
		member       bool
		seq          int64
	}
	var changes []change
	for _, id := range ids {
		cur, keys, err := a.traits.keys.EventKeys(ctx, id)
		if errors.Is(err, statestore.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		var env Env
		if cur == id {
			vals, err := a.traits.ValuesOfKeys(ctx, keys)
			if err != nil {
				return err
			}
			p, err := a.profiles.Profile(ctx, cur)
			if err != nil {
				return err
			}
			reached, stage, err := a.traits.StagesOfKeys(ctx, keys)
			if err != nil {
				return err
			}
			env = Env{Traits: plainRaw(p.Traits), Computed: plain(vals), Profile: cur, Stage: stage, Stages: reached}
		}
		for _, au := range auds {
			want := cur == id && au.rule.Match(env)
			var member, seq int64
			err := a.db.QueryRow(ctx, `SELECT member, seq FROM audience_member WHERE audience_id = ? AND profile_id = ?`, au.ID, id).Scan(&member, &seq)
			if err != nil && !errors.Is(err, statestore.ErrNotFound) {
				return err
			}
			if want == (member == 1) {
				continue
			}
			changes = append(changes, change{au.ID, id, want, seq + 1})
			name := EventExited
			if want {
				name = EventEntered
			}
			entries = append(entries, membershipEvent(au, id, keys, name, seq+1, now)...)
		}
	}
	if len(changes) == 0 {
		return nil
	}
	// The events first, under messageIds fixed by the change's sequence:
	// if the state write below fails, the retry emits the same ids, which
	// the event store keeps once.
	if a.log != nil {
		if err := a.log.Append(ctx, entries); err != nil {
			return fmt.Errorf("audience: emit membership changes: %w", err)
		}
	}
	return a.db.Tx(ctx, func(tx *statestore.Tx) error {
		for _, c := range changes {
			m := int64(0)
			if c.member {
				m = 1
			}
			if _, err := tx.Exec(ctx, `INSERT INTO audience_member (audience_id, profile_id, member, since, seq) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (audience_id, profile_id) DO UPDATE SET member = excluded.member, since = excluded.since, seq = excluded.seq`,
				c.aud, c.profile, m, now.UnixMilli(), c.seq); err != nil {
				return err
			}
		}
		return nil
	})
}

// membershipEvent is the log entry of one change: a track event of the
// profile's first key (its user id when it has one).
func membershipEvent(au Audience, profile string, keys []string, name string, seq int64, now time.Time) []byte {
	e := event.Event{SourceID: SourceID, MessageID: fmt.Sprintf("%s-%s-%d", au.ID, profile, seq), Type: "track", Name: name,
		Timestamp: now, ReceivedAt: now}
	if len(keys) > 0 {
		typ, v, _ := cut(keys[0])
		if typ == "user_id" {
			e.UserID = v
		} else {
			e.AnonymousID = v
		}
	}
	raw := map[string]any{"type": "track", "event": name, "messageId": e.MessageID, "timestamp": now.Format(time.RFC3339Nano),
		"properties": map[string]any{"audienceId": au.ID, "audience": au.Name, "profileId": profile, "destinations": au.Destinations}}
	if e.UserID != "" {
		raw["userId"] = e.UserID
	} else if e.AnonymousID != "" {
		raw["anonymousId"] = e.AnonymousID
	}
	e.Raw, _ = json.Marshal(raw)
	return event.AppendEntries(nil, SourceID, []event.Event{e}, nil)
}

// RunSweeps runs [Audiences.Sweep] every interval until ctx ends, so that
// memberships follow time. Several pipeline nodes may sweep at once: a
// change is emitted under a messageId fixed by its sequence, and the event
// store keeps it once.
func (a *Audiences) RunSweeps(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := a.Sweep(ctx); err != nil && ctx.Err() == nil {
				a.logger.Warn("audience sweep failed", "err", err.Error())
			}
		}
	}
}
