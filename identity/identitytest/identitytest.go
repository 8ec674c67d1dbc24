// Package identitytest is the identity package's contract suite over a
// state store backend: statestore/statetest runs it on every backend, and
// identity's own tests run it on SQLite.
package identitytest

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"tandem/event"
	"tandem/eventstore"
	"tandem/identity"
	"tandem/statestore"
)

// Run runs the suite. open must return a new, empty database for each
// call and register its cleanup.
func Run(t *testing.T, open func(t *testing.T) *statestore.DB) {
	t.Run("ResolveExplainUnmerge", func(t *testing.T) { t.Parallel(); testRoundTrip(t, open) })
	t.Run("Redelivery", func(t *testing.T) { t.Parallel(); testRedelivery(t, open) })
	t.Run("LinkFailure", func(t *testing.T) { t.Parallel(); testLinkFailure(t, open) })
	t.Run("ConcurrentResolvers", func(t *testing.T) { t.Parallel(); testConcurrent(t, open) })
	t.Run("UpgradeFromVersion1", func(t *testing.T) { t.Parallel(); testUpgrade(t, open) })
	t.Run("Erase", func(t *testing.T) { t.Parallel(); testErase(t, open) })
	t.Run("TraitsLatest", func(t *testing.T) { t.Parallel(); testTraitsLatest(t, open) })
	t.Run("ConcurrentTraits", func(t *testing.T) { t.Parallel(); testConcurrentTraits(t, open) })
	t.Run("SeenTimes", func(t *testing.T) { t.Parallel(); testSeenTimes(t, open) })
}

// testSeenTimes: a profile's first and last seen times widen with events
// on either side of them, through stores with cold caches (restarts,
// other nodes) too, and events inside them change nothing.
func testSeenTimes(t *testing.T, open func(t *testing.T) *statestore.DB) {
	ctx := context.Background()
	db := open(t)
	l := &links{m: map[string]string{}}
	newStore(t, db, l)
	for i, c := range []struct {
		batch       []event.Event
		first, last int
	}{
		{[]event.Event{ev("m1", 5, "identify", "u1", "a1", nil)}, 5, 5},
		{[]event.Event{ev("m2", 9, "track", "", "a1", nil), ev("m3", 3, "track", "u1", "", nil)}, 3, 9},
		{[]event.Event{ev("m4", 4, "track", "u1", "a1", nil)}, 3, 9},
		{[]event.Event{ev("m5", 12, "track", "u1", "", nil), ev("m4", 4, "track", "u1", "a1", nil)}, 3, 12},
	} {
		// A new store each time: nothing remembered in memory.
		s, err := identity.NewStore(ctx, db, identity.Options{Rules: identity.DefaultRules(), Links: l})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Resolve(ctx, c.batch); err != nil {
			t.Fatal(err)
		}
		p, err := s.Lookup(ctx, identity.AnonymousID, "a1")
		if err != nil {
			t.Fatal(err)
		}
		if want := t0.Add(time.Duration(c.first) * time.Minute); !p.FirstSeen.Equal(want) {
			t.Errorf("batch %d: first seen %v, want %v", i, p.FirstSeen, want)
		}
		if want := t0.Add(time.Duration(c.last) * time.Minute); !p.LastSeen.Equal(want) {
			t.Errorf("batch %d: last seen %v, want %v", i, p.LastSeen, want)
		}
	}
}

// testUpgrade stores a graph the way schema version 1 did (a row per
// identifier and per link), then opens a Store: every identifier keeps its
// profile and seen times, explanations and new events work, and the old
// tables are gone.
func testUpgrade(t *testing.T, open func(t *testing.T) *statestore.DB) {
	ctx := context.Background()
	db := open(t)
	if err := db.Migrate(ctx, identity.Migrations()[0]); err != nil {
		t.Fatal(err)
	}
	ms := func(min int) int64 { return t0.Add(time.Duration(min) * time.Minute).UnixNano() }
	// The profile id key, as version 1 stored it, and the ids it gave.
	key := bytes.Repeat([]byte{7}, 32)
	pid := func(anchor string) string {
		m := hmac.New(sha256.New, key)
		m.Write([]byte(anchor))
		return "prf_" + hex.EncodeToString(m.Sum(nil)[:12])
	}
	p1, p2 := pid("anonymous_id:a1"), pid("email:x@example.com")
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`INSERT INTO identity_links (set_hash, component, idents, event_time, source_id, message_id, event_type) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			[]any{"h1", "cmp_old1", `["anonymous_id:a1"]`, ms(0), "src", "m0", "page"}},
		{`INSERT INTO identity_links (set_hash, component, idents, event_time, source_id, message_id, event_type) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			[]any{"h2", "cmp_old1", `["user_id:u1","anonymous_id:a1"]`, ms(1), "src", "m1", "identify"}},
		{`INSERT INTO identity_links (set_hash, component, idents, event_time, source_id, message_id, event_type) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			[]any{"h3", "cmp_old2", `["email:x@example.com"]`, ms(2), "src", "m2", "identify"}},
		{`INSERT INTO identity_nodes (ident, component, profile_id, first_seen, last_seen) VALUES (?, ?, ?, ?, ?), (?, ?, ?, ?, ?), (?, ?, ?, ?, ?)`,
			[]any{"anonymous_id:a1", "cmp_old1", p1, ms(0), ms(9), "user_id:u1", "cmp_old1", p1, ms(1), ms(1), "email:x@example.com", "cmp_old2", p2, ms(2), ms(2)}},
		{`INSERT INTO identity_profile_ids (profile_id, anchor) VALUES (?, ?), (?, ?)`,
			[]any{p1, "anonymous_id:a1", p2, "email:x@example.com"}},
		{`INSERT INTO identity_settings (name, value) VALUES ('profile_id_key', ?)`, []any{hex.EncodeToString(key)}},
		// Traits a row per trait, as versions 1 and 2 stored them.
		{`INSERT INTO identity_traits (ekey, name, value, event_time, message_id) VALUES (?, ?, ?, ?, ?), (?, ?, ?, ?, ?), (?, ?, ?, ?, ?)`,
			[]any{"user_id:u1", "plan", `"pro"`, ms(1), "m1", "user_id:u1", "name", `"Ann"`, ms(1), "m1", "anonymous_id:a1", "plan", `"free"`, ms(0), "m0"}},
	} {
		if _, err := db.Exec(ctx, q.sql, q.args...); err != nil {
			t.Fatal(err)
		}
	}
	l := &links{m: map[string]string{}}
	s := newStore(t, db, l)
	p, err := s.Lookup(ctx, identity.UserID, "u1")
	if err != nil {
		t.Fatal(err)
	}
	if p.ID != p1 || len(p.Identifiers) != 2 || !p.FirstSeen.Equal(t0) || !p.LastSeen.Equal(t0.Add(9*time.Minute)) {
		t.Fatalf("upgraded profile %+v", p)
	}
	if len(p.Traits) != 2 || string(p.Traits["plan"]) != `"pro"` || string(p.Traits["name"]) != `"Ann"` {
		t.Fatalf("upgraded traits %s", p.Traits)
	}
	if q, err := s.Lookup(ctx, identity.Email, "x@example.com"); err != nil || q.ID != p2 {
		t.Fatalf("upgraded profile %+v, %v", q, err)
	}
	x, err := s.Explain(ctx, p1)
	if err != nil || len(x.Steps) != 2 || x.Steps[1].Kind != identity.StepJoined {
		t.Fatalf("explain after upgrade: %+v, %v", x, err)
	}
	if _, err := db.Exec(ctx, `SELECT 1 FROM identity_nodes`); err == nil {
		t.Error("identity_nodes still exists after the upgrade")
	}
	// A second start finds nothing to upgrade; new events join the
	// upgraded components.
	s = newStore(t, db, l)
	if err := s.Resolve(ctx, []event.Event{ev("m3", 3, "identify", "u1", "", map[string]any{"email": "x@example.com"})}); err != nil {
		t.Fatal(err)
	}
	parts, err := s.Partition(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{{"anonymous_id:a1", "email:x@example.com", "user_id:u1"}}
	if !slices.EqualFunc(parts, want, slices.Equal) {
		t.Fatalf("partition %v, want %v", parts, want)
	}
	if q, err := s.Lookup(ctx, identity.Email, "x@example.com"); err != nil || q.ID != p1 {
		t.Fatalf("after the merge the e-mail is in %+v (%v), want %s", q, err, p1)
	}
	// The upgraded traits take later values as before: the identify at
	// minute 3 brought none for plan, an older event changes nothing.
	if err := s.Resolve(ctx, []event.Event{ev("m4", 4, "identify", "u1", "", map[string]any{"name": "Ann B"}), ev("m5", 0, "identify", "u1", "", map[string]any{"plan": "old"})}); err != nil {
		t.Fatal(err)
	}
	if q, err := s.Lookup(ctx, identity.UserID, "u1"); err != nil || string(q.Traits["name"]) != `"Ann B"` || string(q.Traits["plan"]) != `"pro"` {
		t.Fatalf("traits after the upgrade: %+v, %v", q, err)
	}
}

// testTraitsLatest: a profile's traits are the latest value of each by
// event time, ties by messageId, whatever order batches arrive in and
// however they are cut; stores without a cache (other nodes) agree.
func testTraitsLatest(t *testing.T, open func(t *testing.T) *statestore.DB) {
	ctx := context.Background()
	db := open(t)
	l := &links{m: map[string]string{}}
	s := newStore(t, db, l)
	batches := [][]event.Event{
		{ev("m5", 5, "identify", "u1", "a1", map[string]any{"plan": "pro", "email": "a@x.org"})},
		// Late and older: only the trait never set before is taken.
		{ev("m1", 1, "identify", "u1", "", map[string]any{"plan": "free", "company": "Acme"})},
		// Same time: the greater messageId wins, the smaller does not.
		{ev("m6", 5, "identify", "u1", "", map[string]any{"plan": "team"}), ev("m4", 5, "identify", "u1", "", map[string]any{"email": "old@x.org"})},
		// The anonymous key's later value wins across keys.
		{ev("m7", 7, "identify", "", "a1", map[string]any{"company": "Beta"})},
		// Redelivered through another store: nothing changes.
		{ev("m1", 1, "identify", "u1", "", map[string]any{"plan": "free", "company": "Acme"})},
	}
	want := map[string]string{"plan": `"team"`, "email": `"a@x.org"`, "company": `"Beta"`}
	for i, b := range batches {
		st := s
		if i == len(batches)-1 {
			var err error
			if st, err = identity.NewStore(ctx, db, identity.Options{Rules: identity.DefaultRules(), Links: l}); err != nil {
				t.Fatal(err)
			}
		}
		if err := st.Resolve(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	p, err := s.Lookup(ctx, identity.UserID, "u1")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for k, v := range p.Traits {
		got[k] = string(v)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("traits %v, want %v", got, want)
	}
	// The same events in one batch, in another order, give the same.
	s2 := newStore(t, open(t), &links{m: map[string]string{}})
	var all []event.Event
	for i := len(batches) - 1; i >= 0; i-- {
		all = append(all, batches[i]...)
	}
	if err := s2.Resolve(ctx, all); err != nil {
		t.Fatal(err)
	}
	q, err := s2.Lookup(ctx, identity.UserID, "u1")
	if err != nil {
		t.Fatal(err)
	}
	got = map[string]string{}
	for k, v := range q.Traits {
		got[k] = string(v)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("one batch: traits %v, want %v", got, want)
	}
}

// testConcurrentTraits: stores (nodes) that write traits of the same new
// event keys at once lose none of them.
func testConcurrentTraits(t *testing.T, open func(t *testing.T) *statestore.DB) {
	ctx := context.Background()
	db := open(t)
	l := &links{m: map[string]string{}}
	newStore(t, db, l)
	const writers, users = 4, 20
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		s, err := identity.NewStore(ctx, db, identity.Options{Rules: identity.DefaultRules(), Links: l})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for u := range users {
				e := ev(fmt.Sprintf("w%d-%d", w, u), u, "identify", fmt.Sprintf("u%d", u), "", map[string]any{fmt.Sprintf("t%d", w): w})
				if err := s.Resolve(ctx, []event.Event{e}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	s, _ := identity.NewStore(ctx, db, identity.Options{Rules: identity.DefaultRules(), Links: l})
	for u := range users {
		p, err := s.Lookup(ctx, identity.UserID, fmt.Sprintf("u%d", u))
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Traits) != writers {
			t.Errorf("u%d traits %s, want one from each of %d writers", u, p.Traits, writers)
		}
	}
}

type links struct {
	mu sync.Mutex
	m  map[string]string
}

func (l *links) LinkProfiles(_ context.Context, ls []eventstore.ProfileLink) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range ls {
		l.m[k.Key] = k.ProfileID
	}
	return nil
}

func newStore(t *testing.T, db *statestore.DB, l *links) *identity.Store {
	t.Helper()
	if err := db.Migrate(context.Background(), identity.Migrations()...); err != nil {
		t.Fatal(err)
	}
	s, err := identity.NewStore(context.Background(), db, identity.Options{Rules: identity.DefaultRules(), Links: l})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var t0 = time.Date(2024, 6, 1, 12, 0, 0, 0, time.UTC)

func ev(msg string, min int, typ, user, anon string, traits map[string]any) event.Event {
	raw, _ := json.Marshal(map[string]any{"type": typ, "userId": user, "anonymousId": anon, "traits": traits})
	return event.Event{SourceID: "src", MessageID: msg, Type: typ, UserID: user, AnonymousID: anon,
		Timestamp: t0.Add(time.Duration(min) * time.Minute), Raw: raw}
}

func testRoundTrip(t *testing.T, open func(t *testing.T) *statestore.DB) {
	ctx := context.Background()
	l := &links{m: map[string]string{}}
	s := newStore(t, open(t), l)
	evs := []event.Event{
		ev("m1", 0, "page", "", "a1", nil),
		ev("m2", 1, "identify", "u1", "a2", map[string]any{"email": "X@Example.com", "plan": "pro"}),
		ev("m3", 2, "identify", "u1", "a1", map[string]any{"plan": "team"}),
	}
	if err := s.Resolve(ctx, evs); err != nil {
		t.Fatal(err)
	}
	p, err := s.Lookup(ctx, identity.Email, " x@example.COM")
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Identifiers) != 4 || string(p.Traits["plan"]) != `"team"` {
		t.Fatalf("profile %+v", p)
	}
	for _, k := range []string{"anonymous_id:a1", "anonymous_id:a2", "user_id:u1"} {
		if l.m[k] != p.ID {
			t.Errorf("%s linked to %q, want %s", k, l.m[k], p.ID)
		}
	}
	x, err := s.Explain(ctx, p.ID)
	if err != nil {
		t.Fatal(err)
	}
	var merge string
	for _, st := range x.Steps {
		if st.Kind == identity.StepMerged {
			merge = st.MergeID
		}
	}
	if merge == "" {
		t.Fatalf("no merge in %+v", x.Steps)
	}
	res, err := s.Unmerge(ctx, p.ID, identity.Unmerge{MergeID: merge, By: "usr_1", Reason: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Profiles) != 2 || l.m["anonymous_id:a1"] == l.m["user_id:u1"] {
		t.Fatalf("after unmerge: %+v, links %v", res, l.m)
	}
	// Taking the same decision again changes nothing; the old id still
	// answers.
	if _, err := s.Profile(ctx, p.ID); err != nil {
		t.Errorf("old id: %v", err)
	}
}

func testRedelivery(t *testing.T, open func(t *testing.T) *statestore.DB) {
	ctx := context.Background()
	l := &links{m: map[string]string{}}
	db := open(t)
	s := newStore(t, db, l)
	evs := []event.Event{ev("m1", 0, "identify", "u1", "a1", map[string]any{"name": "A"}), ev("m2", 5, "track", "", "a1", nil)}
	if err := s.Resolve(ctx, evs); err != nil {
		t.Fatal(err)
	}
	before, _ := s.Partition(ctx)
	p1, _ := s.Lookup(ctx, identity.UserID, "u1")
	// A second store (another node, or a restart: no cache) gets the same
	// batch again.
	s2, err := identity.NewStore(ctx, db, identity.Options{Rules: identity.DefaultRules(), Links: l})
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.Resolve(ctx, evs); err != nil {
		t.Fatal(err)
	}
	after, _ := s.Partition(ctx)
	p2, _ := s.Lookup(ctx, identity.UserID, "u1")
	if !slices.EqualFunc(before, after, slices.Equal) || p1.ID != p2.ID || !p1.FirstSeen.Equal(p2.FirstSeen) || !p1.LastSeen.Equal(p2.LastSeen) {
		t.Fatalf("redelivery changed things: %v %v / %+v %+v", before, after, p1, p2)
	}
}

// failingLinks records links like links, but fails the calls it is told
// to (after recording them: an event store that wrote and then lost its
// answer).
type failingLinks struct {
	links
	fail int // calls left to fail
}

var errLinkFailed = errors.New("event store unavailable")

func (l *failingLinks) LinkProfiles(ctx context.Context, ls []eventstore.ProfileLink) error {
	if err := l.links.LinkProfiles(ctx, ls); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fail > 0 {
		l.fail--
		return errLinkFailed
	}
	return nil
}

// testLinkFailure: when the event store fails to link a batch's keys
// (links are written beside the resolution's transaction), nothing of the
// batch is stored, in a state-store batch with later steps neither, and
// resolving the same events again stores them and links every key to its
// profile.
func testLinkFailure(t *testing.T, open func(t *testing.T) *statestore.DB) {
	ctx := context.Background()
	l := &failingLinks{links: links{m: map[string]string{}}, fail: 1}
	db := open(t)
	newStore(t, db, &l.links) // migrates
	s, err := identity.NewStore(ctx, db, identity.Options{Rules: identity.DefaultRules(), Links: l})
	if err != nil {
		t.Fatal(err)
	}
	evs := []event.Event{ev("m1", 0, "page", "", "a1", nil), ev("m2", 1, "identify", "u1", "a1", map[string]any{"plan": "pro"})}
	if err := s.Resolve(ctx, evs); !errors.Is(err, errLinkFailed) {
		t.Fatalf("resolve with the links failing: %v, want %v", err, errLinkFailed)
	}
	if _, err := s.Lookup(ctx, identity.UserID, "u1"); !errors.Is(err, identity.ErrNotFound) {
		t.Fatalf("after the failed batch, lookup u1: %v, want not found", err)
	}
	// Two more people in one state-store batch, the first's links
	// failing: the second, resolved after it, is rolled back too.
	l.mu.Lock()
	l.fail = 1
	l.mu.Unlock()
	more := [][]event.Event{{ev("m3", 2, "identify", "u2", "a2", nil)}, {ev("m4", 3, "identify", "u3", "a3", nil)}}
	err = db.Batch(ctx, func(ctx context.Context) error {
		for _, b := range more {
			if err := s.Resolve(ctx, b); err != nil {
				return err
			}
		}
		return nil
	})
	if !errors.Is(err, errLinkFailed) {
		t.Fatalf("batch with the first links failing: %v, want %v", err, errLinkFailed)
	}
	for _, u := range []string{"u2", "u3"} {
		if _, err := s.Lookup(ctx, identity.UserID, u); !errors.Is(err, identity.ErrNotFound) {
			t.Fatalf("after the failed batch, lookup %s: %v, want not found", u, err)
		}
	}
	// Again, the event store working: everything is stored and linked.
	if err := s.Resolve(ctx, append(evs, append(more[0], more[1]...)...)); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ user, anon string }{{"u1", "a1"}, {"u2", "a2"}, {"u3", "a3"}} {
		p, err := s.Lookup(ctx, identity.UserID, c.user)
		if err != nil {
			t.Fatal(err)
		}
		for _, key := range []string{identity.Ident(identity.UserID, c.user), identity.Ident(identity.AnonymousID, c.anon)} {
			if got := l.m[key]; got != p.ID {
				t.Errorf("%s linked to %q, want %s", key, got, p.ID)
			}
		}
	}
}

// testConcurrent resolves overlapping batches from several stores (as
// several nodes would) at once: the graph must end as one sequential
// resolution leaves it.
func testConcurrent(t *testing.T, open func(t *testing.T) *statestore.DB) {
	ctx := context.Background()
	var all []event.Event
	for i := range 60 {
		// Chains: person k's anonymous ids a{k}-{j} are joined by logins.
		k := i % 6
		all = append(all, ev(fmt.Sprintf("m%03d", i), i, "identify", fmt.Sprintf("u%d", k), fmt.Sprintf("a%d-%d", k, i/6), nil))
		if i%5 == 0 {
			all = append(all, ev(fmt.Sprintf("x%03d", i), 100-i, "alias", "", fmt.Sprintf("a%d-%d", (k+1)%6, i/6), nil))
		}
	}
	seq := newStore(t, open(t), &links{m: map[string]string{}})
	if err := seq.Resolve(ctx, all); err != nil {
		t.Fatal(err)
	}
	want, _ := seq.Partition(ctx)

	db := open(t)
	l := &links{m: map[string]string{}}
	newStore(t, db, l)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := range 4 {
		s, err := identity.NewStore(ctx, db, identity.Options{Rules: identity.DefaultRules(), Links: l})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(all); i += 8 {
				if err := s.Resolve(ctx, all[i:min(i+8, len(all))]); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	s, _ := identity.NewStore(ctx, db, identity.Options{Rules: identity.DefaultRules(), Links: l})
	got, err := s.Partition(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("concurrent resolution\n got %v\nwant %v", got, want)
	}
	for _, part := range got {
		typ, val := splitType(part[0])
		p, err := s.Lookup(ctx, typ, val)
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range part {
			if typ, _ := splitType(id); (typ == identity.UserID || typ == identity.AnonymousID) && l.m[id] != p.ID {
				t.Errorf("%s linked to %q, want %s", id, l.m[id], p.ID)
			}
		}
	}
}

func splitType(id string) (string, string) {
	for i := range id {
		if id[i] == ':' {
			return id[:i], id[i+1:]
		}
	}
	return id, ""
}

// testErase: Erase removes a profile's identifiers, links and traits,
// returns its event keys, and leaves another profile alone; the same
// identifiers seen again make a new profile.
func testErase(t *testing.T, open func(t *testing.T) *statestore.DB) {
	ctx := context.Background()
	l := &links{m: map[string]string{}}
	s := newStore(t, open(t), l)
	evs := []event.Event{
		ev("m1", 0, "page", "", "a1", nil),
		ev("m2", 1, "identify", "u1", "a1", map[string]any{"email": "ann@example.com", "plan": "pro"}),
		ev("m3", 2, "identify", "u2", "a9", map[string]any{"email": "bob@example.com", "plan": "team"}),
	}
	if err := s.Resolve(ctx, evs); err != nil {
		t.Fatal(err)
	}
	p, err := s.Lookup(ctx, identity.Email, "ann@example.com")
	if err != nil {
		t.Fatal(err)
	}
	keys, err := s.Erase(ctx, p.ID)
	if err != nil || !slices.Equal(keys, []string{"user_id:u1", "anonymous_id:a1"}) {
		t.Fatalf("Erase = %v, %v", keys, err)
	}
	for _, id := range [][2]string{{identity.Email, "ann@example.com"}, {identity.UserID, "u1"}, {identity.AnonymousID, "a1"}} {
		if q, err := s.Lookup(ctx, id[0], id[1]); !errors.Is(err, identity.ErrNotFound) {
			t.Errorf("Lookup %s after erase: %+v, %v", id, q, err)
		}
	}
	if _, err := s.Profile(ctx, p.ID); !errors.Is(err, identity.ErrNotFound) {
		t.Errorf("Profile after erase: %v", err)
	}
	if _, err := s.Erase(ctx, p.ID); !errors.Is(err, identity.ErrNotFound) {
		t.Errorf("Erase again: %v", err)
	}
	bob, err := s.Lookup(ctx, identity.Email, "bob@example.com")
	if err != nil || string(bob.Traits["plan"]) != `"team"` {
		t.Fatalf("bob after erase: %+v, %v", bob, err)
	}
	// Seen again (a new visit): a new profile, without the old traits.
	if err := s.Resolve(ctx, []event.Event{ev("m4", 3, "page", "u1", "", nil)}); err != nil {
		t.Fatal(err)
	}
	q, err := s.Lookup(ctx, identity.UserID, "u1")
	if err != nil || len(q.Identifiers) != 1 || len(q.Traits) != 0 {
		t.Errorf("u1 seen again: %+v, %v", q, err)
	}
}
