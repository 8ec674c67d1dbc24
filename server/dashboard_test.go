package server

import (
	"slices"
	"strings"
	"testing"
)

// TestDashboardIsServed: "/" is the dashboard's page and its files are
// under /ui/, kept to their own origin by the CSP; GET /api/v1/me tells
// the page what the role may do, so it offers nothing the API refuses.
func TestDashboardIsServed(t *testing.T) {
	n := startNode(t, "", nil)
	for path, ctype := range map[string]string{"/": "text/html", "/ui/app.js": "text/javascript", "/ui/core.js": "text/javascript", "/ui/app.css": "text/css"} {
		r := n.do("GET", path, "", nil, nil)
		if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), ctype) {
			t.Errorf("GET %s: %d %s", path, r.status, r.header.Get("Content-Type"))
		}
		if !strings.Contains(r.header.Get("Content-Security-Policy"), "default-src 'self'") {
			t.Errorf("GET %s: CSP %q", path, r.header.Get("Content-Security-Policy"))
		}
	}

	perms := func(tok string) []string {
		t.Helper()
		r := n.do("GET", "/api/v1/me", "bearer:"+tok, nil, nil)
		if r.status != 200 {
			t.Fatalf("GET /api/v1/me: %d %s", r.status, r.body)
		}
		var out []string
		for _, p := range r.json(t)["permissions"].([]any) {
			out = append(out, p.(string))
		}
		return out
	}
	for role, want := range map[string]struct{ has, lacks []string }{
		"it":      {has: []string{"approvals:decide", "quarantine:replay", "analytics:read"}, lacks: []string{"profiles:read", "users:manage"}},
		"privacy": {has: []string{"profiles:read", "profiles:unmerge"}, lacks: []string{"analytics:read", "approvals:decide"}},
		"sales":   {has: []string{"profiles:read", "analytics:read"}, lacks: []string{"profiles:unmerge", "quarantine:read"}},
	} {
		tok := n.admin("POST", "/api/v1/users", map[string]any{"name": role + "-user", "role": role}).json(t)["token"].(string)
		got := perms(tok)
		for _, p := range want.has {
			if !slices.Contains(got, p) {
				t.Errorf("%s: permissions %v lack %s", role, got, p)
			}
		}
		for _, p := range want.lacks {
			if slices.Contains(got, p) {
				t.Errorf("%s: permissions %v have %s", role, got, p)
			}
		}
	}
	if got := n.admin("GET", "/api/v1/me", nil).json(t)["permissions"].([]any); len(got) < 14 {
		t.Errorf("admin's permissions: %v", got)
	}
}
