// Package identitytest is the identity package's contract suite over a
// state store backend: statestore/statetest runs it on every backend, and
// identity's own tests run it on SQLite.
package identitytest

import (
	"context"
	"encoding/json"
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
	t.Run("ConcurrentResolvers", func(t *testing.T) { t.Parallel(); testConcurrent(t, open) })
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
