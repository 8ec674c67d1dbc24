// Package governancetest is the test suite of package governance, run
// against any state store backend: by governance's own tests on SQLite and
// by the backend contract suite (statestore/statetest).
package governancetest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"tandem/access"
	"tandem/governance"
	"tandem/statestore"
)

// Run runs the suite; open must return a new, empty database for each call.
func Run(t *testing.T, open func(t *testing.T) *statestore.DB) {
	t.Run("CreateValidation", func(t *testing.T) { t.Parallel(); testValidation(t, newEnv(t, open)) })
	t.Run("CreateApproval", func(t *testing.T) { t.Parallel(); testCreateApproval(t, newEnv(t, open)) })
	t.Run("UniqueName", func(t *testing.T) { t.Parallel(); testUniqueName(t, newEnv(t, open)) })
	t.Run("WriteKeys", func(t *testing.T) { t.Parallel(); testWriteKeys(t, newEnv(t, open)) })
	t.Run("GetList", func(t *testing.T) { t.Parallel(); testGetList(t, newEnv(t, open)) })
	t.Run("Decide", func(t *testing.T) { t.Parallel(); testDecide(t, newEnv(t, open)) })
	t.Run("Destinations", func(t *testing.T) { t.Parallel(); testDestinations(t, newEnv(t, open)) })
	t.Run("DestinationValidation", func(t *testing.T) { t.Parallel(); testDestinationValidation(t, newEnv(t, open)) })
	t.Run("AllowedOrigins", func(t *testing.T) { t.Parallel(); testAllowedOrigins(t, newEnv(t, open)) })
	t.Run("SourceByRef", func(t *testing.T) { t.Parallel(); testSourceByRef(t, newEnv(t, open)) })
	t.Run("WriteKeyCache", func(t *testing.T) { t.Parallel(); testWriteKeyCache(t, newEnv(t, open)) })
}

// testSourceByRef: a source is found by its id or its name, in any case.
func testSourceByRef(t *testing.T, e *env) {
	ctx := context.Background()
	src, _, err := e.s.CreateSource(ctx, valid("Call Centre"), e.users[access.RoleAdmin])
	if err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{src.ID, "Call Centre", "call centre", " CALL CENTRE "} {
		got, err := e.s.SourceByRef(ctx, ref)
		if err != nil || got.ID != src.ID {
			t.Errorf("SourceByRef(%q) = %s, %v; want %s", ref, got.ID, err, src.ID)
		}
	}
	for _, ref := range []string{"", "call", "src_nope"} {
		if _, err := e.s.SourceByRef(ctx, ref); !errors.Is(err, statestore.ErrNotFound) {
			t.Errorf("SourceByRef(%q): %v, want ErrNotFound", ref, err)
		}
	}
}

// testWriteKeyCache: a decision takes effect at once for lookups through
// the Store that made it, and within the cache's lifetime for another
// node's Store over the same database.
func testWriteKeyCache(t *testing.T, e *env) {
	ctx := context.Background()
	other := governance.NewStore(e.db) // a second node
	const ttl = 300 * time.Millisecond
	other.SetWriteKeyTTL(ttl)
	src, key, err := e.s.CreateSource(ctx, valid("shop"), e.users[access.RoleIT])
	if err != nil {
		t.Fatal(err)
	}
	approval := func(s *governance.Store) string {
		t.Helper()
		got, err := s.LookupWriteKey(ctx, key)
		if err != nil {
			t.Fatalf("LookupWriteKey: %v", err)
		}
		return got.Approval
	}
	if a, b := approval(e.s), approval(other); a != governance.Pending || b != governance.Pending {
		t.Fatalf("new source: %s on its node, %s on the other; want pending", a, b)
	}
	for _, step := range []struct{ decision, want string }{{governance.Approve, governance.Approved}, {governance.Reject, governance.Rejected}} {
		if _, err := e.s.Decide(ctx, src.ID, step.decision, "", e.users[access.RoleAdmin]); err != nil {
			t.Fatal(err)
		}
		if got := approval(e.s); got != step.want {
			t.Errorf("after %s, the deciding node sees %s; want %s at once", step.decision, got, step.want)
		}
		time.Sleep(ttl + 50*time.Millisecond)
		if got := approval(other); got != step.want {
			t.Errorf("after %s and the cache's lifetime, the other node sees %s; want %s", step.decision, got, step.want)
		}
	}
	if _, err := e.s.LookupWriteKey(ctx, governance.WriteKeyPrefix+"nope"); !errors.Is(err, governance.ErrUnknownKey) {
		t.Errorf("unknown key: %v", err)
	}
}

type env struct {
	db    *statestore.DB
	s     *governance.Store
	users map[access.Role]access.User
}

func newEnv(t *testing.T, open func(t *testing.T) *statestore.DB) *env {
	t.Helper()
	ctx := context.Background()
	db := open(t)
	for range 2 { // migrations are idempotent
		if err := db.Migrate(ctx, append(append(access.Migrations(), governance.Migrations()...), governance.DestinationMigrations()...)...); err != nil {
			t.Fatalf("Migrate: %v", err)
		}
	}
	users := access.NewStore(db)
	e := &env{db: db, s: governance.NewStore(db), users: map[access.Role]access.User{}}
	e.s.SetDestinationTypes(testTypes{})
	for _, r := range access.Roles {
		u, _, err := users.CreateUser(ctx, "user "+string(r), r)
		if err != nil {
			t.Fatalf("CreateUser: %v", err)
		}
		e.users[r] = u
	}
	return e
}

func valid(name string) governance.Source {
	return governance.Source{
		Name:           name,
		Kind:           "web",
		Owner:          "Marketing",
		Purpose:        "Product analytics for the shop",
		DataCategories: []string{"behavioural", "contact"},
		MonthlyCost:    120.5,
	}
}

func testValidation(t *testing.T, e *env) {
	ctx := context.Background()
	admin := e.users[access.RoleAdmin]
	for _, tc := range []struct {
		name   string
		edit   func(s *governance.Source)
		field  string // "" for success
		verify func(t *testing.T, s governance.Source)
	}{
		{"ok", func(s *governance.Source) {}, "", nil},
		{"trimmed", func(s *governance.Source) {
			s.Name, s.Kind, s.Owner, s.Purpose = "  Trimmed  ", " web ", " IT ", " why "
		}, "", func(t *testing.T, s governance.Source) {
			if s.Name != "Trimmed" || s.Kind != "web" || s.Owner != "IT" || s.Purpose != "why" {
				t.Errorf("not trimmed: %+v", s)
			}
		}},
		{"server fields ignored", func(s *governance.Source) {
			s.ID, s.Approval, s.CreatedBy = "src_mine", governance.Rejected, "someone"
		}, "", func(t *testing.T, s governance.Source) {
			if s.ID == "src_mine" || s.Approval != governance.Approved || s.CreatedBy != admin.ID {
				t.Errorf("server-set fields taken from input: %+v", s)
			}
		}},
		{"no purpose, categories or cost", func(s *governance.Source) {
			s.Purpose, s.DataCategories, s.MonthlyCost = "", nil, 0
		}, "", func(t *testing.T, s governance.Source) {
			if s.DataCategories == nil || len(s.DataCategories) != 0 {
				t.Errorf("DataCategories = %#v, want empty, not nil", s.DataCategories)
			}
		}},
		{"categories trimmed and deduplicated", func(s *governance.Source) {
			s.DataCategories = []string{" contact", "contact ", "payment", "contact"}
		}, "", func(t *testing.T, s governance.Source) {
			if !slices.Equal(s.DataCategories, []string{"contact", "payment"}) {
				t.Errorf("DataCategories = %q", s.DataCategories)
			}
		}},
		{"multi-line purpose", func(s *governance.Source) { s.Purpose = "line 1\nline 2" }, "", nil},
		{"no name", func(s *governance.Source) { s.Name = "" }, "name", nil},
		{"blank name", func(s *governance.Source) { s.Name = "   " }, "name", nil},
		{"name with newline", func(s *governance.Source) { s.Name = "a\nb" }, "name", nil},
		{"long name", func(s *governance.Source) { s.Name = strings.Repeat("n", governance.MaxNameLen+1) }, "name", nil},
		{"no kind", func(s *governance.Source) { s.Kind = "" }, "kind", nil},
		{"no owner", func(s *governance.Source) { s.Owner = " " }, "owner", nil},
		{"long owner", func(s *governance.Source) { s.Owner = strings.Repeat("o", governance.MaxOwnerLen+1) }, "owner", nil},
		{"purpose with NUL", func(s *governance.Source) { s.Purpose = "a\x00b" }, "purpose", nil},
		{"long purpose", func(s *governance.Source) { s.Purpose = strings.Repeat("p", governance.MaxPurposeLen+1) }, "purpose", nil},
		{"negative cost", func(s *governance.Source) { s.MonthlyCost = -0.01 }, "monthlyCost", nil},
		{"NaN cost", func(s *governance.Source) { s.MonthlyCost = math.NaN() }, "monthlyCost", nil},
		{"infinite cost", func(s *governance.Source) { s.MonthlyCost = math.Inf(1) }, "monthlyCost", nil},
		{"empty category", func(s *governance.Source) { s.DataCategories = []string{"contact", " "} }, "dataCategories", nil},
		{"category with control", func(s *governance.Source) { s.DataCategories = []string{"a\tb"} }, "dataCategories", nil},
		{"too many categories", func(s *governance.Source) {
			s.DataCategories = make([]string, governance.MaxDataCategories+1)
			for i := range s.DataCategories {
				s.DataCategories[i] = fmt.Sprint("c", i)
			}
		}, "dataCategories", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := valid("source " + tc.name)
			tc.edit(&in)
			got, key, err := e.s.CreateSource(ctx, in, admin)
			if tc.field != "" {
				var fe *governance.FieldError
				if !errors.As(err, &fe) || fe.Field != tc.field || fe.Message == "" {
					t.Fatalf("CreateSource: %v, want a FieldError for %q", err, tc.field)
				}
				return
			}
			if err != nil {
				t.Fatalf("CreateSource: %v", err)
			}
			if !strings.HasPrefix(got.ID, "src_") || key == "" || got.CreatedAt.IsZero() || got.CreatedBy != admin.ID {
				t.Fatalf("CreateSource = %+v, %q", got, key)
			}
			stored, err := e.s.GetSource(ctx, got.ID)
			if err != nil {
				t.Fatalf("GetSource: %v", err)
			}
			if !equal(stored, got) {
				t.Fatalf("GetSource = %+v, want %+v", stored, got)
			}
			if tc.verify != nil {
				tc.verify(t, got)
			}
		})
	}
}

func equal(a, b governance.Source) bool {
	return a.ID == b.ID && a.Name == b.Name && a.Kind == b.Kind && a.Owner == b.Owner &&
		a.Purpose == b.Purpose && slices.Equal(a.DataCategories, b.DataCategories) &&
		a.MonthlyCost == b.MonthlyCost && a.Approval == b.Approval && a.CreatedAt.Equal(b.CreatedAt) &&
		a.CreatedBy == b.CreatedBy && slices.Equal(a.AllowedOrigins, b.AllowedOrigins)
}

func origins(list []string) governance.SourcePatch {
	return governance.SourcePatch{AllowedOrigins: &list}
}

func testCreateApproval(t *testing.T, e *env) {
	ctx := context.Background()
	for _, tc := range []struct {
		role      access.Role
		approval  string // "" when forbidden
		forbidden bool
	}{
		{access.RoleAdmin, governance.Approved, false},
		{access.RoleIT, governance.Pending, false},
		{access.RoleMarketing, governance.Pending, false},
		{access.RoleAnalyst, "", true},
		{access.RolePrivacy, "", true},
		{access.RoleService, "", true},
		{access.RoleSales, "", true},
		{access.Role("nobody"), "", true},
	} {
		t.Run(string(tc.role), func(t *testing.T) {
			by := e.users[tc.role]
			if tc.role == "nobody" {
				by = access.User{ID: "usr_x", Name: "x", Role: tc.role}
			}
			got, _, err := e.s.CreateSource(ctx, valid("by "+string(tc.role)), by)
			if tc.forbidden {
				if !errors.Is(err, governance.ErrForbidden) {
					t.Fatalf("CreateSource by %s: %v, want ErrForbidden", tc.role, err)
				}
				return
			}
			if err != nil || got.Approval != tc.approval {
				t.Fatalf("CreateSource by %s = %q, %v; want approval %q", tc.role, got.Approval, err, tc.approval)
			}
		})
	}
}

func testUniqueName(t *testing.T, e *env) {
	ctx := context.Background()
	admin := e.users[access.RoleAdmin]
	if _, _, err := e.s.CreateSource(ctx, valid("Web Shop"), admin); err != nil {
		t.Fatalf("CreateSource: %v", err)
	}
	for _, name := range []string{"Web Shop", "web shop", " WEB SHOP "} {
		if _, _, err := e.s.CreateSource(ctx, valid(name), e.users[access.RoleIT]); !errors.Is(err, statestore.ErrConflict) {
			t.Errorf("CreateSource(%q) after %q: %v, want ErrConflict", name, "Web Shop", err)
		}
	}
	if _, _, err := e.s.CreateSource(ctx, valid("Web Shop 2"), admin); err != nil {
		t.Fatalf("CreateSource(another name): %v", err)
	}
	if _, next, err := e.s.ListSources(ctx, 10, ""); err != nil || next != "" {
		t.Fatalf("ListSources: %v", err)
	}
	// Concurrent creators of one name: exactly one wins.
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins, conflicts := 0, 0
	for range 6 {
		wg.Go(func() {
			_, _, err := e.s.CreateSource(ctx, valid("Race"), admin)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				wins++
			case errors.Is(err, statestore.ErrConflict):
				conflicts++
			default:
				t.Errorf("CreateSource: %v", err)
			}
		})
	}
	wg.Wait()
	if wins != 1 || conflicts != 5 {
		t.Fatalf("%d wins, %d conflicts; want 1 and 5", wins, conflicts)
	}
}

func testWriteKeys(t *testing.T, e *env) {
	ctx := context.Background()
	src, key, err := e.s.CreateSource(ctx, valid("Keyed"), e.users[access.RoleIT])
	if err != nil {
		t.Fatalf("CreateSource: %v", err)
	}
	other, otherKey, err := e.s.CreateSource(ctx, valid("Other"), e.users[access.RoleAdmin])
	if err != nil {
		t.Fatalf("CreateSource: %v", err)
	}
	if !strings.HasPrefix(key, governance.WriteKeyPrefix) || len(key) < len(governance.WriteKeyPrefix)+43 || key == otherKey {
		t.Fatalf("write keys %q, %q: want prefix %q, 256 random bits, distinct", key, otherKey, governance.WriteKeyPrefix)
	}
	// Only the hash is stored.
	sum := sha256.Sum256([]byte(key))
	var n int
	if err := e.db.QueryRow(ctx, `SELECT COUNT(*) FROM governance_write_keys WHERE key_hash = ? AND source_id = ?`,
		hex.EncodeToString(sum[:]), src.ID).Scan(&n); err != nil || n != 1 {
		t.Fatalf("write key hash rows = %d, %v; want 1", n, err)
	}
	if err := e.db.QueryRow(ctx, `SELECT COUNT(*) FROM governance_write_keys WHERE key_hash = ?`, key).Scan(&n); err != nil || n != 0 {
		t.Fatalf("the write key is stored in plain text")
	}

	for _, tc := range []struct {
		name string
		key  string
		want string // source id, "" for ErrUnknownKey
	}{
		{"key", key, src.ID},
		{"other key", otherKey, other.ID},
		{"empty", "", ""},
		{"prefix", governance.WriteKeyPrefix, ""},
		{"truncated", key[:len(key)-1], ""},
		{"extended", key + "x", ""},
		{"upper case", strings.ToUpper(key), ""},
		{"huge", strings.Repeat("k", 1<<16), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := e.s.SourceByWriteKey(ctx, tc.key)
			if tc.want == "" {
				if !errors.Is(err, governance.ErrUnknownKey) {
					t.Fatalf("SourceByWriteKey: %+v, %v; want ErrUnknownKey", got, err)
				}
				return
			}
			if err != nil || got.ID != tc.want {
				t.Fatalf("SourceByWriteKey = %s, %v; want %s", got.ID, err, tc.want)
			}
		})
	}
	// The key reports the current approval state.
	got, err := e.s.SourceByWriteKey(ctx, key)
	if err != nil || got.Approval != governance.Pending {
		t.Fatalf("SourceByWriteKey = %q, %v; want pending", got.Approval, err)
	}
	if _, err := e.s.Decide(ctx, src.ID, governance.Approve, "ok", e.users[access.RoleAdmin]); err != nil {
		t.Fatalf("Decide: %v", err)
	}
	if got, err := e.s.SourceByWriteKey(ctx, key); err != nil || got.Approval != governance.Approved || !equal(got, mustGet(t, e, src.ID)) {
		t.Fatalf("SourceByWriteKey after approval = %+v, %v", got, err)
	}
}

func mustGet(t *testing.T, e *env, id string) governance.Source {
	t.Helper()
	s, err := e.s.GetSource(context.Background(), id)
	if err != nil {
		t.Fatalf("GetSource: %v", err)
	}
	return s
}

func testGetList(t *testing.T, e *env) {
	ctx := context.Background()
	if _, err := e.s.GetSource(ctx, "src_missing"); !errors.Is(err, statestore.ErrNotFound) {
		t.Fatalf("GetSource(missing): %v, want ErrNotFound", err)
	}
	if got, next, err := e.s.ListSources(ctx, 10, ""); err != nil || len(got) != 0 || got == nil || next != "" {
		t.Fatalf("ListSources on an empty store = %v, %q, %v; want [] (not nil)", got, next, err)
	}
	var created []governance.Source
	for i := range 9 {
		s, _, err := e.s.CreateSource(ctx, valid(fmt.Sprint("list ", i)), e.users[access.RoleAdmin])
		if err != nil {
			t.Fatalf("CreateSource: %v", err)
		}
		created = append(created, s)
	}
	for _, limit := range []int{1, 2, 4, 9, 10, 0} {
		t.Run(fmt.Sprint("limit ", limit), func(t *testing.T) {
			var all []governance.Source
			cursor := ""
			for range 20 {
				page, next, err := e.s.ListSources(ctx, limit, cursor)
				if err != nil {
					t.Fatalf("ListSources: %v", err)
				}
				all = append(all, page...)
				if next == "" {
					break
				}
				cursor = next
			}
			if len(all) != len(created) {
				t.Fatalf("listed %d, want %d", len(all), len(created))
			}
			seen := map[string]bool{}
			for _, s := range all {
				if seen[s.ID] {
					t.Fatalf("source %s listed twice", s.ID)
				}
				seen[s.ID] = true
			}
		})
	}
	if _, _, err := e.s.ListSources(ctx, 5, "not-a-cursor"); !errors.Is(err, statestore.ErrBadCursor) {
		t.Fatalf("ListSources(bad cursor): %v, want ErrBadCursor", err)
	}
}

func testDecide(t *testing.T, e *env) {
	ctx := context.Background()
	it := e.users[access.RoleIT]
	admin := e.users[access.RoleAdmin]
	src, _, err := e.s.CreateSource(ctx, valid("Decided"), it)
	if err != nil {
		t.Fatalf("CreateSource: %v", err)
	}
	if ds, err := e.s.ListDecisions(ctx, src.ID); err != nil || len(ds) != 0 || ds == nil {
		t.Fatalf("ListDecisions before any = %v, %v; want []", ds, err)
	}
	steps := []struct {
		name     string
		id       string
		decision string
		comment  string
		by       access.User
		want     string // approval after; "" when an error is expected
		field    string
		errIs    error
	}{
		{"bad decision", src.ID, "maybe", "", admin, "", "decision", nil},
		{"suspend is not a decision", src.ID, "suspend", "", admin, "", "decision", nil},
		{"comment too long", src.ID, governance.Approve, strings.Repeat("c", governance.MaxCommentLen+1), admin, "", "comment", nil},
		{"comment with NUL", src.ID, governance.Approve, "a\x00", admin, "", "comment", nil},
		{"analyst may not", src.ID, governance.Approve, "", e.users[access.RoleAnalyst], "", "", governance.ErrForbidden},
		{"marketing may not", src.ID, governance.Approve, "", e.users[access.RoleMarketing], "", "", governance.ErrForbidden},
		{"unknown source", "src_missing", governance.Approve, "", admin, "", "", statestore.ErrNotFound},
		{"approve", src.ID, governance.Approve, "  looks fine  ", it, governance.Approved, "", nil},
		{"reject later", src.ID, governance.Reject, "vendor lost its certification", admin, governance.Rejected, "", nil},
		{"reject again", src.ID, governance.Reject, "", admin, governance.Rejected, "", nil},
		{"approve again", src.ID, governance.Approve, "re-certified", admin, governance.Approved, "", nil},
	}
	var want []governance.Decision
	from := governance.Pending
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			got, err := e.s.Decide(ctx, st.id, st.decision, st.comment, st.by)
			switch {
			case st.field != "":
				var fe *governance.FieldError
				if !errors.As(err, &fe) || fe.Field != st.field {
					t.Fatalf("Decide: %v, want a FieldError for %q", err, st.field)
				}
				return
			case st.errIs != nil:
				if !errors.Is(err, st.errIs) {
					t.Fatalf("Decide: %v, want %v", err, st.errIs)
				}
				return
			}
			if err != nil || got.Approval != st.want || got.ID != st.id {
				t.Fatalf("Decide = %+v, %v; want approval %q", got, err, st.want)
			}
			if stored := mustGet(t, e, st.id); stored.Approval != st.want {
				t.Fatalf("stored approval %q, want %q", stored.Approval, st.want)
			}
			want = append(want, governance.Decision{SourceID: st.id, Decision: st.decision,
				Comment: strings.TrimSpace(st.comment), From: from, To: st.want, By: st.by.ID, ByName: st.by.Name})
			from = st.want
		})
	}
	got, err := e.s.ListDecisions(ctx, src.ID)
	if err != nil {
		t.Fatalf("ListDecisions: %v", err)
	}
	if len(got) != len(want) {
		t.Fatalf("ListDecisions: %d decisions, want %d: %+v", len(got), len(want), got)
	}
	for i := range got {
		g := got[i]
		if g.ID == "" || g.DecidedAt.IsZero() || (i > 0 && g.DecidedAt.Before(got[i-1].DecidedAt)) {
			t.Errorf("decision %d: id %q, at %v", i, g.ID, g.DecidedAt)
		}
		g.ID, g.DecidedAt = "", want[i].DecidedAt
		if g != want[i] {
			t.Errorf("decision %d = %+v, want %+v", i, g, want[i])
		}
	}
	if _, err := e.s.ListDecisions(ctx, "src_missing"); !errors.Is(err, statestore.ErrNotFound) {
		t.Fatalf("ListDecisions(missing): %v, want ErrNotFound", err)
	}
	// Decisions on one source do not show on another.
	other, _, err := e.s.CreateSource(ctx, valid("Undecided"), it)
	if err != nil {
		t.Fatalf("CreateSource: %v", err)
	}
	if ds, err := e.s.ListDecisions(ctx, other.ID); err != nil || len(ds) != 0 {
		t.Fatalf("ListDecisions(other) = %v, %v; want none", ds, err)
	}
}

func testAllowedOrigins(t *testing.T, e *env) {
	ctx := context.Background()
	admin := e.users[access.RoleAdmin]
	src := valid("shop web")
	src.AllowedOrigins = []string{" https://Shop.example.com/ ", "https://*.example.org", "https://shop.example.com", "http://localhost:3000"}
	got, key, err := e.s.CreateSource(ctx, src, admin)
	if err != nil {
		t.Fatalf("CreateSource: %v", err)
	}
	want := []string{"https://shop.example.com", "https://*.example.org", "http://localhost:3000"}
	if !slices.Equal(got.AllowedOrigins, want) {
		t.Fatalf("created with %q, want %q (normalized, no duplicates)", got.AllowedOrigins, want)
	}
	if by, err := e.s.SourceByWriteKey(ctx, key); err != nil || !slices.Equal(by.AllowedOrigins, want) {
		t.Fatalf("SourceByWriteKey: %v %q", err, by.AllowedOrigins)
	}
	if plain, _, err := e.s.CreateSource(ctx, valid("no origins"), admin); err != nil || plain.AllowedOrigins == nil || len(plain.AllowedOrigins) != 0 {
		t.Fatalf("a source without allowed origins: %v %#v", err, plain.AllowedOrigins)
	}
	for _, bad := range [][]string{
		{"shop.example.com"}, {"ftp://shop.example.com"}, {"https://shop.example.com/path"}, {"https://"},
		{"https://a.example.com:x"}, {"https://user@shop.example.com"}, {"https://*"},
		slices.Repeat([]string{"https://a.example.com"}, governance.MaxAllowedOrigins+1),
	} {
		s := valid("bad origins")
		s.AllowedOrigins = bad
		_, _, err := e.s.CreateSource(ctx, s, admin)
		var fe *governance.FieldError
		if !errors.As(err, &fe) || fe.Field != "allowedOrigins" {
			t.Errorf("CreateSource with %.60q: %v, want a field error for allowedOrigins", bad, err)
		}
		if _, err := e.s.UpdateSource(ctx, got.ID, origins(bad), admin); !errors.As(err, &fe) || fe.Field != "allowedOrigins" {
			t.Errorf("UpdateSource origins %.60q: %v", bad, err)
		}
	}
	up, err := e.s.UpdateSource(ctx, got.ID, origins([]string{"https://new.example.com"}), admin)
	if err != nil || !slices.Equal(up.AllowedOrigins, []string{"https://new.example.com"}) {
		t.Fatalf("UpdateSource origins: %v %q", err, up.AllowedOrigins)
	}
	if g := mustGet(t, e, got.ID); !slices.Equal(g.AllowedOrigins, []string{"https://new.example.com"}) || g.Approval != got.Approval {
		t.Errorf("after UpdateSource origins: %+v", g)
	}
	if up, err = e.s.UpdateSource(ctx, got.ID, origins(nil), admin); err != nil || len(up.AllowedOrigins) != 0 {
		t.Errorf("clearing: %v %q", err, up.AllowedOrigins)
	}
	if _, err := e.s.UpdateSource(ctx, "src_nope", origins(nil), admin); !errors.Is(err, statestore.ErrNotFound) {
		t.Errorf("unknown source: %v", err)
	}
	if _, err := e.s.UpdateSource(ctx, got.ID, origins(nil), e.users[access.RoleAnalyst]); !errors.Is(err, governance.ErrForbidden) {
		t.Errorf("analyst: %v, want forbidden", err)
	}
	cats := []string{" contact ", "behavioural", "contact"}
	up, err = e.s.UpdateSource(ctx, got.ID, governance.SourcePatch{DataCategories: &cats}, e.users[access.RoleMarketing])
	if err != nil || !slices.Equal(up.DataCategories, []string{"contact", "behavioural"}) || len(up.AllowedOrigins) != 0 {
		t.Errorf("UpdateSource data categories: %v %+v", err, up)
	}
	bad := []string{""}
	if _, err := e.s.UpdateSource(ctx, got.ID, governance.SourcePatch{DataCategories: &bad}, admin); !errors.As(err, new(*governance.FieldError)) {
		t.Errorf("UpdateSource with an empty category: %v", err)
	}
}
