package identity

import (
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"iter"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
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
	rules  atomic.Pointer[compiled] // see c and SetRules
	links  Linker
	secret []byte
	cache  *setCache
	seen   *seenCache
	pg     bool
	// macs holds HMACs keyed with secret, for pid: a reset one starts
	// from its saved keyed state instead of hashing the key again.
	macs sync.Pool
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
	s := &Store{db: db, links: opts.Links, cache: newSetCache(opts.CacheSize), seen: newSeenCache(opts.CacheSize), pg: db.Dialect().Name() == statestore.Postgres}
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
	s.macs.New = func() any { return hmac.New(sha256.New, s.secret) }
	s.rules.Store(c)
	if err := s.upgrade(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// c returns the compiled rules in force.
func (s *Store) c() *compiled { return s.rules.Load() }

// Rules returns the rules in force (validated, in priority order).
func (s *Store) Rules() Rules { return s.c().rules }

// SetRules puts new rules in force, for the events resolved from then
// on (what is stored stays as resolved; a component is resolved again
// under the rules in force when it next changes). Errors are
// *[ValidationError]s, as from [Rules.Validate].
func (s *Store) SetRules(r Rules) error {
	r.Types, r.Blocked = slices.Clone(r.Types), slices.Clone(r.Blocked)
	c, err := compile(r)
	if err != nil {
		return err
	}
	s.rules.Store(c)
	return nil
}

// Migrations returns the package's schema migrations.
//
// Version 1 stored a row per identifier and per link; version 2 stores a
// row per component (identity_components.data, see [graph]) and a narrow
// row per identifier (its component and seen times). [NewStore] moves a
// version 1 graph into the version 2 tables once and drops the old ones.
func Migrations() []statestore.Migration {
	v2 := `
DROP TABLE identity_components;
CREATE TABLE identity_components (
	component TEXT PRIMARY KEY,
	data %s NOT NULL
);
CREATE TABLE identity_idents (
	ident TEXT PRIMARY KEY,
	component TEXT NOT NULL,
	first_seen BIGINT NOT NULL,
	last_seen BIGINT NOT NULL
);
`
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
`}, {Package: "identity", Version: 2, SQL: fmt.Sprintf(v2, "BLOB"),
		DialectSQL: map[string]string{statestore.Postgres: fmt.Sprintf(v2, "BYTEA")}}}
}

// upgrade moves a graph stored in the version 1 tables (a row per
// identifier and per link) into the version 2 ones, keeping every
// identifier's profile, and drops the old tables; once, in one
// transaction, a thousand components at a time.
func (s *Store) upgrade(ctx context.Context) error {
	return s.db.Tx(ctx, func(tx *statestore.Tx) error {
		res, err := tx.Exec(ctx, `INSERT INTO identity_settings (name, value) VALUES ('graph_format', '2') ON CONFLICT (name) DO NOTHING`)
		if err != nil {
			return fmt.Errorf("identity: upgrade: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return err // done already (by this node or another)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO identity_idents (ident, component, first_seen, last_seen) SELECT ident, component, first_seen, last_seen FROM identity_nodes`); err != nil {
			return fmt.Errorf("identity: upgrade: %w", err)
		}
		after := ""
		for {
			var comps []string
			rows, err := tx.Query(ctx, `SELECT DISTINCT component FROM identity_nodes WHERE component > ? ORDER BY component LIMIT 1000`, after)
			if err != nil {
				return fmt.Errorf("identity: upgrade: %w", err)
			}
			for rows.Next() {
				var c string
				if err := rows.Scan(&c); err != nil {
					rows.Close()
					return fmt.Errorf("identity: upgrade: %w", err)
				}
				comps = append(comps, c)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return fmt.Errorf("identity: upgrade: %w", err)
			}
			if len(comps) == 0 {
				break
			}
			after = comps[len(comps)-1]
			if err := s.upgradeComponents(ctx, tx, comps); err != nil {
				return err
			}
		}
		for _, q := range []string{`DROP TABLE identity_links`, `DROP TABLE identity_nodes`} {
			if _, err := tx.Exec(ctx, q); err != nil {
				return fmt.Errorf("identity: upgrade: %w", err)
			}
		}
		return nil
	})
}

func (s *Store) upgradeComponents(ctx context.Context, tx *statestore.Tx, comps []string) error {
	linksOf := map[string][]link{}
	rows, err := tx.Query(ctx, `SELECT component, idents, event_time, source_id, message_id, event_type FROM identity_links WHERE component IN `+inList(len(comps)), anys(comps)...)
	if err != nil {
		return fmt.Errorf("identity: upgrade: %w", err)
	}
	for rows.Next() {
		var c, js string
		var at int64
		var l link
		if err := rows.Scan(&c, &js, &at, &l.source, &l.msg, &l.typ); err != nil {
			rows.Close()
			return fmt.Errorf("identity: upgrade: %w", err)
		}
		if err := json.Unmarshal([]byte(js), &l.ids); err != nil {
			rows.Close()
			return fmt.Errorf("identity: upgrade: %w", err)
		}
		l.at = time.Unix(0, at).UTC()
		linksOf[c] = append(linksOf[c], l)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("identity: upgrade: %w", err)
	}
	type member struct{ id, profile string }
	nodesOf := map[string][]member{}
	rows, err = tx.Query(ctx, `SELECT component, ident, profile_id FROM identity_nodes WHERE component IN `+inList(len(comps)), anys(comps)...)
	if err != nil {
		return fmt.Errorf("identity: upgrade: %w", err)
	}
	for rows.Next() {
		var c string
		var m member
		if err := rows.Scan(&c, &m.id, &m.profile); err != nil {
			rows.Close()
			return fmt.Errorf("identity: upgrade: %w", err)
		}
		nodesOf[c] = append(nodesOf[c], m)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("identity: upgrade: %w", err)
	}
	for start := 0; start < len(comps); start += 100 {
		part := comps[start:min(start+100, len(comps))]
		args := make([]any, 0, 2*len(part))
		for _, c := range part {
			// The stored assignment, as it is: a resolution under
			// today's rules happens when the component next changes.
			res := resolution{of: map[string]*resolved{}}
			var ids []string
			for _, m := range nodesOf[c] {
				ids = append(ids, m.id)
				if m.profile != "" {
					res.of[m.id] = &resolved{id: m.profile}
				}
			}
			args = append(args, c, newGraph(ids, linksOf[c], res).encode())
		}
		if _, err := tx.Exec(ctx, `INSERT INTO identity_components (component, data) VALUES `+placeholders(len(part), 2), args...); err != nil {
			return fmt.Errorf("identity: upgrade: %w", err)
		}
	}
	return nil
}

// pid is the profile id of a profile started by anchor.
func (s *Store) pid(anchor string) string {
	m := s.macs.Get().(hash.Hash)
	m.Reset()
	io.WriteString(m, anchor) //nolint:errcheck // a hash's Write does not fail
	var sum [sha256.Size]byte
	b := m.Sum(sum[:0])
	s.macs.Put(m)
	var out [4 + 24]byte
	copy(out[:], "prf_")
	hex.Encode(out[4:], b[:12])
	return string(out[:])
}

// setKey identifies a set of identifiers in memory (the caches, a
// batch's sets): 128 bits of a hash, with no pointers for the garbage
// collector to follow.
type setKey [16]byte

func setHash(ids []string) setKey {
	k, _ := appendSetHash(nil, ids)
	return k
}

// appendSetHash is setHash with a buffer to reuse: it returns the buffer
// as grown.
func appendSetHash(buf []byte, ids []string) (setKey, []byte) {
	buf = buf[:0]
	for _, id := range ids {
		buf = append(append(buf, id...), 0)
	}
	sum := sha256.Sum256(buf)
	return setKey(sum[:16]), buf
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
// component between reading and locking it. It matches
// [statestore.ErrBusy], so that a [statestore.DB.Batch] the resolution
// joined runs again too.
var errRetry = fmt.Errorf("identity: component changed meanwhile: %w", statestore.ErrBusy)

// txAttempts is how often tx tries a transaction that keeps losing races.
const txAttempts = 8

// tx runs fn in a transaction, and again, after a short pause that grows
// with each attempt, when it lost a race with a concurrent writer: another
// node changed a component meanwhile (errRetry), wrote the same row first
// ([statestore.ErrConflict]), or the database aborted the transaction or
// had no room for it ([statestore.ErrBusy]: a PostgreSQL serialization
// failure or deadlock, a SQLite lock not had in time). It gives up at once
// when ctx ends, pauses included. In a [statestore.DB.Batch] it runs fn
// once, in the batch's transaction: the batch retries the whole of it.
func (s *Store) tx(ctx context.Context, fn func(tx *statestore.Tx) error) error {
	if s.db.InBatch(ctx) {
		return s.db.Tx(ctx, fn)
	}
	return s.db.TxRetry(ctx, txAttempts, retryable, fn)
}

// retryable reports whether a transaction that failed with err may pass
// when run again.
func retryable(err error) bool {
	return errors.Is(err, errRetry) || errors.Is(err, statestore.ErrConflict) || errors.Is(err, statestore.ErrBusy)
}

// Resolve takes one pipeline batch of valid events into the identity
// graph: it records each distinct set of identifiers seen together (with
// the earliest event carrying it), merges the components they connect,
// resolves every changed component again, stores traits and seen times,
// and tells the Linker the new profile of every event key whose profile
// changed, all in one transaction. Resolving the same events again
// changes nothing.
func (s *Store) Resolve(ctx context.Context, events []event.Event) error {
	return s.ResolveObserved(ctx, s.Observe(events))
}

// Observed is what a batch of events tells identity resolution, read from
// the events alone: each distinct set of identifiers with its earliest
// event, the identifiers' seen times, the traits. Making it reads no store,
// so the pipeline makes it ahead, on another core, while the batch before
// is being resolved ([Store.ResolveObserved]).
type Observed struct {
	sets   map[setKey]link
	seen   map[string][2]int64
	traits map[traitKey]traitVal
}

// Observe reads a batch of events for [Store.ResolveObserved].
//
// Most events carry no traits: their identifiers follow from their user
// id, anonymous id and (alias) previous id alone, so such an event is
// matched to its set of identifiers by those ids as sent, with one map
// lookup (none when it is the same person's as the event before), and
// its JSON is not read. The identifiers' seen times are kept per set and
// spread over the identifiers once a set at the end.
func (s *Store) Observe(events []event.Event) *Observed {
	sc, _ := observeScratches.Get().(*observeScratch)
	if sc == nil {
		sc = &observeScratch{
			ob:     observer{sent: [2]map[string]string{{}, {}}},
			linkOf: map[string]int32{},
			plain:  map[sentIDs]int32{},
		}
	}
	defer sc.release()
	ob := &sc.ob
	ob.c = s.c()
	// The batch's distinct sets of identifiers, each with its earliest
	// event and its events' time range, found by the set's identifiers
	// (length-prefixed) rather than by their hash: hashed once a set, not
	// once an event.
	links, linkOf, key := sc.links[:0], sc.linkOf, sc.key
	// setOf finds (or adds) the set ids, a sorted observation's.
	setOf := func(ids []string, e *event.Event) int32 {
		if len(ids) == 0 {
			return -1
		}
		key = key[:0]
		for _, id := range ids {
			key = binary.AppendUvarint(key, uint64(len(id)))
			key = append(key, id...)
		}
		if j, ok := linkOf[string(key)]; ok {
			return j
		}
		j := int32(len(links))
		linkOf[string(key)] = j
		at := e.Timestamp.UnixNano()
		// ids is the observer's buffer.
		links = append(links, batchLink{link: link{ids: slices.Clone(ids), at: e.Timestamp, source: e.SourceID, msg: e.MessageID, typ: e.Type}, lo: at, hi: at})
		return j
	}
	// The set of each traitless event's ids as sent, -1 for none.
	plain := sc.plain
	last, lastSet := sentIDs{}, int32(-2) // -2: no event before
	traits := map[traitKey]traitVal{}
	for i := range events {
		e := &events[i]
		var set int32
		if mentions := mentionsTraits(e.Raw); mentions || e.Type == "group" {
			o := ob.observeAs(e, mentions)
			at := o.at.UnixNano()
			for k, v := range o.traits {
				tk := traitKey{o.key, k}
				if old, ok := traits[tk]; !ok || at > old.at || (at == old.at && o.msg > old.msg) {
					traits[tk] = traitVal{v, at, o.msg}
				}
			}
			set = setOf(o.ids, e)
		} else {
			k := sentIDs{e.UserID, e.AnonymousID, ""}
			if e.Type == "alias" {
				k.prev = e.PreviousID
			}
			if k == last && lastSet != -2 {
				set = lastSet
			} else if j, ok := plain[k]; ok {
				set = j
			} else {
				set = setOf(ob.observeAs(e, false).ids, e)
				plain[k] = set
			}
			last, lastSet = k, set
		}
		if set >= 0 {
			links[set].add(e)
		}
	}
	seen := make(map[string][2]int64, len(links))
	sets := make(map[setKey]link, len(links))
	for i := range links {
		l := &links[i]
		for _, id := range l.ids {
			if r, ok := seen[id]; !ok {
				seen[id] = [2]int64{l.lo, l.hi}
			} else if l.lo < r[0] || l.hi > r[1] {
				seen[id] = [2]int64{min(r[0], l.lo), max(r[1], l.hi)}
			}
		}
		var h setKey
		h, key = appendSetHash(key, l.ids)
		if old, ok := sets[h]; !ok || l.less(old) < 0 {
			sets[h] = l.link
		}
	}
	sc.links, sc.key = links, key
	return &Observed{sets: sets, seen: seen, traits: traits}
}

// observeScratch is the working memory of [Store.Observe], kept for the
// next batch: maps that grow to a batch's size cost more to grow again
// each batch than to clear.
type observeScratch struct {
	ob     observer
	linkOf map[string]int32
	plain  map[sentIDs]int32
	links  []batchLink
	key    []byte
}

var observeScratches sync.Pool

// maxScratch is the most entries a kept scratch map may hold: one grown
// by an unusually large batch is let go.
const maxScratch = 1 << 16

// release clears sc, which then refers to no event, and keeps it for
// the next batch unless a map grew beyond maxScratch.
func (sc *observeScratch) release() {
	if len(sc.linkOf) > maxScratch || len(sc.plain) > maxScratch || len(sc.ob.sent[0]) > maxScratch || len(sc.ob.sent[1]) > maxScratch {
		return
	}
	clear(sc.linkOf)
	clear(sc.plain)
	clear(sc.ob.sent[0])
	clear(sc.ob.sent[1])
	clear(sc.links[:cap(sc.links)])
	sc.ob.c, sc.ob.ids = nil, sc.ob.ids[:0]
	clear(sc.ob.ids[:cap(sc.ob.ids)])
	observeScratches.Put(sc)
}

// sentIDs are an event's user id, anonymous id and (alias) previous id as
// sent: all its identifiers come from them when it carries no traits.
type sentIDs struct{ user, anon, prev string }

// batchLink is a set of identifiers of a batch ([Store.Observe]) with its
// earliest event and the time range of its events (Unix nanoseconds).
type batchLink struct {
	link
	lo, hi int64
}

// add counts e, an event of l's set, in.
func (l *batchLink) add(e *event.Event) {
	at := e.Timestamp.UnixNano()
	l.lo, l.hi = min(l.lo, at), max(l.hi, at)
	// As link.less: the ids are the same.
	c := e.Timestamp.Compare(l.at)
	if c == 0 {
		if c = cmp.Compare(e.SourceID, l.source); c == 0 {
			c = cmp.Compare(e.MessageID, l.msg)
		}
	}
	if c < 0 {
		l.at, l.source, l.msg, l.typ = e.Timestamp, e.SourceID, e.MessageID, e.Type
	}
}

// ResolveObserved is [Store.Resolve] of the events ob was observed from.
// ob is not changed: resolving it again (a retry) is fine.
func (s *Store) ResolveObserved(ctx context.Context, ob *Observed) error {
	traits := ob.traits
	// What the caches show stored already needs no write.
	// pending is in no particular order: nothing integrate stores
	// depends on it (each component's links are sorted where that
	// matters, newGraph and partition).
	sets, pending := s.cache.uncovered(ob.sets)
	seen := s.seen.uncovered(ob.seen)
	return s.tx(ctx, func(tx *statestore.Tx) error {
		widen := maps.Clone(seen) // integrate takes from it; a retry starts afresh
		if len(pending) > 0 {
			err := s.integrate(ctx, tx, pending, widen)
			if err != nil {
				return err
			}
		}
		err := s.touch(ctx, tx, widen)
		if err == nil {
			err = s.storeTraits(ctx, tx, traits)
		}
		if err == nil {
			// The caches learn what is stored once it is (in a batch,
			// once the batch commits).
			tx.AfterCommit(func() {
				s.cache.putAll(sets)
				s.seen.putAll(seen)
			})
		}
		return err
	})
}

// traitKey is a trait of an event key; traitVal its latest value.
type traitKey struct{ ekey, name string }

type traitVal struct {
	value json.RawMessage
	at    int64
	msg   string
}

// storeTraits writes traits whose value is later than the stored one.
func (s *Store) storeTraits(ctx context.Context, tx *statestore.Tx, traits map[traitKey]traitVal) error {
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
	for start, end := range tx.Parts(len(tks), chunk) {
		part := tks[start:end]
		args := make([]any, 0, 5*len(part))
		for _, k := range part {
			v := traits[k]
			args = append(args, k.ekey, k.name, string(v.value), v.at, v.msg)
		}
		if _, err := tx.ExecCached(ctx, `INSERT INTO identity_traits (ekey, name, value, event_time, message_id) VALUES `+placeholders(len(part), 5)+`
			ON CONFLICT (ekey, name) DO UPDATE SET value = excluded.value, event_time = excluded.event_time, message_id = excluded.message_id
			WHERE excluded.event_time > identity_traits.event_time
			   OR (excluded.event_time = identity_traits.event_time AND excluded.message_id > identity_traits.message_id)`, args...); err != nil {
			return fmt.Errorf("identity: store traits: %w", err)
		}
	}
	return nil
}

// linkBeside tells the Linker the event-key links of tx's changes: the
// event store links them on another core while the state store goes on
// with tx (and, in a [statestore.DB.Batch], with the batch's later steps:
// consent, computed traits); tx commits only once the links are written,
// and fails if they fail. A tx that fails after its links were written
// leaves them as the resolution it did not store decided; the events are
// resolved again (the pipeline retries them, or the log delivers them
// again) and their keys, new to the graph again, are linked again (a
// store keeps one link per key, the last).
func (s *Store) linkBeside(ctx context.Context, tx *statestore.Tx, plinks []eventstore.ProfileLink) {
	if s.links == nil || len(plinks) == 0 {
		return
	}
	linked := make(chan error, 1)
	go func() {
		linked <- s.links.LinkProfiles(ctx, plinks)
	}()
	tx.Await(func() error {
		if err := <-linked; err != nil {
			return fmt.Errorf("identity: link event keys: %w", err)
		}
		return nil
	})
}

// touch widens the first/last-seen times of identifiers (all exist).
func (s *Store) touch(ctx context.Context, tx *statestore.Tx, seen map[string][2]int64) error {
	ids := make([]string, 0, len(seen))
	for id := range seen {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for start, end := range tx.Parts(len(ids), chunk) {
		part := ids[start:end]
		args := make([]any, 0, 4*len(part))
		for _, id := range part {
			r := seen[id]
			args = append(args, id, "", r[0], r[1])
		}
		// Every identifier here was stored by this batch or an earlier
		// one, so the insert never happens: this is a multi-row update,
		// of the rows whose range it widens only (what the seen cache
		// did not know, after a restart, a replay or another node's
		// write, is usually stored already: the row stays as it is).
		if _, err := tx.ExecCached(ctx, `INSERT INTO identity_idents (ident, component, first_seen, last_seen) VALUES `+placeholders(len(part), 4)+`
			ON CONFLICT (ident) DO UPDATE SET
				first_seen = CASE WHEN excluded.first_seen < identity_idents.first_seen THEN excluded.first_seen ELSE identity_idents.first_seen END,
				last_seen = CASE WHEN excluded.last_seen > identity_idents.last_seen THEN excluded.last_seen ELSE identity_idents.last_seen END
			WHERE excluded.first_seen < identity_idents.first_seen OR excluded.last_seen > identity_idents.last_seen`, args...); err != nil {
			return fmt.Errorf("identity: update seen times: %w", err)
		}
	}
	return nil
}

// componentsOf reads the component of each of ids that exists.
func (s *Store) componentsOf(ctx context.Context, q querier, ids []string) (map[string]string, error) {
	out := make(map[string]string, len(ids))
	for start, end := range q.Parts(len(ids), chunk) {
		part := ids[start:end]
		rows, err := q.QueryCached(ctx, `SELECT ident, component FROM identity_idents WHERE ident IN `+inList(len(part)), anys(part)...)
		if err != nil {
			return nil, fmt.Errorf("identity: read identifiers: %w", err)
		}
		for rows.Next() {
			var id, c string
			if err := rows.Scan(&id, &c); err != nil {
				rows.Close()
				return nil, fmt.Errorf("identity: read identifiers: %w", err)
			}
			out[id] = c
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("identity: read identifiers: %w", err)
		}
	}
	return out, nil
}

// graphs reads components (sorted), taking their row locks on
// PostgreSQL when lock is set (another node resolving one of them waits;
// SQLite has a single writer already). A component missing from the
// result was merged away meanwhile.
func (s *Store) graphs(ctx context.Context, q querier, comps []string, lock bool) (map[string]*graph, error) {
	out := make(map[string]*graph, len(comps))
	suffix := ""
	if lock && s.pg {
		suffix = ` ORDER BY component FOR UPDATE`
	}
	for start, end := range q.Parts(len(comps), chunk) {
		part := comps[start:end]
		rows, err := q.QueryCached(ctx, `SELECT component, data FROM identity_components WHERE component IN `+inList(len(part))+suffix, anys(part)...)
		if err != nil {
			return nil, fmt.Errorf("identity: read components: %w", err)
		}
		for rows.Next() {
			var c string
			var data []byte
			if err := rows.Scan(&c, &data); err != nil {
				rows.Close()
				return nil, fmt.Errorf("identity: read components: %w", err)
			}
			g, err := decodeGraph(data)
			if err != nil {
				rows.Close()
				return nil, fmt.Errorf("identity: component %s: %w", c, err)
			}
			out[c] = g
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("identity: read components: %w", err)
		}
	}
	return out, nil
}

// graph reads one component.
func (s *Store) graph(ctx context.Context, q querier, comp string, lock bool) (*graph, error) {
	gs, err := s.graphs(ctx, q, []string{comp}, lock)
	if err != nil {
		return nil, err
	}
	g, ok := gs[comp]
	if !ok {
		return nil, errRetry // merged away since its identifiers were read
	}
	return g, nil
}

// lockedGraphs reads the components of ids and locks them, so that what
// it returns stays true until the transaction ends: on PostgreSQL it reads
// the identifiers again after locking and asks for a retry if another
// node moved one meanwhile.
func (s *Store) lockedGraphs(ctx context.Context, tx *statestore.Tx, ids []string) (map[string]string, map[string]*graph, error) {
	compOf, err := s.componentsOf(ctx, tx, ids)
	if err != nil {
		return nil, nil, err
	}
	comps := make([]string, 0, len(compOf))
	for _, c := range compOf {
		comps = append(comps, c)
	}
	slices.Sort(comps)
	comps = slices.Compact(comps)
	graphs, err := s.graphs(ctx, tx, comps, true)
	if err != nil {
		return nil, nil, err
	}
	if len(graphs) != len(comps) {
		if !s.pg {
			return nil, nil, fmt.Errorf("identity: %w: an identifier names a missing component", errBadGraph)
		}
		return nil, nil, errRetry // merged away meanwhile
	}
	if s.pg {
		again, err := s.componentsOf(ctx, tx, ids)
		if err != nil {
			return nil, nil, err
		}
		if len(again) != len(compOf) {
			return nil, nil, errRetry
		}
		for id, c := range again {
			if compOf[id] != c {
				return nil, nil, errRetry
			}
		}
	}
	return compOf, graphs, nil
}

// rewrite is a component changed by a resolution.
type rewrite struct {
	comp   string
	g      *graph
	res    resolution
	before map[string]string // identifier → profile before ("" none), for those stored already
	fresh  []string          // identifiers new to the graph
	moved  []string          // identifiers of components it absorbed
}

// integrate adds new links (sets not stored, or stored with a later
// event, in any order): merges the components they connect, resolves each
// resulting component again and stores it, with the event-key links that
// changed.
func (s *Store) integrate(ctx context.Context, tx *statestore.Tx, todo []link, seen map[string][2]int64) error {
	n := 0
	for _, l := range todo {
		n += len(l.ids)
	}
	ids := make([]string, 0, n)
	for _, l := range todo {
		ids = append(ids, l.ids...)
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	compOf, graphs, err := s.lockedGraphs(ctx, tx, ids)
	if err != nil {
		return err
	}
	// Links whose set is stored with an event no later change nothing.
	todo = slices.DeleteFunc(slices.Clone(todo), func(l link) bool {
		c, ok := compOf[l.ids[0]]
		if !ok {
			return false
		}
		old, ok := graphs[c].linkOf(l.ids)
		return ok && old.less(l) <= 0
	})
	if len(todo) == 0 {
		return nil
	}
	// Union the components (and new identifiers) each link connects,
	// over numbers: the new identifier ids[i] is node i, the stored
	// component stored[j] node len(ids)+j.
	stored := make([]string, 0, len(graphs))
	for c := range graphs {
		stored = append(stored, c)
	}
	slices.Sort(stored)
	nodeOf := make(map[string]int32, len(ids))
	for i, id := range ids {
		if c, ok := compOf[id]; ok {
			j, _ := slices.BinarySearch(stored, c)
			nodeOf[id] = int32(len(ids) + j)
		} else {
			nodeOf[id] = int32(i)
		}
	}
	uf := newUnionFind(len(ids) + len(stored))
	for _, l := range todo {
		first := nodeOf[l.ids[0]]
		uf.use(first)
		for _, id := range l.ids[1:] {
			uf.union(first, nodeOf[id])
		}
	}
	// The groups, in the order of their smallest node; each with its
	// new identifiers and stored components (sorted, as the nodes are)
	// and its links.
	type group struct {
		fresh, comps []string
		links        []link
	}
	var groups []group
	groupOf := make([]int32, len(ids)+len(stored))
	for k := range uf.parent {
		if !uf.used[k] {
			continue
		}
		r := uf.find(int32(k))
		if r == int32(k) {
			groupOf[k] = int32(len(groups))
			groups = append(groups, group{})
		}
		g := &groups[groupOf[r]]
		if k < len(ids) {
			g.fresh = append(g.fresh, ids[k])
		} else {
			g.comps = append(g.comps, stored[k-len(ids)])
		}
	}
	for _, l := range todo {
		g := &groups[groupOf[uf.find(nodeOf[l.ids[0]])]]
		g.links = append(g.links, l)
	}
	var decs []Decision
	if some, err := s.anyDecisions(ctx, tx); err != nil {
		return err
	} else if some {
		var allIDs []string
		for _, g := range graphs {
			allIDs = append(allIDs, g.idents...)
		}
		for _, g := range groups {
			allIDs = append(allIDs, g.fresh...)
		}
		slices.Sort(allIDs)
		if decs, err = s.decisions(ctx, tx, allIDs); err != nil {
			return err
		}
	}
	var rewrites []rewrite
	var absorbed []string
	for _, gr := range groups {
		comps, freshIDs := gr.comps, gr.fresh
		w := rewrite{fresh: freshIDs}
		if len(comps) > 0 {
			w.before = make(map[string]string)
		}
		if len(comps) == 0 {
			w.comp = statestore.NewID("cmp")
		} else {
			// The largest component absorbs the others: a merge
			// rewrites the identifier rows of the smaller ones only.
			w.comp = comps[0]
			for _, c := range comps[1:] {
				if graphs[c].size() > graphs[w.comp].size() {
					w.comp = c
				}
			}
		}
		// The component's links: stored ones, replaced by this batch's
		// earlier events for the same sets.
		var byKey map[string]link
		if len(comps) > 0 {
			byKey = map[string]link{}
		}
		var idents []string
		for _, c := range comps {
			g := graphs[c]
			for _, l := range g.links {
				byKey[linkKey(l.ids)] = l
			}
			for i, id := range g.idents {
				idents = append(idents, id)
				if k := g.profile[i]; k >= 0 {
					w.before[id] = g.pids[k]
				} else {
					w.before[id] = ""
				}
			}
			if c != w.comp {
				absorbed = append(absorbed, c)
				w.moved = append(w.moved, g.idents...)
			}
		}
		var links []link
		if byKey == nil {
			// Only new identifiers: the batch's sets are distinct.
			links = gr.links
		} else {
			for _, l := range gr.links {
				k := linkKey(l.ids)
				if old, ok := byKey[k]; !ok || l.less(old) < 0 {
					byKey[k] = l
				}
			}
			links = make([]link, 0, len(byKey))
			for _, l := range byKey {
				links = append(links, l)
			}
		}
		idents = append(idents, freshIDs...)
		var mine []Decision
		for _, d := range decs {
			if _, ok := w.before[d.A]; ok || slices.Contains(freshIDs, d.A) {
				mine = append(mine, d)
			}
		}
		if res, ok := s.c().whole(links, s.pid); ok && len(mine) == 0 {
			w.res = res
		} else {
			w.res = s.c().partition(links, mine, s.pid)
		}
		w.g = newGraph(idents, links, w.res)
		rewrites = append(rewrites, w)
	}
	return s.store(ctx, tx, rewrites, absorbed, seen)
}

// store writes rewritten components: their rows, the component of every
// identifier that is new or moved, the ids of new profiles; it deletes
// the components absorbed. The event-key links that changed go to the
// Linker beside tx (linkBeside). seen gives new identifiers their first
// seen times (and loses them: touch need not widen them again).
func (s *Store) store(ctx context.Context, tx *statestore.Tx, rewrites []rewrite, absorbed []string, seen map[string][2]int64) error {
	type identRow struct {
		id, comp string
		r        [2]int64
	}
	var fresh []identRow
	var moved [][2]string // ident, component
	var profiles [][2]string
	var out []eventstore.ProfileLink
	comps := make([]any, 0, 2*len(rewrites))
	for _, w := range rewrites {
		comps = append(comps, w.comp, w.g.encode())
		for _, id := range w.fresh {
			r, ok := seen[id]
			if !ok {
				r = [2]int64{math.MaxInt64, math.MinInt64}
			}
			fresh = append(fresh, identRow{id, w.comp, r})
			delete(seen, id)
		}
		var known map[string]bool // profile ids held before (only stored components had any)
		if len(w.before) > 0 {
			known = make(map[string]bool)
		}
		for i, id := range w.g.idents {
			now := ""
			if k := w.g.profile[i]; k >= 0 {
				now = w.g.pids[k]
			}
			was, existed := w.before[id]
			if existed {
				known[was] = true
				if was == now {
					continue
				}
			}
			if typ, _ := splitIdent(id); typ == UserID || typ == AnonymousID {
				if existed || now != "" {
					out = append(out, eventstore.ProfileLink{Key: id, ProfileID: now, New: !existed})
				}
			}
		}
		for _, id := range w.moved {
			moved = append(moved, [2]string{id, w.comp})
		}
		// A profile id some identifier held already was stored with it.
		for _, p := range w.res.profiles {
			if !known[p.id] {
				profiles = append(profiles, [2]string{p.id, p.anchor})
			}
		}
	}
	// When the links start: on SQLite no other writer runs until tx
	// ends, so they start now, beside the writes. On PostgreSQL another
	// node's transaction can make this one fail and run again with what
	// that node stored; a link this one wrote could then stay wrong (the
	// next run would not see it change). So they start only once tx has
	// written, and so locked, every row it changes.
	if !s.pg {
		s.linkBeside(ctx, tx, out)
	}
	const graphsPerStatement = 100 // each row may be kilobytes
	for start, end := range tx.Parts(len(comps)/2, graphsPerStatement) {
		if _, err := tx.ExecCached(ctx, `INSERT INTO identity_components (component, data) VALUES `+placeholders(end-start, 2)+`
			ON CONFLICT (component) DO UPDATE SET data = excluded.data`, comps[2*start:2*end]...); err != nil {
			return fmt.Errorf("identity: store components: %w", err)
		}
	}
	slices.SortFunc(fresh, func(a, b identRow) int { return strings.Compare(a.id, b.id) })
	for start, end := range tx.Parts(len(fresh), chunk) {
		part := fresh[start:end]
		args := make([]any, 0, 4*len(part))
		for _, f := range part {
			args = append(args, f.id, f.comp, f.r[0], f.r[1])
		}
		if _, err := tx.ExecCached(ctx, `INSERT INTO identity_idents (ident, component, first_seen, last_seen) VALUES `+placeholders(len(part), 4), args...); err != nil {
			return fmt.Errorf("identity: new identifiers: %w", err)
		}
	}
	if err := s.move(ctx, tx, moved); err != nil {
		return err
	}
	if err := s.storeProfileIDs(ctx, tx, profiles); err != nil {
		return err
	}
	if err := s.dropComponents(ctx, tx, absorbed); err != nil {
		return err
	}
	if s.pg {
		s.linkBeside(ctx, tx, out)
	}
	return nil
}

// move sets the component of identifiers whose component was absorbed: a
// multi-row update, written as an upsert whose insert never happens.
func (s *Store) move(ctx context.Context, tx *statestore.Tx, moved [][2]string) error {
	slices.SortFunc(moved, func(a, b [2]string) int { return strings.Compare(a[0], b[0]) })
	for start, end := range tx.Parts(len(moved), chunk) {
		part := moved[start:end]
		args := make([]any, 0, 4*len(part))
		for _, m := range part {
			args = append(args, m[0], m[1], 0, 0)
		}
		if _, err := tx.ExecCached(ctx, `INSERT INTO identity_idents (ident, component, first_seen, last_seen) VALUES `+placeholders(len(part), 4)+`
			ON CONFLICT (ident) DO UPDATE SET component = excluded.component`, args...); err != nil {
			return fmt.Errorf("identity: merge components: %w", err)
		}
	}
	return nil
}

// dropComponents deletes the rows of components merged into others.
func (s *Store) dropComponents(ctx context.Context, tx *statestore.Tx, comps []string) error {
	slices.Sort(comps)
	for start, end := range tx.Parts(len(comps), chunk) {
		part := comps[start:end]
		if _, err := tx.ExecCached(ctx, `DELETE FROM identity_components WHERE component IN `+inList(len(part)), anys(part)...); err != nil {
			return fmt.Errorf("identity: merge components: %w", err)
		}
	}
	return nil
}

func (s *Store) storeProfileIDs(ctx context.Context, tx *statestore.Tx, profiles [][2]string) error {
	slices.SortFunc(profiles, func(a, b [2]string) int { return strings.Compare(a[0], b[0]) })
	profiles = slices.Compact(profiles)
	for start, end := range tx.Parts(len(profiles), chunk) {
		part := profiles[start:end]
		args := make([]any, 0, 2*len(part))
		for _, p := range part {
			args = append(args, p[0], p[1])
		}
		if _, err := tx.ExecCached(ctx, `INSERT INTO identity_profile_ids (profile_id, anchor) VALUES `+placeholders(len(part), 2)+` ON CONFLICT (profile_id) DO NOTHING`, args...); err != nil {
			return fmt.Errorf("identity: store profile ids: %w", err)
		}
	}
	return nil
}

type querier interface {
	Query(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryCached(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	Parts(n, most int) iter.Seq2[int, int]
}

// anyDecisions reports whether any manual decision exists. Decisions are
// rare: one cheap query usually spares the lookups. (Unmerge locks the
// component it decides on, so a decision about a component locked here
// is committed and seen by either query.)
func (s *Store) anyDecisions(ctx context.Context, tx querier) (bool, error) {
	rows, err := tx.Query(ctx, `SELECT id FROM identity_decisions LIMIT 1`)
	if err != nil {
		return false, fmt.Errorf("identity: read decisions: %w", err)
	}
	some := rows.Next()
	rows.Close()
	if err := rows.Err(); err != nil {
		return false, fmt.Errorf("identity: read decisions: %w", err)
	}
	return some, nil
}

// decisions returns the manual decisions that name any of ids.
func (s *Store) decisions(ctx context.Context, tx querier, ids []string) ([]Decision, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	if some, err := s.anyDecisions(ctx, tx); err != nil || !some {
		return nil, err
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

// reresolve resolves a component (locked by the caller) again and stores
// it, with the event-key links that changed.
func (s *Store) reresolve(ctx context.Context, tx *statestore.Tx, comp string, g *graph) error {
	decs, err := s.decisions(ctx, tx, g.idents)
	if err != nil {
		return err
	}
	w := rewrite{comp: comp, before: map[string]string{}}
	for i, id := range g.idents {
		w.before[id] = ""
		if k := g.profile[i]; k >= 0 {
			w.before[id] = g.pids[k]
		}
	}
	w.res = s.c().partition(g.links, decs, s.pid)
	w.g = newGraph(g.idents, g.links, w.res)
	return s.store(ctx, tx, []rewrite{w}, nil, nil)
}

// unionFind is a disjoint-set over the numbers 0…n-1; a union keeps the
// smaller root, so that a set's root is its smallest number.
type unionFind struct {
	parent []int32
	used   []bool // numbers a union or use named
}

func newUnionFind(n int) *unionFind {
	u := &unionFind{parent: make([]int32, n), used: make([]bool, n)}
	for i := range u.parent {
		u.parent[i] = int32(i)
	}
	return u
}

func (u *unionFind) use(k int32) { u.used[k] = true }

func (u *unionFind) find(k int32) int32 {
	for u.parent[k] != k {
		u.parent[k] = u.parent[u.parent[k]]
		k = u.parent[k]
	}
	return k
}

func (u *unionFind) union(a, b int32) {
	u.used[a], u.used[b] = true, true
	ra, rb := u.find(a), u.find(b)
	if ra == rb {
		return
	}
	if rb < ra {
		ra, rb = rb, ra
	}
	u.parent[rb] = ra
}
