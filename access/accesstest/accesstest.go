// Package accesstest is the test suite of package access, run against any
// state store backend: by access's own tests on SQLite and by the backend
// contract suite (statestore/statetest).
package accesstest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"tandem/access"
	"tandem/statestore"
)

// Run runs the suite; open must return a new, empty database for each call.
func Run(t *testing.T, open func(t *testing.T) *statestore.DB) {
	t.Run("CreateUserValidation", func(t *testing.T) { t.Parallel(); testValidation(t, newStore(t, open)) })
	t.Run("Tokens", func(t *testing.T) { t.Parallel(); testTokens(t, open) })
	t.Run("Bootstrap", func(t *testing.T) { t.Parallel(); testBootstrap(t, newStore(t, open)) })
	t.Run("GetCountList", func(t *testing.T) { t.Parallel(); testGetCountList(t, newStore(t, open)) })
	t.Run("Concurrent", func(t *testing.T) { t.Parallel(); testConcurrent(t, newStore(t, open)) })
	t.Run("Secret", func(t *testing.T) { t.Parallel(); testSecret(t, newStore(t, open)) })
}

// testSecret: a secret is made once and then always the same; two names
// give two secrets.
func testSecret(t *testing.T, s *access.Store) {
	ctx := context.Background()
	a, err := s.Secret(ctx, "mask")
	if err != nil || len(a) != 32 {
		t.Fatalf("Secret: %x %v", a, err)
	}
	b, err := s.Secret(ctx, "mask")
	if err != nil || string(a) != string(b) {
		t.Errorf("second Secret: %x %v, want %x", b, err, a)
	}
	c, err := s.Secret(ctx, "other")
	if err != nil || string(c) == string(a) {
		t.Errorf("another name gave %x %v", c, err)
	}
}

func migrate(t *testing.T, db *statestore.DB) {
	t.Helper()
	// Twice: migrations are idempotent.
	for range 2 {
		if err := db.Migrate(context.Background(), access.Migrations()...); err != nil {
			t.Fatalf("Migrate: %v", err)
		}
	}
}

func newStore(t *testing.T, open func(t *testing.T) *statestore.DB) *access.Store {
	t.Helper()
	db := open(t)
	migrate(t, db)
	return access.NewStore(db)
}

func testValidation(t *testing.T, s *access.Store) {
	ctx := context.Background()
	for _, tc := range []struct {
		name      string
		user      string
		role      access.Role
		wantField string // "" for success
		wantName  string
	}{
		{"ok", "Ada Lovelace", access.RoleAdmin, "", "Ada Lovelace"},
		{"trimmed", "  Grace  ", access.RoleIT, "", "Grace"},
		{"unicode", "Jürgen Åström", access.RoleSales, "", "Jürgen Åström"},
		{"every role: marketing", "m", access.RoleMarketing, "", "m"},
		{"every role: analyst", "a", access.RoleAnalyst, "", "a"},
		{"every role: privacy", "p", access.RolePrivacy, "", "p"},
		{"every role: service", "svc", access.RoleService, "", "svc"},
		{"empty name", "", access.RoleAdmin, "name", ""},
		{"blank name", "  \t ", access.RoleAdmin, "name", ""},
		{"control character", "bad\nname", access.RoleAdmin, "name", ""},
		{"NUL", "bad\x00name", access.RoleAdmin, "name", ""},
		{"invalid UTF-8", "bad\xffname", access.RoleAdmin, "name", ""},
		{"too long", strings.Repeat("x", access.MaxNameLen+1), access.RoleAdmin, "name", ""},
		{"longest", strings.Repeat("é", access.MaxNameLen), access.RoleAdmin, "", strings.Repeat("é", access.MaxNameLen)},
		{"unknown role", "x", access.Role("superuser"), "role", ""},
		{"empty role", "x", access.Role(""), "role", ""},
		{"role in capitals", "x", access.Role("Admin"), "role", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, token, err := s.CreateUser(ctx, tc.user, tc.role)
			if tc.wantField != "" {
				var fe *access.FieldError
				if !errors.As(err, &fe) || fe.Field != tc.wantField {
					t.Fatalf("CreateUser: %v, want a FieldError for %q", err, tc.wantField)
				}
				if fe.Message == "" {
					t.Error("FieldError without a message")
				}
				return
			}
			if err != nil {
				t.Fatalf("CreateUser: %v", err)
			}
			if u.Name != tc.wantName || u.Role != tc.role || !strings.HasPrefix(u.ID, "usr_") || u.CreatedAt.IsZero() {
				t.Fatalf("CreateUser = %+v", u)
			}
			got, err := s.Authenticate(ctx, token)
			if err != nil || got != u {
				t.Fatalf("Authenticate = %+v, %v; want %+v", got, err, u)
			}
		})
	}
}

func testTokens(t *testing.T, open func(t *testing.T) *statestore.DB) {
	ctx := context.Background()
	db := open(t)
	migrate(t, db)
	s := access.NewStore(db)
	u, token, err := s.CreateUser(ctx, "Tess", access.RoleAnalyst)
	if err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	if !strings.HasPrefix(token, access.TokenPrefix) || len(token) < len(access.TokenPrefix)+43 {
		t.Fatalf("token %q: want prefix %q and at least 256 random bits", token, access.TokenPrefix)
	}
	_, token2, err := s.CreateUser(ctx, "Tess", access.RoleAnalyst)
	if err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	if token2 == token {
		t.Fatal("two users got the same token")
	}

	// Only a SHA-256 hash of the token is stored.
	sum := sha256.Sum256([]byte(token))
	var n int
	if err := db.QueryRow(ctx, `SELECT COUNT(*) FROM access_tokens WHERE token_hash = ? AND user_id = ?`,
		hex.EncodeToString(sum[:]), u.ID).Scan(&n); err != nil || n != 1 {
		t.Fatalf("token hash rows = %d, %v; want 1", n, err)
	}
	for _, q := range []string{
		`SELECT COUNT(*) FROM access_tokens WHERE token_hash = ? OR user_id = ?`,
		`SELECT COUNT(*) FROM access_users WHERE name = ? OR id = ? OR role = ?`,
	} {
		if err := db.QueryRow(ctx, q, token, token, token).Scan(&n); err == nil && n != 0 {
			t.Fatalf("the token is stored in plain text (%s)", q)
		}
	}

	for _, tc := range []struct {
		name  string
		token string
		ok    bool
	}{
		{"right", token, true},
		{"empty", "", false},
		{"prefix only", access.TokenPrefix, false},
		{"wrong", access.TokenPrefix + strings.Repeat("a", 52), false},
		{"extra byte", token + "a", false},
		{"one short", token[:len(token)-1], false},
		{"upper case", strings.ToUpper(token), false},
		{"with Bearer", "Bearer " + token, false},
		{"huge", strings.Repeat("x", 1<<20), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.Authenticate(ctx, tc.token)
			if tc.ok {
				if err != nil || got.ID != u.ID {
					t.Fatalf("Authenticate = %+v, %v; want %s", got, err, u.ID)
				}
				return
			}
			if !errors.Is(err, access.ErrUnauthenticated) || got != (access.User{}) {
				t.Fatalf("Authenticate = %+v, %v; want ErrUnauthenticated", got, err)
			}
		})
	}

	// A database failure is not reported as a bad token.
	db.Close()
	if _, err := s.Authenticate(ctx, token); err == nil || errors.Is(err, access.ErrUnauthenticated) {
		t.Fatalf("Authenticate on a closed database: %v, want an error other than ErrUnauthenticated", err)
	}
}

func testBootstrap(t *testing.T, s *access.Store) {
	ctx := context.Background()
	if n, err := s.CountUsers(ctx); err != nil || n != 0 {
		t.Fatalf("CountUsers on a new store = %d, %v; want 0", n, err)
	}
	const adminToken = "s3cret-admin-token-from-env"
	admin, err := s.CreateUserWithToken(ctx, "admin", access.RoleAdmin, adminToken)
	if err != nil {
		t.Fatalf("CreateUserWithToken: %v", err)
	}
	if got, err := s.Authenticate(ctx, adminToken); err != nil || got != admin {
		t.Fatalf("Authenticate(admin token) = %+v, %v; want %+v", got, err, admin)
	}
	if n, err := s.CountUsers(ctx); err != nil || n != 1 {
		t.Fatalf("CountUsers = %d, %v; want 1", n, err)
	}
	// The same token for another user is a conflict, and creates no user.
	if _, err := s.CreateUserWithToken(ctx, "other", access.RoleIT, adminToken); !errors.Is(err, statestore.ErrConflict) {
		t.Fatalf("CreateUserWithToken with a used token: %v, want ErrConflict", err)
	}
	if n, err := s.CountUsers(ctx); err != nil || n != 1 {
		t.Fatalf("CountUsers after the conflict = %d, %v; want 1", n, err)
	}
	for _, tc := range []struct {
		name, token, field string
	}{
		{"empty", "", "token"},
		{"space", "has space", "token"},
		{"newline", "abc\n", "token"},
		{"non-ASCII", "tökén", "token"},
		{"too long", strings.Repeat("t", access.MaxTokenLen+1), "token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.CreateUserWithToken(ctx, "x", access.RoleAdmin, tc.token)
			var fe *access.FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field {
				t.Fatalf("CreateUserWithToken(%q): %v, want a FieldError for %q", tc.token, err, tc.field)
			}
		})
	}
	if _, err := s.CreateUserWithToken(ctx, "", access.RoleAdmin, "fine-token"); err == nil {
		t.Fatal("CreateUserWithToken accepted an empty name")
	}
}

func testGetCountList(t *testing.T, s *access.Store) {
	ctx := context.Background()
	var created []access.User
	for i := range 7 {
		u, _, err := s.CreateUser(ctx, fmt.Sprintf("user %d", i), access.Roles[i%len(access.Roles)])
		if err != nil {
			t.Fatalf("CreateUser: %v", err)
		}
		created = append(created, u)
	}
	if n, err := s.CountUsers(ctx); err != nil || n != 7 {
		t.Fatalf("CountUsers = %d, %v; want 7", n, err)
	}
	for _, u := range created {
		got, err := s.GetUser(ctx, u.ID)
		if err != nil || got != u {
			t.Fatalf("GetUser(%s) = %+v, %v; want %+v", u.ID, got, err, u)
		}
	}
	if _, err := s.GetUser(ctx, "usr_missing"); !errors.Is(err, statestore.ErrNotFound) {
		t.Fatalf("GetUser(missing): %v, want ErrNotFound", err)
	}

	for _, limit := range []int{1, 3, 6, 7, 8, 0, -1, 5000} {
		t.Run(fmt.Sprintf("limit %d", limit), func(t *testing.T) {
			var all []access.User
			cursor := ""
			pages := 0
			for {
				page, next, err := s.ListUsers(ctx, limit, cursor)
				if err != nil {
					t.Fatalf("ListUsers: %v", err)
				}
				pages++
				if want := statestore.Limit(limit); len(page) > want {
					t.Fatalf("page of %d, limit %d", len(page), want)
				}
				all = append(all, page...)
				if next == "" {
					break
				}
				if pages > 10 {
					t.Fatal("pagination does not end")
				}
				cursor = next
			}
			if len(all) != len(created) {
				t.Fatalf("listed %d users, want %d", len(all), len(created))
			}
			ids := map[string]bool{}
			for _, u := range all {
				ids[u.ID] = true
			}
			for _, u := range created {
				if !ids[u.ID] {
					t.Errorf("user %s not listed", u.ID)
				}
			}
		})
	}
	for _, bad := range []string{"garbage", "eyJ4IjoxfQ", "W10"} {
		_, _, err := s.ListUsers(ctx, 10, bad)
		var fe *access.FieldError
		if !errors.As(err, &fe) || fe.Field != "cursor" || !errors.Is(err, statestore.ErrBadCursor) {
			t.Errorf("ListUsers(cursor %q): %v, want a FieldError for cursor", bad, err)
		}
	}
}

func testConcurrent(t *testing.T, s *access.Store) {
	ctx := context.Background()
	var wg sync.WaitGroup
	var mu sync.Mutex
	tokens := map[string]string{}
	for w := range 4 {
		wg.Go(func() {
			for i := range 10 {
				u, token, err := s.CreateUser(ctx, fmt.Sprintf("w%d-%d", w, i), access.RoleService)
				if err != nil {
					t.Errorf("CreateUser: %v", err)
					return
				}
				mu.Lock()
				tokens[token] = u.ID
				mu.Unlock()
				if _, err := s.Authenticate(ctx, token); err != nil {
					t.Errorf("Authenticate: %v", err)
				}
			}
		})
	}
	wg.Wait()
	if n, err := s.CountUsers(ctx); err != nil || n != 40 || len(tokens) != 40 {
		t.Fatalf("CountUsers = %d, %v, %d distinct tokens; want 40", n, err, len(tokens))
	}
}
