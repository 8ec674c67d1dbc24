package identity

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"tandem/statestore"
)

// ErrNotFound matches (with errors.Is) both this and
// [statestore.ErrNotFound]: no such profile or identifier.
var ErrNotFound = fmt.Errorf("identity: profile not found: %w", statestore.ErrNotFound)

// FieldError names the request field at fault.
type FieldError = statestore.FieldError

// Identifier is one identifier of a profile.
type Identifier struct {
	Type  string `json:"type"`
	Value string `json:"value"`
}

// Profile is a unified customer profile.
type Profile struct {
	ID          string       `json:"id"`
	Identifiers []Identifier `json:"identifiers"` // by type priority, then value
	// Traits are the latest value of each trait set by identify (traits
	// and context.traits), any event's context.traits, or group (as
	// "group"), last write winning by event time, ties by messageId.
	Traits    map[string]json.RawMessage `json:"traits"`
	FirstSeen time.Time                  `json:"firstSeen"`
	LastSeen  time.Time                  `json:"lastSeen"`
	// Counters are computed per profile; later features add their own.
	Counters map[string]int64 `json:"counters"`
	// RedirectedFrom is the id asked for when it belonged to a profile
	// since merged into this one.
	RedirectedFrom string `json:"redirectedFrom,omitempty"`
}

// Explanation answers "why are these one person?".
type Explanation struct {
	ID          string       `json:"id"`
	Summary     string       `json:"summary"`
	Identifiers []Identifier `json:"identifiers"`
	Steps       []Step       `json:"steps"`     // in the order the rules applied them
	Decisions   []Decision   `json:"decisions"` // manual decisions about its identifiers
}

// Lookup returns the profile that holds the identifier typ:value (value as
// sent; it is normalised as events' values are).
func (s *Store) Lookup(ctx context.Context, typ, value string) (Profile, error) {
	if _, ok := s.c().rank[typ]; !ok {
		return Profile{}, &FieldError{Field: "identifier", Message: fmt.Sprintf("unknown identifier type %q; the configured types are %s", typ, s.typeNames())}
	}
	v, ok := s.c().normalize(typ, value)
	if !ok || s.c().isBlocked(value, v) {
		return Profile{}, ErrNotFound
	}
	pid, err := s.profileOf(ctx, Ident(typ, v))
	if err != nil {
		return Profile{}, err
	}
	return s.Profile(ctx, pid)
}

func (s *Store) typeNames() string {
	var names []string
	for _, t := range s.c().rules.Types {
		names = append(names, t.Name)
	}
	return strings.Join(names, ", ")
}

func isNotFound(err error) bool { return errors.Is(err, statestore.ErrNotFound) }

// profileOf returns the profile that holds identifier ident.
func (s *Store) profileOf(ctx context.Context, ident string) (string, error) {
	comp, err := s.componentOfIdent(ctx, s.db, ident)
	if err != nil {
		return "", err
	}
	g, err := s.graph(ctx, s.db, comp, false)
	if errors.Is(err, errRetry) {
		return "", ErrNotFound
	}
	if err != nil {
		return "", err
	}
	pid := g.profileOf(ident)
	if pid == "" {
		return "", ErrNotFound
	}
	return pid, nil
}

func (s *Store) componentOfIdent(ctx context.Context, q rowQuerier, ident string) (string, error) {
	var comp string
	if err := q.QueryRow(ctx, `SELECT component FROM identity_idents WHERE ident = ?`, ident).Scan(&comp); err != nil {
		if isNotFound(err) {
			return "", ErrNotFound
		}
		return "", fmt.Errorf("identity: read identifier: %w", err)
	}
	return comp, nil
}

type rowQuerier interface {
	QueryRow(ctx context.Context, query string, args ...any) *statestore.Row
}

// locate finds profile id: the component holding the identifier that
// started it, and the id of the profile that identifier is in now (id
// itself, or the profile id was merged into).
func (s *Store) locate(ctx context.Context, q interface {
	querier
	rowQuerier
}, id string, lock bool) (cur, comp string, g *graph, err error) {
	var anchor string
	if err := q.QueryRow(ctx, `SELECT anchor FROM identity_profile_ids WHERE profile_id = ?`, id).Scan(&anchor); err != nil {
		if isNotFound(err) {
			return "", "", nil, ErrNotFound
		}
		return "", "", nil, fmt.Errorf("identity: read profile: %w", err)
	}
	if comp, err = s.componentOfIdent(ctx, q, anchor); err != nil {
		return "", "", nil, err
	}
	if g, err = s.graph(ctx, q, comp, lock); err != nil {
		if errors.Is(err, errRetry) && !lock {
			return "", "", nil, ErrNotFound // merged away this instant
		}
		return "", "", nil, err
	}
	if cur = g.profileOf(anchor); cur == "" {
		return "", "", nil, ErrNotFound
	}
	return cur, comp, g, nil
}

// Current returns the id under which profile id is now known: id itself,
// or the profile it was merged into. It fails with [ErrNotFound].
func (s *Store) Current(ctx context.Context, id string) (string, error) {
	cur, _, _, err := s.locate(ctx, s.db, id, false)
	return cur, err
}

// Profile returns profile id, following a merge if id was merged away.
func (s *Store) Profile(ctx context.Context, id string) (Profile, error) {
	cur, _, g, err := s.locate(ctx, s.db, id, false)
	if err != nil {
		return Profile{}, err
	}
	p := Profile{ID: cur, Traits: map[string]json.RawMessage{}, Counters: map[string]int64{}}
	if cur != id {
		p.RedirectedFrom = id
	}
	ids := g.members(cur)
	if len(ids) == 0 {
		return Profile{}, ErrNotFound
	}
	var first, last int64
	got := false
	for start := 0; start < len(ids); start += chunk {
		part := ids[start:min(start+chunk, len(ids))]
		rows, err := s.db.Query(ctx, `SELECT first_seen, last_seen FROM identity_idents WHERE ident IN `+inList(len(part)), anys(part)...)
		if err != nil {
			return Profile{}, fmt.Errorf("identity: read profile: %w", err)
		}
		for rows.Next() {
			var f, l int64
			if err := rows.Scan(&f, &l); err != nil {
				rows.Close()
				return Profile{}, fmt.Errorf("identity: read profile: %w", err)
			}
			if !got || f < first {
				first = f
			}
			if !got || l > last {
				last = l
			}
			got = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return Profile{}, fmt.Errorf("identity: read profile: %w", err)
		}
	}
	ids = s.c().sortIdents(ids)
	p.Identifiers = identifiers(ids)
	p.FirstSeen, p.LastSeen = time.Unix(0, first).UTC(), time.Unix(0, last).UTC()
	p.Counters["identifiers"] = int64(len(ids))
	var keys []string
	for _, id := range ids {
		typ, _ := splitIdent(id)
		p.Counters[typ+"s"]++
		if typ == UserID || typ == AnonymousID {
			keys = append(keys, id)
		}
	}
	type lww struct {
		at  int64
		msg string
	}
	best := map[string]lww{}
	for start := 0; start < len(keys); start += chunk {
		part := keys[start:min(start+chunk, len(keys))]
		rows, err := s.db.Query(ctx, `SELECT name, value, event_time, message_id FROM identity_traits WHERE ekey IN `+inList(len(part)), anys(part)...)
		if err != nil {
			return Profile{}, fmt.Errorf("identity: read traits: %w", err)
		}
		for rows.Next() {
			var name, value, msg string
			var at int64
			if err := rows.Scan(&name, &value, &at, &msg); err != nil {
				rows.Close()
				return Profile{}, fmt.Errorf("identity: read traits: %w", err)
			}
			if b, ok := best[name]; ok && (at < b.at || (at == b.at && msg <= b.msg)) {
				continue
			}
			best[name] = lww{at, msg}
			p.Traits[name] = json.RawMessage(value)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return Profile{}, fmt.Errorf("identity: read traits: %w", err)
		}
	}
	return p, nil
}

func identifiers(ids []string) []Identifier {
	out := make([]Identifier, 0, len(ids))
	for _, id := range ids {
		t, v := splitIdent(id)
		out = append(out, Identifier{Type: t, Value: v})
	}
	return out
}

// Explain returns the chain of events and rules that made profile id.
func (s *Store) Explain(ctx context.Context, id string) (Explanation, error) {
	cur, _, g, err := s.locate(ctx, s.db, id, false)
	if err != nil {
		return Explanation{}, err
	}
	decs, err := s.decisions(ctx, s.db, g.idents)
	if err != nil {
		return Explanation{}, err
	}
	res := s.c().resolve(g.links, decs, s.pid)
	for _, p := range res.profiles {
		if p.id != cur {
			continue
		}
		ids := s.c().sortIdents(slices.Clone(p.idents))
		var mine []Decision
		for _, d := range decs {
			if slices.Contains(p.idents, d.A) || slices.Contains(p.idents, d.B) {
				mine = append(mine, d)
			}
		}
		return Explanation{ID: cur, Summary: summary(p), Identifiers: identifiers(ids), Steps: nonNil(p.steps), Decisions: nonNil(mine)}, nil
	}
	// The stored assignment and a fresh resolution disagree only while a
	// concurrent change commits.
	return Explanation{}, ErrNotFound
}

func summary(p *resolved) string {
	var joined, merged, dropped int
	var events []string
	for _, s := range p.steps {
		switch s.Kind {
		case StepJoined:
			joined++
		case StepMerged:
			merged++
		case StepDropped:
			dropped++
		}
		if !slices.Contains(events, s.MessageID) {
			events = append(events, s.MessageID)
		}
	}
	s := fmt.Sprintf("%d identifiers are one person: the profile started with %s; %d identifiers joined it through events that carried them together with one already in it, and %d other profiles were merged into it through shared identifiers (%d events in the chain).",
		len(p.idents), p.anchor, joined, merged, len(events))
	if dropped > 0 {
		s += fmt.Sprintf(" %d identifiers were kept out by the rules.", dropped)
	}
	return s
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// Unmerge is a request to split a profile.
type Unmerge struct {
	// MergeID names a merge step of the profile's explanation: the two
	// sides it joined are kept apart from now on.
	MergeID string
	// Identifier (type and value) is removed from the profile and kept in
	// a profile of its own from now on. Give MergeID or Identifier.
	Identifier *Identifier
	Reason     string
	By         string // the user deciding
}

// UnmergeResult is what an unmerge decided and the profiles after it.
type UnmergeResult struct {
	Decision Decision  `json:"decision"`
	Profiles []Profile `json:"profiles"`
}

// Unmerge records a manual decision that splits profile id, resolves its
// component again and relinks the events of the identifiers that moved.
// Taking the same decision twice changes nothing the second time.
func (s *Store) Unmerge(ctx context.Context, id string, u Unmerge) (UnmergeResult, error) {
	if (u.MergeID == "") == (u.Identifier == nil) {
		return UnmergeResult{}, &FieldError{Field: "mergeId", Message: "give either mergeId (from the explanation) or identifier"}
	}
	var d Decision
	var sides []string
	err := s.tx(ctx, func(tx *statestore.Tx) error {
		cur, comp, g, err := s.locate(ctx, tx, id, true)
		if err != nil {
			return err
		}
		if cur != id {
			return ErrNotFound // merged into another profile
		}
		if c2, err := s.componentOfIdent(ctx, tx, g.idents[0]); err != nil || c2 != comp {
			if err != nil {
				return err
			}
			return errRetry
		}
		decs, err := s.decisions(ctx, tx, g.idents)
		if err != nil {
			return err
		}
		res := s.c().resolve(g.links, decs, s.pid)
		var p *resolved
		for _, q := range res.profiles {
			if q.id == id {
				p = q
			}
		}
		if p == nil {
			return ErrNotFound
		}
		if u.MergeID != "" {
			for _, st := range p.steps {
				if st.Kind == StepMerged && st.MergeID == u.MergeID {
					d = Decision{Kind: KindApart, A: st.keepAnchor, B: st.joinAnchor}
					sides = []string{st.keepAnchor, st.joinAnchor}
				}
			}
			if d.Kind == "" {
				return &FieldError{Field: "mergeId", Message: "no merge with this id in the profile's explanation"}
			}
		} else {
			typ := u.Identifier.Type
			if _, ok := s.c().rank[typ]; !ok {
				return &FieldError{Field: "identifier.type", Message: fmt.Sprintf("unknown identifier type %q", typ)}
			}
			v, _ := s.c().normalize(typ, u.Identifier.Value)
			ident := Ident(typ, v)
			if !slices.Contains(p.idents, ident) {
				return &FieldError{Field: "identifier", Message: "the profile has no such identifier"}
			}
			if len(p.idents) == 1 {
				return &FieldError{Field: "identifier", Message: "it is the profile's only identifier: nothing to separate"}
			}
			d = Decision{Kind: KindDetach, A: ident}
			sides = []string{ident}
			for _, other := range p.idents {
				if other != ident {
					sides = append(sides, other)
					break
				}
			}
		}
		d.ID = decisionID(d.Kind, d.A, d.B)
		d.By, d.Reason, d.CreatedAt = u.By, u.Reason, time.Now().UTC()
		if _, err := tx.Exec(ctx, `INSERT INTO identity_decisions (id, kind, a, b, created_by, reason, created_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
			d.ID, d.Kind, d.A, d.B, d.By, d.Reason, statestore.TimeToDB(d.CreatedAt)); err != nil {
			return fmt.Errorf("identity: record decision: %w", err)
		}
		return s.reresolve(ctx, tx, comp, g)
	})
	if err != nil {
		return UnmergeResult{}, err
	}
	out := UnmergeResult{Decision: d}
	for _, ident := range sides {
		pid, err := s.profileOf(ctx, ident)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return UnmergeResult{}, err
		}
		if slices.ContainsFunc(out.Profiles, func(p Profile) bool { return p.ID == pid }) {
			continue
		}
		p, err := s.Profile(ctx, pid)
		if err != nil {
			return UnmergeResult{}, err
		}
		out.Profiles = append(out.Profiles, p)
	}
	return out, nil
}

// Partition returns every profile's identifiers, sorted: for tests and
// diagnostics on small graphs.
func (s *Store) Partition(ctx context.Context) ([][]string, error) {
	of, err := s.assignment(ctx)
	if err != nil {
		return nil, err
	}
	groups := map[string][]string{}
	for id, pid := range of {
		if pid != "" {
			groups[pid] = append(groups[pid], id)
		}
	}
	out := make([][]string, 0, len(groups))
	for _, g := range groups {
		slices.Sort(g)
		out = append(out, g)
	}
	slices.SortFunc(out, func(a, b []string) int { return slices.Compare(a, b) })
	return out, nil
}

// assignment returns every identifier's profile ("" for none).
func (s *Store) assignment(ctx context.Context) (map[string]string, error) {
	rows, err := s.db.Query(ctx, `SELECT component, data FROM identity_components`)
	if err != nil {
		return nil, fmt.Errorf("identity: partition: %w", err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var c string
		var data []byte
		if err := rows.Scan(&c, &data); err != nil {
			return nil, fmt.Errorf("identity: partition: %w", err)
		}
		g, err := decodeGraph(data)
		if err != nil {
			return nil, fmt.Errorf("identity: component %s: %w", c, err)
		}
		for _, id := range g.idents {
			out[id] = g.profileOf(id)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("identity: partition: %w", err)
	}
	return out, nil
}
