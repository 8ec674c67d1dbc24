package privacy_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"tandem/event"
	"tandem/identity"
	"tandem/privacy"
	"tandem/statestore"
	"tandem/statestore/sqlite"
	"tandem/statestore/statetest"
)

func openSuppressions(t testing.TB, db *statestore.DB) (*privacy.Suppressions, *identity.Store) {
	t.Helper()
	ctx := context.Background()
	if err := db.Migrate(ctx, append(identity.Migrations(), privacy.Migrations()...)...); err != nil {
		t.Fatal(err)
	}
	ids, err := identity.NewStore(ctx, db, identity.Options{Rules: identity.DefaultRules()})
	if err != nil {
		t.Fatal(err)
	}
	key := []byte("0123456789abcdef0123456789abcdef")
	s := privacy.NewSuppressions(db, key, ids)
	if err := s.Load(ctx); err != nil {
		t.Fatal(err)
	}
	return s, ids
}

// TestSuppressions: identifiers put on the list suppress events carrying
// them (by userId, anonymousId, an e-mail in the traits however it is
// written, the ids of a refused event's JSON) and no other; the list
// keeps hashes only, another node learns it by Load, and Remove lifts
// one identifier.
func TestSuppressions(t *testing.T) {
	statetest.Each(t, func(t *testing.T, open func(t *testing.T) *statestore.DB) {
		ctx := context.Background()
		db := open(t)
		s, _ := openSuppressions(t, db)
		ts := time.Now()
		ev := func(user, anon, raw string) *event.Event {
			return &event.Event{Type: "identify", UserID: user, AnonymousID: anon, Timestamp: ts, Raw: []byte(raw)}
		}
		if s.Suppressed(ev("u1", "", `{}`)) {
			t.Fatal("an empty list suppresses")
		}
		if err := s.Add(ctx, "dsr_1", []string{"user_id:u1", "anonymous_id:a1", "email:ann@example.com"}); err != nil {
			t.Fatal(err)
		}
		for name, c := range map[string]struct {
			e    *event.Event
			want bool
		}{
			"user id":          {ev("u1", "", `{}`), true},
			"anonymous id":     {ev("", "a1", `{}`), true},
			"e-mail in traits": {ev("", "a-new", `{"traits":{"email":" Ann@Example.COM "}}`), true},
			"refused event":    {&event.Event{Raw: []byte(`{"userId":"u1"}`)}, true},
			"someone else":     {ev("u2", "a2", `{"traits":{"email":"bob@example.com"}}`), false},
			"a prefix only":    {ev("u", "", `{}`), false},
		} {
			if got := s.Suppressed(c.e); got != c.want {
				t.Errorf("%s: Suppressed = %v, want %v", name, got, c.want)
			}
		}
		// Hashes only.
		var n int
		if err := db.QueryRow(ctx, `SELECT COUNT(*) FROM privacy_suppressions WHERE hash LIKE '%ann%' OR hash LIKE '%u1%' OR request_id <> 'dsr_1'`).Scan(&n); err != nil || n != 0 {
			t.Errorf("rows holding an identifier: %d, %v", n, err)
		}
		// Another node.
		other, _ := openSuppressions(t, db)
		if !other.Suppressed(ev("", "a1", `{}`)) {
			t.Error("another node does not see the list after Load")
		}
		// Lifted: that identifier only.
		var fe *statestore.FieldError
		if _, err := s.Remove(ctx, "shoe_size", "42"); !errors.As(err, &fe) {
			t.Errorf("remove of no identifier: %v", err)
		}
		if removed, err := s.Remove(ctx, "email", "ANN@example.com"); err != nil || !removed {
			t.Fatalf("Remove = %v, %v", removed, err)
		}
		if removed, _ := s.Remove(ctx, "email", "ann@example.com"); removed {
			t.Error("removed twice")
		}
		if s.Suppressed(ev("", "a-new", `{"traits":{"email":"ann@example.com"}}`)) || !s.Suppressed(ev("u1", "", `{}`)) {
			t.Error("Remove lifted the wrong identifiers")
		}
	})
}

// BenchmarkSuppressed is the pipeline's check per event: with an empty
// list (every node that never erased anyone) and with 10,000 erased
// identifiers, for a track event (ids only) and an identify event with
// traits (parsed for identifiers).
func BenchmarkSuppressed(b *testing.B) {
	ctx := context.Background()
	db, err := sqlite.Open(filepath.Join(b.TempDir(), "state.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	s, _ := openSuppressions(b, db)
	track := &event.Event{Type: "track", UserID: "u-123456", AnonymousID: "a-9f8e7d", Raw: []byte(`{"type":"track","event":"Viewed","userId":"u-123456","properties":{"n":1}}`)}
	ident := &event.Event{Type: "identify", UserID: "u-123456", Raw: []byte(`{"type":"identify","userId":"u-123456","traits":{"email":"someone@example.com","phone":"+14155550100","plan":"gold"}}`)}
	run := func(name string) {
		for _, c := range []struct {
			kind string
			e    *event.Event
		}{{"track", track}, {"identify", ident}} {
			b.Run(name+"/"+c.kind, func(b *testing.B) {
				for b.Loop() {
					if s.Suppressed(c.e) {
						b.Fatal("suppressed")
					}
				}
			})
		}
	}
	run("empty")
	var ids []string
	for i := range 10000 {
		ids = append(ids, fmt.Sprintf("user_id:erased-%d", i))
	}
	if err := s.Add(ctx, "dsr_bench", ids); err != nil {
		b.Fatal(err)
	}
	run("10k")
}
