package identity

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"tandem/event"
	"tandem/eventstore"
	"tandem/statestore"
)

// Linker records which profile the events of a profile key belong to: the
// event store ([eventstore.Store.LinkProfiles]).
type Linker interface {
	LinkProfiles(ctx context.Context, links []eventstore.ProfileLink) error
}

// Options configure a [Store].
type Options struct {
	Rules Rules
	// Links is told, inside the resolving transaction, the new profile of
	// every user_id and anonymous_id whose profile changed. Nil: nobody.
	Links Linker
	// CacheSize bounds the identifier sets, and separately the
	// identifiers' seen times, remembered in memory (to skip work for
	// what is stored already); default 200,000 of each (about 40 MB).
	CacheSize int
}

// Store is the identity graph in the state store.
type Store struct {
	db     *statestore.DB
	c      *compiled
	links  Linker
	secret []byte
	cache  *setCache
	seen   *seenCache
	pg     bool
}

// NewStore returns a Store over db, whose [Migrations] must be applied.
func NewStore(ctx context.Context, db *statestore.DB, opts Options) (*Store, error) {
	c, err := compile(opts.Rules)
	if err != nil {
		return nil, err
	}
	if opts.CacheSize <= 0 {
		opts.CacheSize = 200_000
	}
	s := &Store{db: db, c: c, links: opts.Links, cache: newSetCache(opts.CacheSize), seen: newSeenCache(opts.CacheSize), pg: db.Dialect().Name() == statestore.Postgres}
	// Profile ids are keyed hashes of a first identifier: stable and the
	// same on every node, yet not a hash anyone could recompute from an
	// e-mail address.
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	if _, err := db.Exec(ctx, `INSERT INTO identity_settings (name, value) VALUES ('profile_id_key', ?) ON CONFLICT (name) DO NOTHING`, hex.EncodeToString(key)); err != nil {
		return nil, fmt.Errorf("identity: profile id key: %w", err)
	}
	var hx string
	if err := db.QueryRow(ctx, `SELECT value FROM identity_settings WHERE name = 'profile_id_key'`).Scan(&hx); err != nil {
		return nil, fmt.Errorf("identity: profile id key: %w", err)
	}
	if s.secret, err = hex.DecodeString(hx); err != nil {
		return nil, fmt.Errorf("identity: profile id key: %w", err)
	}
	return s, nil
}

// Rules returns the rules in force (validated, in priority order).
func (s *Store) Rules() Rules { return s.c.rules }

// Migrations returns the package's schema migrations.
func Migrations() []statestore.Migration {
	return []statestore.Migration{{Package: "identity", Version: 1, SQL: `
CREATE TABLE identity_nodes (
	ident TEXT PRIMARY KEY,
	component TEXT NOT NULL,
	profile_id TEXT NOT NULL,
	first_seen BIGINT NOT NULL,
	last_seen BIGINT NOT NULL
);
CREATE INDEX identity_nodes_component ON identity_nodes (component);
CREATE INDEX identity_nodes_profile ON identity_nodes (profile_id);
CREATE TABLE identity_links (
	set_hash TEXT PRIMARY KEY,
	component TEXT NOT NULL,
	idents TEXT NOT NULL,
	event_time BIGINT NOT NULL,
	source_id TEXT NOT NULL,
	message_id TEXT NOT NULL,
	event_type TEXT NOT NULL
);
CREATE INDEX identity_links_component ON identity_links (component);
CREATE TABLE identity_components (
	component TEXT PRIMARY KEY
);
CREATE TABLE identity_decisions (
	id TEXT PRIMARY KEY,
	kind TEXT NOT NULL,
	a TEXT NOT NULL,
	b TEXT NOT NULL,
	created_by TEXT NOT NULL,
	reason TEXT NOT NULL,
	created_at BIGINT NOT NULL
);
CREATE INDEX identity_decisions_a ON identity_decisions (a);
CREATE INDEX identity_decisions_b ON identity_decisions (b);
CREATE TABLE identity_traits (
	ekey TEXT NOT NULL,
	name TEXT NOT NULL,
	value TEXT NOT NULL,
	event_time BIGINT NOT NULL,
	message_id TEXT NOT NULL,
	PRIMARY KEY (ekey, name)
);
CREATE TABLE identity_profile_ids (
	profile_id TEXT PRIMARY KEY,
	anchor TEXT NOT NULL
);
CREATE TABLE identity_settings (
	name TEXT PRIMARY KEY,
	value TEXT NOT NULL
);
`}}
}

// pid is the profile id of a profile started by anchor.
func (s *Store) pid(anchor string) string {
	m := hmac.New(sha256.New, s.secret)
	m.Write([]byte(anchor))
	return "prf_" + hex.EncodeToString(m.Sum(nil)[:12])
}

func setHash(ids []string) string {
	h := sha256.New()
	for _, id := range ids {
		h.Write([]byte(id))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// chunk is how many rows or values one statement carries.
const chunk = 400

func placeholders(n, per int) string {
	one := "(" + strings.Repeat("?, ", per-1) + "?)"
	return strings.Repeat(one+", ", n-1) + one
}

func inList(n int) string { return "(" + strings.Repeat("?, ", n-1) + "?)" }

func anys(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// errRetry asks for the transaction to run again: another node changed a
// component between reading and locking it.
var errRetry = errors.New("identity: component changed meanwhile")

// tx runs fn in a transaction, again when it lost a race with another
// node (PostgreSQL).
func (s *Store) tx(ctx context.Context, fn func(tx *statestore.Tx) error) error {
	var err error
	for attempt := 0; attempt < 8; attempt++ {
		err = s.db.Tx(ctx, fn)
		if err == nil || !retryable(err) || ctx.Err() != nil {
			return err
		}
		time.Sleep(time.Duration(attempt+1) * 5 * time.Millisecond)
	}
	return err
}

func retryable(err error) bool {
	if errors.Is(err, errRetry) || errors.Is(err, statestore.ErrConflict) {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "deadlock detected") || strings.Contains(msg, "could not serialize")
}

// Resolve takes one pipeline batch of valid events into the identity
// graph: it records each distinct set of identifiers seen together (with
// the earliest event carrying it), merges the components they connect,
// resolves every changed component again, stores traits, and tells the
// Linker the new profile of every event key whose profile changed, all in
// one transaction. Resolving the same events again changes nothing.
func (s *Store) Resolve(ctx context.Context, events []event.Event) error {
	sets := map[string]link{}
	seen := map[string][2]int64{}
	type traitKey struct{ ekey, name string }
	type traitVal struct {
		value json.RawMessage
		at    int64
		msg   string
	}
	traits := map[traitKey]traitVal{}
	for i := range events {
		o := s.c.observe(&events[i])
		at := o.at.UnixNano()
		for k, v := range o.traits {
			tk := traitKey{o.key, k}
			if old, ok := traits[tk]; !ok || at > old.at || (at == old.at && o.msg > old.msg) {
				traits[tk] = traitVal{v, at, o.msg}
			}
		}
		if len(o.ids) == 0 {
			continue
		}
		for _, id := range o.ids {
			if r, ok := seen[id]; ok {
				seen[id] = [2]int64{min(r[0], at), max(r[1], at)}
			} else {
				seen[id] = [2]int64{at, at}
			}
		}
		l := link{ids: o.ids, at: o.at, source: o.source, msg: o.msg, typ: events[i].Type}
		h := setHash(o.ids)
		if old, ok := sets[h]; !ok || l.less(old) < 0 {
			sets[h] = l
		}
	}
	var pending []string
	for h, l := range sets {
		if !s.cache.covers(h, l) {
			pending = append(pending, h)
		}
	}
	slices.Sort(pending)
	err := s.tx(ctx, func(tx *statestore.Tx) error {
		seen := maps.Clone(seen) // integrate takes from it; a retry starts afresh
		var todo []link
		if len(pending) > 0 {
			stored, err := s.storedLinks(ctx, tx, pending)
			if err != nil {
				return err
			}
			for _, h := range pending {
				l := sets[h]
				if old, ok := stored[h]; ok && old.less(l) <= 0 {
					continue
				}
				todo = append(todo, l)
			}
		}
		var plinks []eventstore.ProfileLink
		if len(todo) > 0 {
			var err error
			if plinks, err = s.integrate(ctx, tx, todo, seen); err != nil {
				return err
			}
		}
		for id, r := range seen {
			if s.seen.covers(id, r) {
				delete(seen, id)
			}
		}
		if err := s.touch(ctx, tx, seen); err != nil {
			return err
		}
		tks := make([]traitKey, 0, len(traits))
		for k := range traits {
			tks = append(tks, k)
		}
		slices.SortFunc(tks, func(a, b traitKey) int {
			if c := strings.Compare(a.ekey, b.ekey); c != 0 {
				return c
			}
			return strings.Compare(a.name, b.name)
		})
		for start := 0; start < len(tks); start += chunk {
			part := tks[start:min(start+chunk, len(tks))]
			args := make([]any, 0, 5*len(part))
			for _, k := range part {
				v := traits[k]
				args = append(args, k.ekey, k.name, string(v.value), v.at, v.msg)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO identity_traits (ekey, name, value, event_time, message_id) VALUES `+placeholders(len(part), 5)+`
				ON CONFLICT (ekey, name) DO UPDATE SET value = excluded.value, event_time = excluded.event_time, message_id = excluded.message_id
				WHERE excluded.event_time > identity_traits.event_time
				   OR (excluded.event_time = identity_traits.event_time AND excluded.message_id > identity_traits.message_id)`, args...); err != nil {
				return fmt.Errorf("identity: store traits: %w", err)
			}
		}
		return s.link(ctx, plinks)
	})
	if err != nil {
		return err
	}
	for h, l := range sets {
		s.cache.put(h, l)
	}
	for id, r := range seen {
		s.seen.put(id, r)
	}
	return nil
}

func (s *Store) link(ctx context.Context, plinks []eventstore.ProfileLink) error {
	if s.links == nil || len(plinks) == 0 {
		return nil
	}
	if err := s.links.LinkProfiles(ctx, plinks); err != nil {
		return fmt.Errorf("identity: link event keys: %w", err)
	}
	return nil
}

// storedLinks returns the stored earliest event of each of the sets.
func (s *Store) storedLinks(ctx context.Context, tx *statestore.Tx, hashes []string) (map[string]link, error) {
	out := map[string]link{}
	for start := 0; start < len(hashes); start += chunk {
		part := hashes[start:min(start+chunk, len(hashes))]
		rows, err := tx.Query(ctx, `SELECT set_hash, event_time, source_id, message_id FROM identity_links WHERE set_hash IN `+inList(len(part)), anys(part)...)
		if err != nil {
			return nil, fmt.Errorf("identity: read links: %w", err)
		}
		for rows.Next() {
			var h string
			var l link
			var at int64
			if err := rows.Scan(&h, &at, &l.source, &l.msg); err != nil {
				rows.Close()
				return nil, fmt.Errorf("identity: read links: %w", err)
			}
			l.at = time.Unix(0, at).UTC()
			out[h] = l
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("identity: read links: %w", err)
		}
	}
	return out, nil
}

// touch widens the first/last-seen times of identifiers (all exist).
func (s *Store) touch(ctx context.Context, tx *statestore.Tx, seen map[string][2]int64) error {
	ids := make([]string, 0, len(seen))
	for id := range seen {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for start := 0; start < len(ids); start += chunk {
		part := ids[start:min(start+chunk, len(ids))]
		args := make([]any, 0, 5*len(part))
		for _, id := range part {
			r := seen[id]
			args = append(args, id, "", "", r[0], r[1])
		}
		// Every identifier here was stored by this batch or an earlier
		// one, so the insert never happens: this is a multi-row update.
		if _, err := tx.Exec(ctx, `INSERT INTO identity_nodes (ident, component, profile_id, first_seen, last_seen) VALUES `+placeholders(len(part), 5)+`
			ON CONFLICT (ident) DO UPDATE SET
				first_seen = CASE WHEN excluded.first_seen < identity_nodes.first_seen THEN excluded.first_seen ELSE identity_nodes.first_seen END,
				last_seen = CASE WHEN excluded.last_seen > identity_nodes.last_seen THEN excluded.last_seen ELSE identity_nodes.last_seen END`, args...); err != nil {
			return fmt.Errorf("identity: update seen times: %w", err)
		}
	}
	return nil
}

type node struct {
	component string
	profile   string
}

// loadNodes reads the nodes of ids that exist.
func (s *Store) loadNodes(ctx context.Context, tx *statestore.Tx, ids []string) (map[string]node, error) {
	out := make(map[string]node, len(ids))
	for start := 0; start < len(ids); start += chunk {
		part := ids[start:min(start+chunk, len(ids))]
		rows, err := tx.Query(ctx, `SELECT ident, component, profile_id FROM identity_nodes WHERE ident IN `+inList(len(part)), anys(part)...)
		if err != nil {
			return nil, fmt.Errorf("identity: read nodes: %w", err)
		}
		for rows.Next() {
			var id string
			var n node
			if err := rows.Scan(&id, &n.component, &n.profile); err != nil {
				rows.Close()
				return nil, fmt.Errorf("identity: read nodes: %w", err)
			}
			out[id] = n
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("identity: read nodes: %w", err)
		}
	}
	return out, nil
}

// lockComponents takes the row locks of components (PostgreSQL: another
// node resolving one of them waits). SQLite has a single writer already.
func (s *Store) lockComponents(ctx context.Context, tx *statestore.Tx, comps []string) error {
	if !s.pg || len(comps) == 0 {
		return nil
	}
	comps = slices.Clone(comps)
	slices.Sort(comps)
	for start := 0; start < len(comps); start += chunk {
		part := comps[start:min(start+chunk, len(comps))]
		rows, err := tx.Query(ctx, `SELECT component FROM identity_components WHERE component IN `+inList(len(part))+` ORDER BY component FOR UPDATE`, anys(part)...)
		if err != nil {
			return fmt.Errorf("identity: lock components: %w", err)
		}
		n := 0
		for rows.Next() {
			n++
		}
		rows.Close()
		if n != len(part) {
			return errRetry // one was merged away meanwhile
		}
	}
	return nil
}

// integrate adds new links (sets not stored, or stored with a later
// event): merges the components they connect, stores them, and resolves
// each resulting component again. It returns the event-key links that
// changed.
func (s *Store) integrate(ctx context.Context, tx *statestore.Tx, todo []link, seen map[string][2]int64) ([]eventstore.ProfileLink, error) {
	var ids []string
	for _, l := range todo {
		ids = append(ids, l.ids...)
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	nodes, err := s.loadNodes(ctx, tx, ids)
	if err != nil {
		return nil, err
	}
	if s.pg {
		var comps []string
		for _, n := range nodes {
			comps = append(comps, n.component)
		}
		slices.Sort(comps)
		if err := s.lockComponents(ctx, tx, slices.Compact(comps)); err != nil {
			return nil, err
		}
		again, err := s.loadNodes(ctx, tx, ids)
		if err != nil {
			return nil, err
		}
		if len(again) != len(nodes) {
			return nil, errRetry
		}
		for id, n := range again {
			if nodes[id].component != n.component {
				return nil, errRetry
			}
		}
	}
	// Union the components (and new identifiers) each link connects.
	uf := newUnionFind()
	keyOf := func(id string) string {
		if n, ok := nodes[id]; ok {
			return "c\x00" + n.component
		}
		return "n\x00" + id
	}
	for _, l := range todo {
		first := keyOf(l.ids[0])
		uf.add(first)
		for _, id := range l.ids[1:] {
			uf.union(first, keyOf(id))
		}
	}
	groups := map[string][]string{}
	for _, k := range uf.keys() {
		r := uf.find(k)
		groups[r] = append(groups[r], k)
	}
	roots := make([]string, 0, len(groups))
	for r := range groups {
		roots = append(roots, r)
	}
	slices.Sort(roots)
	todoOf := map[string][]link{}
	for _, l := range todo {
		r := uf.find(keyOf(l.ids[0]))
		todoOf[r] = append(todoOf[r], l)
	}
	// Everything stored about the components involved, in bulk.
	var existing []string
	for _, r := range roots {
		for _, k := range groups[r] {
			if kind, v, _ := strings.Cut(k, "\x00"); kind == "c" {
				existing = append(existing, v)
			}
		}
	}
	linksOf, nodesOf, err := s.loadComponents(ctx, tx, existing)
	if err != nil {
		return nil, err
	}
	var allIDs []string
	for _, ns := range nodesOf {
		for id := range ns {
			allIDs = append(allIDs, id)
		}
	}
	for _, k := range uf.keys() {
		if kind, v, _ := strings.Cut(k, "\x00"); kind == "n" {
			allIDs = append(allIDs, v)
		}
	}
	slices.Sort(allIDs)
	decs, err := s.decisions(ctx, tx, allIDs)
	if err != nil {
		return nil, err
	}

	type newNode struct{ id, comp, profile string }
	var newComps []string
	var fresh []newNode
	var changed [][2]string // ident, profile
	var profiles [][2]string
	var out []eventstore.ProfileLink
	compOf := map[string]string{} // union-find root → component
	for _, r := range roots {
		var comps, freshIDs []string
		for _, k := range groups[r] {
			kind, v, _ := strings.Cut(k, "\x00")
			if kind == "c" {
				comps = append(comps, v)
			} else {
				freshIDs = append(freshIDs, v)
			}
		}
		slices.Sort(comps)
		slices.Sort(freshIDs)
		var target string
		if len(comps) == 0 {
			target = statestore.NewID("cmp")
			newComps = append(newComps, target)
		} else {
			// The largest component absorbs the others: a merge
			// rewrites the rows of the smaller ones only.
			size := func(c string) int { return len(nodesOf[c]) + len(linksOf[c]) }
			target = comps[0]
			for _, c := range comps[1:] {
				if size(c) > size(target) {
					target = c
				}
			}
			if len(comps) > 1 {
				moved := slices.DeleteFunc(slices.Clone(comps), func(c string) bool { return c == target })
				if err := s.moveComponents(ctx, tx, target, moved); err != nil {
					return nil, err
				}
			}
		}
		compOf[r] = target
		// The component's links: stored ones, replaced by this batch's
		// earlier events for the same sets.
		byHash := map[string]link{}
		for _, c := range comps {
			for h, l := range linksOf[c] {
				byHash[h] = l
			}
		}
		for _, l := range todoOf[r] {
			h := setHash(l.ids)
			if old, ok := byHash[h]; !ok || l.less(old) < 0 {
				byHash[h] = l
			}
		}
		links := make([]link, 0, len(byHash))
		for _, l := range byHash {
			links = append(links, l)
		}
		old := map[string]string{}
		for _, c := range comps {
			for id, p := range nodesOf[c] {
				old[id] = p
			}
		}
		var mine []Decision
		for _, d := range decs {
			if _, ok := old[d.A]; ok || slices.Contains(freshIDs, d.A) {
				mine = append(mine, d)
			}
		}
		res := s.c.resolve(links, mine, s.pid)
		profileOf := func(id string) string {
			if p := res.of[id]; p != nil {
				return p.id
			}
			return ""
		}
		for _, id := range freshIDs {
			p := profileOf(id)
			fresh = append(fresh, newNode{id, target, p})
			if typ, _ := splitIdent(id); p != "" && (typ == UserID || typ == AnonymousID) {
				out = append(out, eventstore.ProfileLink{Key: id, ProfileID: p})
			}
		}
		ids := make([]string, 0, len(old))
		for id := range old {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		for _, id := range ids {
			p := profileOf(id)
			if p == old[id] {
				continue
			}
			changed = append(changed, [2]string{id, p})
			if typ, _ := splitIdent(id); typ == UserID || typ == AnonymousID {
				out = append(out, eventstore.ProfileLink{Key: id, ProfileID: p})
			}
		}
		// A profile id some node held already was stored with it.
		known := map[string]bool{}
		for _, p := range old {
			known[p] = true
		}
		for _, p := range res.profiles {
			if !known[p.id] {
				profiles = append(profiles, [2]string{p.id, p.anchor})
			}
		}
	}
	// The component rows exist for row locks; SQLite has a single writer.
	if !s.pg {
		newComps = nil
	}
	for start := 0; start < len(newComps); start += chunk {
		part := newComps[start:min(start+chunk, len(newComps))]
		if _, err := tx.Exec(ctx, `INSERT INTO identity_components (component) VALUES `+placeholders(len(part), 1), anys(part)...); err != nil {
			return nil, fmt.Errorf("identity: new components: %w", err)
		}
	}
	for start := 0; start < len(fresh); start += chunk {
		part := fresh[start:min(start+chunk, len(fresh))]
		args := make([]any, 0, 5*len(part))
		for _, n := range part {
			r, ok := seen[n.id]
			if !ok {
				r = [2]int64{math.MaxInt64, math.MinInt64}
			}
			args = append(args, n.id, n.comp, n.profile, r[0], r[1])
			delete(seen, n.id) // touch need not widen them again
		}
		if _, err := tx.Exec(ctx, `INSERT INTO identity_nodes (ident, component, profile_id, first_seen, last_seen) VALUES `+placeholders(len(part), 5), args...); err != nil {
			return nil, fmt.Errorf("identity: new identifiers: %w", err)
		}
	}
	if err := s.storeProfiles(ctx, tx, changed); err != nil {
		return nil, err
	}
	// Store the links.
	slices.SortFunc(todo, func(a, b link) int { return strings.Compare(setHash(a.ids), setHash(b.ids)) })
	for start := 0; start < len(todo); start += chunk {
		part := todo[start:min(start+chunk, len(todo))]
		args := make([]any, 0, 7*len(part))
		for _, l := range part {
			js, _ := json.Marshal(l.ids)
			args = append(args, setHash(l.ids), compOf[uf.find(keyOf(l.ids[0]))], string(js), l.at.UnixNano(), l.source, l.msg, l.typ)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO identity_links (set_hash, component, idents, event_time, source_id, message_id, event_type) VALUES `+placeholders(len(part), 7)+`
			ON CONFLICT (set_hash) DO UPDATE SET event_time = excluded.event_time, source_id = excluded.source_id,
				message_id = excluded.message_id, event_type = excluded.event_type
			WHERE excluded.event_time < identity_links.event_time
			   OR (excluded.event_time = identity_links.event_time AND (excluded.source_id < identity_links.source_id
			       OR (excluded.source_id = identity_links.source_id AND excluded.message_id < identity_links.message_id)))`, args...); err != nil {
			return nil, fmt.Errorf("identity: store links: %w", err)
		}
	}
	if err := s.storeProfileIDs(ctx, tx, profiles); err != nil {
		return nil, err
	}
	return out, nil
}

// moveComponents merges the components moved into target.
func (s *Store) moveComponents(ctx context.Context, tx *statestore.Tx, target string, moved []string) error {
	for start := 0; start < len(moved); start += chunk {
		part := moved[start:min(start+chunk, len(moved))]
		args := append([]any{target}, anys(part)...)
		for _, q := range []string{
			`UPDATE identity_nodes SET component = ? WHERE component IN ` + inList(len(part)),
			`UPDATE identity_links SET component = ? WHERE component IN ` + inList(len(part)),
		} {
			if _, err := tx.Exec(ctx, q, args...); err != nil {
				return fmt.Errorf("identity: merge components: %w", err)
			}
		}
		if _, err := tx.Exec(ctx, `DELETE FROM identity_components WHERE component IN `+inList(len(part)), anys(part)...); err != nil {
			return fmt.Errorf("identity: merge components: %w", err)
		}
	}
	return nil
}

// storeProfiles sets the profile of identifiers (which all exist): a
// multi-row update, written as an upsert whose insert never happens.
func (s *Store) storeProfiles(ctx context.Context, tx *statestore.Tx, changed [][2]string) error {
	for start := 0; start < len(changed); start += chunk {
		part := changed[start:min(start+chunk, len(changed))]
		args := make([]any, 0, 5*len(part))
		for _, c := range part {
			args = append(args, c[0], "", c[1], 0, 0)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO identity_nodes (ident, component, profile_id, first_seen, last_seen) VALUES `+placeholders(len(part), 5)+`
			ON CONFLICT (ident) DO UPDATE SET profile_id = excluded.profile_id`, args...); err != nil {
			return fmt.Errorf("identity: store profile: %w", err)
		}
	}
	return nil
}

func (s *Store) storeProfileIDs(ctx context.Context, tx *statestore.Tx, profiles [][2]string) error {
	slices.SortFunc(profiles, func(a, b [2]string) int { return strings.Compare(a[0], b[0]) })
	profiles = slices.Compact(profiles)
	for start := 0; start < len(profiles); start += chunk {
		part := profiles[start:min(start+chunk, len(profiles))]
		args := make([]any, 0, 2*len(part))
		for _, p := range part {
			args = append(args, p[0], p[1])
		}
		if _, err := tx.Exec(ctx, `INSERT INTO identity_profile_ids (profile_id, anchor) VALUES `+placeholders(len(part), 2)+` ON CONFLICT (profile_id) DO NOTHING`, args...); err != nil {
			return fmt.Errorf("identity: store profile ids: %w", err)
		}
	}
	return nil
}

// loadComponents reads the links (by set hash) and the nodes (identifier →
// profile) of components.
func (s *Store) loadComponents(ctx context.Context, tx *statestore.Tx, comps []string) (map[string]map[string]link, map[string]map[string]string, error) {
	linksOf := map[string]map[string]link{}
	nodesOf := map[string]map[string]string{}
	for start := 0; start < len(comps); start += chunk {
		part := comps[start:min(start+chunk, len(comps))]
		rows, err := tx.Query(ctx, `SELECT component, set_hash, idents, event_time, source_id, message_id, event_type FROM identity_links WHERE component IN `+inList(len(part)), anys(part)...)
		if err != nil {
			return nil, nil, fmt.Errorf("identity: read components: %w", err)
		}
		for rows.Next() {
			var c, h, js string
			var at int64
			var l link
			if err := rows.Scan(&c, &h, &js, &at, &l.source, &l.msg, &l.typ); err != nil {
				rows.Close()
				return nil, nil, fmt.Errorf("identity: read components: %w", err)
			}
			if err := json.Unmarshal([]byte(js), &l.ids); err != nil {
				rows.Close()
				return nil, nil, fmt.Errorf("identity: read components: %w", err)
			}
			l.at = time.Unix(0, at).UTC()
			if linksOf[c] == nil {
				linksOf[c] = map[string]link{}
			}
			linksOf[c][h] = l
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, nil, fmt.Errorf("identity: read components: %w", err)
		}
		rows, err = tx.Query(ctx, `SELECT component, ident, profile_id FROM identity_nodes WHERE component IN `+inList(len(part)), anys(part)...)
		if err != nil {
			return nil, nil, fmt.Errorf("identity: read components: %w", err)
		}
		for rows.Next() {
			var c, id, p string
			if err := rows.Scan(&c, &id, &p); err != nil {
				rows.Close()
				return nil, nil, fmt.Errorf("identity: read components: %w", err)
			}
			if nodesOf[c] == nil {
				nodesOf[c] = map[string]string{}
			}
			nodesOf[c][id] = p
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, nil, fmt.Errorf("identity: read components: %w", err)
		}
	}
	return linksOf, nodesOf, nil
}

// component reads everything resolution needs about one component.
func (s *Store) component(ctx context.Context, tx querier, comp string) ([]link, map[string]node, []Decision, error) {
	rows, err := tx.Query(ctx, `SELECT idents, event_time, source_id, message_id, event_type FROM identity_links WHERE component = ?`, comp)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("identity: read component: %w", err)
	}
	var links []link
	for rows.Next() {
		var js string
		var at int64
		var l link
		if err := rows.Scan(&js, &at, &l.source, &l.msg, &l.typ); err != nil {
			rows.Close()
			return nil, nil, nil, fmt.Errorf("identity: read component: %w", err)
		}
		if err := json.Unmarshal([]byte(js), &l.ids); err != nil {
			rows.Close()
			return nil, nil, nil, fmt.Errorf("identity: read component: %w", err)
		}
		l.at = time.Unix(0, at).UTC()
		links = append(links, l)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, nil, nil, fmt.Errorf("identity: read component: %w", err)
	}
	rows, err = tx.Query(ctx, `SELECT ident, profile_id FROM identity_nodes WHERE component = ?`, comp)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("identity: read component: %w", err)
	}
	nodes := map[string]node{}
	var ids []string
	for rows.Next() {
		var id string
		n := node{component: comp}
		if err := rows.Scan(&id, &n.profile); err != nil {
			rows.Close()
			return nil, nil, nil, fmt.Errorf("identity: read component: %w", err)
		}
		nodes[id] = n
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, nil, nil, fmt.Errorf("identity: read component: %w", err)
	}
	decs, err := s.decisions(ctx, tx, ids)
	return links, nodes, decs, err
}

type querier interface {
	Query(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// decisions returns the manual decisions that name any of ids.
func (s *Store) decisions(ctx context.Context, tx querier, ids []string) ([]Decision, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	// Decisions are rare: one cheap query usually spares the lookups.
	// (Unmerge locks the component it decides on, so a decision about a
	// component locked here is committed and seen by either query.)
	rows, err := tx.Query(ctx, `SELECT id FROM identity_decisions LIMIT 1`)
	if err != nil {
		return nil, fmt.Errorf("identity: read decisions: %w", err)
	}
	some := rows.Next()
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("identity: read decisions: %w", err)
	}
	if !some {
		return nil, nil
	}
	seen := map[string]bool{}
	var out []Decision
	for start := 0; start < len(ids); start += chunk {
		part := ids[start:min(start+chunk, len(ids))]
		args := append(anys(part), anys(part)...)
		rows, err := tx.Query(ctx, `SELECT id, kind, a, b, created_by, reason, created_at FROM identity_decisions WHERE a IN `+inList(len(part))+` OR b IN `+inList(len(part)), args...)
		if err != nil {
			return nil, fmt.Errorf("identity: read decisions: %w", err)
		}
		for rows.Next() {
			var d Decision
			var at int64
			if err := rows.Scan(&d.ID, &d.Kind, &d.A, &d.B, &d.By, &d.Reason, &at); err != nil {
				rows.Close()
				return nil, fmt.Errorf("identity: read decisions: %w", err)
			}
			d.CreatedAt = statestore.TimeFromDB(at)
			if !seen[d.ID] {
				seen[d.ID] = true
				out = append(out, d)
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("identity: read decisions: %w", err)
		}
	}
	slices.SortFunc(out, func(a, b Decision) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// reresolve resolves a component again and stores each identifier's
// profile, returning the event-key links that changed.
func (s *Store) reresolve(ctx context.Context, tx *statestore.Tx, comp string) ([]eventstore.ProfileLink, error) {
	links, nodes, decs, err := s.component(ctx, tx, comp)
	if err != nil {
		return nil, err
	}
	res := s.c.resolve(links, decs, s.pid)
	ids := make([]string, 0, len(nodes))
	for id := range nodes {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var out []eventstore.ProfileLink
	for _, id := range ids {
		now := ""
		if p := res.of[id]; p != nil {
			now = p.id
		}
		if now == nodes[id].profile {
			continue
		}
		if _, err := tx.Exec(ctx, `UPDATE identity_nodes SET profile_id = ? WHERE ident = ?`, now, id); err != nil {
			return nil, fmt.Errorf("identity: store profile: %w", err)
		}
		if typ, _ := splitIdent(id); typ == UserID || typ == AnonymousID {
			out = append(out, eventstore.ProfileLink{Key: id, ProfileID: now})
		}
	}
	var profiles [][2]string
	for _, p := range res.profiles {
		profiles = append(profiles, [2]string{p.id, p.anchor})
	}
	if err := s.storeProfileIDs(ctx, tx, profiles); err != nil {
		return nil, err
	}
	return out, nil
}

// unionFind is a small disjoint-set over strings.
type unionFind struct {
	parent map[string]string
	order  []string
}

func newUnionFind() *unionFind { return &unionFind{parent: map[string]string{}} }

func (u *unionFind) add(k string) {
	if _, ok := u.parent[k]; !ok {
		u.parent[k] = k
		u.order = append(u.order, k)
	}
}

func (u *unionFind) find(k string) string {
	u.add(k)
	for u.parent[k] != k {
		u.parent[k] = u.parent[u.parent[k]]
		k = u.parent[k]
	}
	return k
}

func (u *unionFind) union(a, b string) {
	ra, rb := u.find(a), u.find(b)
	if ra == rb {
		return
	}
	if rb < ra {
		ra, rb = rb, ra
	}
	u.parent[rb] = ra
}

func (u *unionFind) keys() []string { return u.order }
