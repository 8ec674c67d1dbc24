package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"tandem/access"
	"tandem/event"
	"tandem/eventstore/duckdb"
	"tandem/identity"
	"tandem/statestore/sqlite/sqlitetest"
)

// recorder is an Auditor that keeps what it was told, or fails.
type recorder struct {
	mu   sync.Mutex
	got  []ProfileAccess
	fail bool
}

func (r *recorder) ProfileAccess(_ context.Context, a ProfileAccess) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail {
		return errors.New("audit log unavailable")
	}
	r.got = append(r.got, a)
	return nil
}

func (r *recorder) take() []ProfileAccess {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.got
	r.got = nil
	return out
}

// TestProfileReadsAreAudited: every profile read and change is told to
// the Auditor with who read whom, before the answer; a read the Auditor
// cannot record is refused; a caller without the permission is refused
// before anything is read.
func TestProfileReadsAreAudited(t *testing.T) {
	ctx := context.Background()
	db := sqlitetest.Open(t)
	if err := db.Migrate(ctx, append(access.Migrations(), identity.Migrations()...)...); err != nil {
		t.Fatal(err)
	}
	events, err := duckdb.Open(filepath.Join(t.TempDir(), "events.duckdb"))
	if err != nil {
		t.Fatal(err)
	}
	defer events.Close()
	ids, err := identity.NewStore(ctx, db, identity.Options{Rules: identity.DefaultRules(), Links: events})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)
	batch := []event.Event{
		{SourceID: "web", MessageID: "m1", Type: "page", AnonymousID: "a1", Timestamp: t0, Raw: []byte(`{"type":"page","anonymousId":"a1"}`)},
		{SourceID: "web", MessageID: "m2", Type: "identify", UserID: "u1", AnonymousID: "a1", Timestamp: t0.Add(time.Minute),
			Raw: []byte(`{"type":"identify","userId":"u1","anonymousId":"a1","traits":{"email":"ann@example.com"}}`)},
	}
	if err := ids.Resolve(ctx, batch); err != nil {
		t.Fatal(err)
	}
	if _, err := events.Append(ctx, batch); err != nil {
		t.Fatal(err)
	}
	acc := access.NewStore(db)
	privacy, privacyToken, err := acc.CreateUser(ctx, "pat", access.RolePrivacy)
	if err != nil {
		t.Fatal(err)
	}
	_, itToken, err := acc.CreateUser(ctx, "ivan", access.RoleIT)
	if err != nil {
		t.Fatal(err)
	}
	audit := &recorder{}
	srv := httptest.NewServer(New(Options{Access: acc, Events: events, Identity: ids, Auditor: audit}))
	defer srv.Close()
	get := func(token, path string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body
	}

	status, p := get(privacyToken, "/api/v1/profiles/lookup?identifier=email:Ann@Example.com")
	if status != 200 {
		t.Fatalf("lookup: %d %v", status, p)
	}
	id := p["id"].(string)
	for _, path := range []string{"/api/v1/profiles/" + id, "/api/v1/profiles/" + id + "/events", "/api/v1/profiles/" + id + "/explain"} {
		if status, body := get(privacyToken, path); status != 200 {
			t.Fatalf("%s: %d %v", path, status, body)
		}
	}
	got := audit.take()
	var actions []string
	for _, a := range got {
		if a.User.ID != privacy.ID || a.ProfileID != id {
			t.Errorf("recorded %+v, want user %s reading %s", a, privacy.ID, id)
		}
		actions = append(actions, a.Action)
	}
	if want := []string{"lookup", "read", "events", "explain"}; !slices.Equal(actions, want) {
		t.Errorf("recorded actions %v, want %v", actions, want)
	}

	// Without profiles:read: refused, nothing read, nothing recorded.
	if status, body := get(itToken, "/api/v1/profiles/"+id); status != 403 {
		t.Errorf("IT role reading a profile: %d %v, want 403", status, body)
	}
	if got := audit.take(); len(got) != 0 {
		t.Errorf("a refused read was recorded: %+v", got)
	}

	// A read that cannot be recorded is not served.
	audit.fail = true
	status, body := get(privacyToken, "/api/v1/profiles/"+id)
	if status != 503 {
		t.Fatalf("read with a failing audit log: %d %v, want 503", status, body)
	}
	if _, leaked := body["identifiers"]; leaked {
		t.Errorf("the profile was served although its read was not recorded: %v", body)
	}
}
