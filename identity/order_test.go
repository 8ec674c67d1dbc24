package identity

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"pgregory.net/rapid"

	"tandem/event"
	"tandem/eventstore"
	"tandem/statestore"
	"tandem/statestore/sqlite"
)

type recLinks struct {
	mu sync.Mutex
	m  map[string]string
}

func (l *recLinks) LinkProfiles(_ context.Context, links []eventstore.ProfileLink) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range links {
		l.m[k.Key] = k.ProfileID
	}
	return nil
}

// fastDB opens a state store on a memory file system when there is one:
// the property test commits thousands of transactions.
func fastDB(t *testing.T) *statestore.DB {
	dir := ""
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		d, err := os.MkdirTemp("/dev/shm", "tandem-identity-test-")
		if err == nil {
			dir = d
			t.Cleanup(func() { os.RemoveAll(d) })
		}
	}
	if dir == "" {
		dir = t.TempDir()
	}
	db, err := sqlite.Open(filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Migrate(context.Background(), Migrations()...); err != nil {
		t.Fatal(err)
	}
	return db
}

// TestOrderIndependence checks that the final grouping of identifiers
// into profiles depends on the events and the rules only: random
// identifier graphs (with tied event times, repeated identifier sets,
// limits that drop identifiers) are resolved in two random arrival orders
// split into random batches, and both must give the partition a single
// resolution of all events at once gives. Each case uses its own
// identifier values, so one database serves every case.
func TestOrderIndependence(t *testing.T) {
	if f := flag.Lookup("rapid.checks"); f != nil && f.Value.String() == f.DefValue && !testing.Short() {
		_ = f.Value.Set("3000")
		defer f.Value.Set(f.DefValue)
	}
	db := fastDB(t)
	ctx := context.Background()
	n := 0
	rapid.Check(t, func(rt *rapid.T) {
		n++
		rules := Rules{Types: []Type{
			{Name: UserID, Limit: rapid.IntRange(1, 2).Draw(rt, "userLimit")},
			{Name: Email, Limit: rapid.IntRange(0, 2).Draw(rt, "emailLimit")},
			{Name: Phone, Limit: rapid.IntRange(0, 2).Draw(rt, "phoneLimit")},
			{Name: AnonymousID, Limit: rapid.IntRange(0, 3).Draw(rt, "anonLimit")},
		}, Blocked: []string{"blocked"}}
		c, err := compile(rules)
		if err != nil {
			rt.Fatal(err)
		}
		type spec struct {
			user, anon, email, phone, prev string
			at                             int
		}
		vals := func(label string, n int) string {
			v := rapid.IntRange(-1, n).Draw(rt, label)
			switch v {
			case -1:
				return ""
			case n:
				return "blocked"
			}
			return fmt.Sprintf("%s%d", label[:1], v)
		}
		nev := rapid.IntRange(1, 14).Draw(rt, "events")
		specs := make([]spec, nev)
		for i := range specs {
			s := spec{user: vals("user", 3), anon: vals("anon", 4), email: vals("email", 3), at: rapid.IntRange(0, 5).Draw(rt, "at")}
			if rapid.IntRange(0, 3).Draw(rt, "hasPhone") == 0 {
				s.phone = vals("phone", 2)
			}
			if rapid.IntRange(0, 4).Draw(rt, "alias") == 0 {
				s.prev = vals("anon", 4)
			}
			if s.user == "" && s.anon == "" {
				s.anon = "a0"
			}
			specs[i] = s
		}
		build := func(prefix string, num int) []event.Event {
			p := func(v string) string {
				if v == "" || v == "blocked" {
					return v
				}
				return prefix + v
			}
			evs := make([]event.Event, len(specs))
			for i, s := range specs {
				e := event.Event{SourceID: "s", MessageID: fmt.Sprintf("m%02d", i), Type: "identify", UserID: p(s.user), AnonymousID: p(s.anon),
					Timestamp: time.Unix(int64(1700000000+s.at), 0).UTC()}
				if s.prev != "" {
					e.Type, e.PreviousID = "alias", p(s.prev)
				}
				traits := map[string]string{}
				if s.email != "" {
					traits["email"] = p(s.email) + "@x.org"
					if s.email == "blocked" {
						traits["email"] = "blocked"
					}
				}
				if s.phone != "" {
					// Phone numbers (possible German mobile numbers) carry
					// the case number: "+49 170 NNNNNND".
					traits["phone"] = "blocked"
					if s.phone != "blocked" {
						traits["phone"] = fmt.Sprintf("+49 170 %06d%s", num, s.phone[1:])
					}
				}
				raw, _ := json.Marshal(map[string]any{"type": e.Type, "userId": e.UserID, "anonymousId": e.AnonymousID, "context": map[string]any{"traits": traits}})
				e.Raw = raw
				evs[i] = e
			}
			return evs
		}
		// The reference: every event's identifier set resolved at once.
		var all []link
		for _, e := range build("ref-", 0) {
			o := c.observe(&e)
			if len(o.ids) > 0 {
				all = append(all, link{ids: o.ids, at: o.at, source: o.source, msg: o.msg})
			}
		}
		want := partitionOf(c.resolve(all, nil, func(a string) string { return a }), "ref-")

		for i, run := range []string{"a", "b"} {
			num := 2*n + i
			prefix := fmt.Sprintf("c%d-", num)
			evs := build(prefix, num)
			perm := rapid.Permutation(evs).Draw(rt, "order-"+run)
			links := &recLinks{m: map[string]string{}}
			st, err := NewStore(ctx, db, Options{Rules: rules, Links: links, CacheSize: rapid.IntRange(1, 64).Draw(rt, "cache")})
			if err != nil {
				rt.Fatal(err)
			}
			for len(perm) > 0 {
				k := rapid.IntRange(1, len(perm)).Draw(rt, "batch")
				// Redeliveries happen: sometimes send a batch twice.
				if err := st.Resolve(ctx, perm[:k]); err != nil {
					rt.Fatal(err)
				}
				if rapid.IntRange(0, 5).Draw(rt, "redeliver") == 0 {
					if err := st.Resolve(ctx, perm[:k]); err != nil {
						rt.Fatal(err)
					}
				}
				perm = perm[k:]
			}
			got, byIdent := storedPartition(rt, st, db, prefix)
			if !slices.EqualFunc(got, want, slices.Equal) {
				rt.Fatalf("arrival order %s: partition\n got %v\nwant %v", run, got, want)
			}
			// Every user_id and anonymous_id is linked to its profile.
			for id, pid := range byIdent {
				if typ, _ := splitIdent(id); (typ == UserID || typ == AnonymousID) && links.m[id] != pid {
					rt.Fatalf("arrival order %s: %s linked to %q, profile is %q", run, id, links.m[id], pid)
				}
			}
		}
	})
}

func partitionOf(res resolution, prefix string) [][]string {
	var out [][]string
	for _, p := range res.profiles {
		var ids []string
		for _, id := range p.idents {
			ids = append(ids, strip(id, prefix))
		}
		slices.Sort(ids)
		out = append(out, ids)
	}
	slices.SortFunc(out, func(a, b []string) int { return slices.Compare(a, b) })
	return out
}

// strip removes a case's prefix from an identifier's value (phone numbers
// carry the case number instead).
func strip(id, prefix string) string {
	typ, v := splitIdent(id)
	v = strings.TrimPrefix(v, prefix)
	if typ == Phone {
		v = v[len(v)-1:]
	}
	return typ + ":" + v
}

// phonePattern matches the phone identifiers of the case with prefix
// "cN-".
func phonePattern(prefix string) string {
	num, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(prefix, "c"), "-"))
	return fmt.Sprintf("phone:+49170%06d%%", num)
}

func storedPartition(rt *rapid.T, st *Store, db *statestore.DB, prefix string) ([][]string, map[string]string) {
	ctx := context.Background()
	rows, err := db.Query(ctx, `SELECT ident FROM identity_idents WHERE ident LIKE ? OR ident LIKE ? OR ident LIKE ? OR ident LIKE ?`,
		"user_id:"+prefix+"%", "anonymous_id:"+prefix+"%", "email:"+prefix+"%", phonePattern(prefix))
	if err != nil {
		rt.Fatal(err)
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rt.Fatal(err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	groups := map[string][]string{}
	byIdent := map[string]string{}
	for _, id := range ids {
		pid, err := st.profileOf(ctx, id)
		if errors.Is(err, ErrNotFound) {
			pid, err = "", nil
		}
		if err != nil {
			rt.Fatal(err)
		}
		byIdent[id] = pid
		if pid != "" {
			groups[pid] = append(groups[pid], strip(id, prefix))
		}
	}
	var out [][]string
	for _, g := range groups {
		slices.Sort(g)
		out = append(out, g)
	}
	slices.SortFunc(out, func(a, b []string) int { return slices.Compare(a, b) })
	return out, byIdent
}
