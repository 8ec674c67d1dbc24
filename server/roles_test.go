package server

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"tandem/config"
	"testing"

	"tandem/access"
)

// managementOps reads the node's OpenAPI document: every management
// operation that takes a bearer token, "METHOD path" → the permission it
// needs ("" for any authenticated user). api.TestRoutesInOpenAPI keeps the
// document and the served routes the same, so this is every endpoint.
func (n *node) managementOps() map[string]string {
	n.t.Helper()
	r := n.do("GET", "/api/v1/openapi.json", "", nil, nil)
	var doc struct {
		Paths map[string]map[string]struct {
			Security   *[]any  `json:"security"`
			Permission *string `json:"x-permission"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(r.body, &doc); err != nil || r.status != 200 {
		n.t.Fatalf("openapi: %d %v", r.status, err)
	}
	ops := map[string]string{}
	for path, methods := range doc.Paths {
		for method, op := range methods {
			if !strings.HasPrefix(path, "/api/v1/") || (op.Security != nil && len(*op.Security) == 0) {
				continue
			}
			p := ""
			if op.Permission != nil {
				p = *op.Permission
			}
			ops[strings.ToUpper(method)+" "+path] = p
		}
	}
	return ops
}

// roleTokens creates a user of every role but admin through the API and
// returns every role's token.
func (n *node) roleTokens() map[access.Role]string {
	n.t.Helper()
	tokens := map[access.Role]string{access.RoleAdmin: n.token}
	for _, role := range access.Roles {
		if role == access.RoleAdmin {
			continue
		}
		r := n.admin("POST", "/api/v1/users", map[string]string{"name": "test " + string(role), "role": string(role)})
		if r.status != 201 {
			n.t.Fatalf("create %s: %d %s", role, r.status, r.body)
		}
		tokens[role] = r.json(n.t)["token"].(string)
	}
	return tokens
}

var pathParam = regexp.MustCompile(`\{[^}]+\}`)

// TestRoleMatrix walks every management endpoint of the OpenAPI document:
// 401 without a token or with a bad one, 403 for every role the role ×
// permission table (access.Can) refuses, and neither for every role it
// allows.
func TestRoleMatrix(t *testing.T) {
	n := startNode(t, "", nil)
	tokens := n.roleTokens()
	ops := n.managementOps()
	if len(ops) < 30 {
		t.Fatalf("only %d management operations in the document", len(ops))
	}
	keys := make([]string, 0, len(ops))
	for k := range ops {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, op := range keys {
		perm := access.Permission(ops[op])
		if perm != "" && !strings.Contains(access.DocTable(), "`"+string(perm)+"`") {
			t.Errorf("%s needs %q, which is no permission of access.Permissions", op, perm)
		}
		method, path, _ := strings.Cut(op, " ")
		path = pathParam.ReplaceAllString(path, "nope")
		var body []byte
		if method != "GET" {
			body = []byte(`{}`)
		}
		r := n.do(method, path, "", body, nil)
		checkError(t, r, 401, "unauthenticated", "")
		checkError(t, n.do(method, path, "bearer:tdm_not-a-token", body, nil), 401, "unauthenticated", "")
		for _, role := range access.Roles {
			r := n.do(method, path, "bearer:"+tokens[role], body, nil)
			if perm == "" || access.Can(role, perm) {
				if r.status == 401 || r.status == 403 {
					t.Errorf("%s as %s (may %s): %d %s", op, role, perm, r.status, r.body)
				}
			} else {
				if r.status != 403 {
					t.Errorf("%s as %s (may not %s): %d, want 403", op, role, perm, r.status)
					continue
				}
				checkError(t, r, 403, "forbidden", "")
			}
		}
	}
}

var (
	anyEmail = regexp.MustCompile(`[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}`)
	anyPhone = regexp.MustCompile(`\+[0-9][0-9 ()./-]{5,22}[0-9]`)
)

// The test person's personal data.
var personal = []string{"ann.lee@example.com", "+49 151 2345 6789", "+4915122223333", "Ann Lee", "bob.ray@example.org"}

// TestMasking reads every GET endpoint as every role that may: the answer
// of a role without pii:read holds no e-mail address, phone number or name
// of the test data; admin's and privacy's do, where the endpoint shows
// personal data.
func TestMasking(t *testing.T) {
	n := startNode(t, "", func(c *config.Config) { c.DestinationAllow = []string{"127.0.0.0/8"} })
	tokens := n.roleTokens()
	send := func(path, body string) {
		t.Helper()
		if r := n.do("POST", path, "basic:"+n.writeKey, []byte(body), nil); r.status != 200 {
			t.Fatalf("%s: %d %s", path, r.status, r.body)
		}
	}
	send("/v1/identify", `{"userId":"u-ann","messageId":"m-ann","traits":{"email":"ann.lee@example.com","phone":"+49 151 2345 6789","name":"Ann Lee","plan":"gold"}}`)
	send("/v1/track", `{"userId":"ann.lee@example.com","messageId":"m-buy","event":"Order Completed","properties":{"total":12,"contact":"+4915122223333"},"context":{"traits":{"email":"ann.lee@example.com"}}}`)
	// A bad event, for the quarantine: the payload holds an e-mail.
	n.do("POST", "/v1/track", "basic:"+n.writeKey, []byte(`{"userId":"bob.ray@example.org","messageId":"m-bad"}`), nil)
	// An import whose row error holds an e-mail.
	n.importSource("crm-import")
	mapping := "event: Signup\nkey: id\ntimestamp: {column: at, format: YYYY-MM-DD}\nidentifiers: {email: email}\n"
	r := n.do("POST", "/api/v1/imports?source=crm-import&mapping="+url.QueryEscape(mapping), "bearer:"+n.token,
		[]byte("id,at,email\n1,2024-02-01,bob.ray@example.org\n2,bob.ray@example.org,x\n"), map[string]string{"Content-Type": "text/csv"})
	imp := decodeStatus(t, r)
	n.drain()
	prof := n.admin("GET", "/api/v1/profiles/lookup?identifier=email:ann.lee@example.com", nil)
	if prof.status != 200 {
		t.Fatalf("lookup: %d %s", prof.status, prof.body)
	}
	profileID := prof.json(t)["id"].(string)
	// A destination (never approved: it receives nothing).
	dest := n.admin("POST", "/api/v1/destinations", map[string]any{"name": "crm hook", "type": "webhook",
		"config": map[string]any{"url": "http://127.0.0.1:9/hook"}, "owner": "Sales", "purpose": "contacts",
		"dataCategories": []string{"contact"}, "consentPurposes": []string{}, "monthlyCost": 1})
	if dest.status != 201 {
		t.Fatalf("create destination: %d %s", dest.status, dest.body)
	}
	destID := dest.json(t)["id"].(string)
	// A change request every role with changes:read sees: marketing
	// proposes it, it and privacy must approve it.
	cb, _ := json.Marshal(map[string]any{"name": "survey hook", "type": "webhook", "config": map[string]any{"url": "http://127.0.0.1:9/survey"},
		"owner": "Marketing", "purpose": "surveys", "dataCategories": []string{"sensitive"}})
	change := n.do("POST", "/api/v1/destinations", "bearer:"+tokens[access.RoleMarketing], cb, nil)
	if change.status != 201 || change.json(t)["change"] == nil {
		t.Fatalf("propose a destination: %d %s", change.status, change.body)
	}
	changeID := change.json(t)["change"].(string)
	if r := n.admin("PUT", "/api/v1/tracking-plans/crm-import", map[string]any{"unplanned": "flag", "events": map[string]any{}}); r.status != 200 {
		t.Fatalf("put tracking plan: %d %s", r.status, r.body)
	}
	dsrID, _ := n.fileRequest(n.token, "access", "email", "ann.lee@example.com")

	paths := map[string]string{ // the GET endpoints with their ids filled in
		"/api/v1/changes/{id}":                   "/api/v1/changes/" + changeID,
		"/api/v1/tracking-plans/{id}":            "/api/v1/tracking-plans/crm-import",
		"/api/v1/destinations/{id}":              "/api/v1/destinations/" + destID,
		"/api/v1/destinations/{id}/approvals":    "/api/v1/destinations/" + destID + "/approvals",
		"/api/v1/destinations/{id}/deliveries":   "/api/v1/destinations/" + destID + "/deliveries",
		"/api/v1/destinations/{id}/dead-letters": "/api/v1/destinations/" + destID + "/dead-letters",
		"/api/v1/profiles/{id}/consent/history":  "/api/v1/profiles/" + profileID + "/consent/history",
		"/api/v1/privacy/requests/{id}":          "/api/v1/privacy/requests/" + dsrID,
		"/api/v1/privacy/requests/{id}/export":   "/api/v1/privacy/requests/" + dsrID + "/export",
		"/api/v1/events/{messageId}":             "/api/v1/events/m-buy",
		"/api/v1/profiles/lookup":                "/api/v1/profiles/lookup?identifier=email:ann.lee@example.com",
		"/api/v1/profiles/{id}":                  "/api/v1/profiles/" + profileID,
		"/api/v1/profiles/{id}/events":           "/api/v1/profiles/" + profileID + "/events",
		"/api/v1/profiles/{id}/explain":          "/api/v1/profiles/" + profileID + "/explain",
		"/api/v1/imports/{id}":                   "/api/v1/imports/" + imp.ID,
		"/api/v1/imports/{id}/errors":            "/api/v1/imports/" + imp.ID + "/errors",
		"/api/v1/sources/{id}":                   "/api/v1/sources/crm-import",
		"/api/v1/sources/{id}/approvals":         "/api/v1/sources/crm-import",
		"/api/v1/experiments/{id}":               "",
		"/api/v1/experiments/{id}/results":       "",
		"/api/v1/computed-traits/{id}":           "", // a definition: no personal data
		"/api/v1/audiences/{id}/members":         "", // profile ids and times: no personal data
	}
	// The endpoints that show personal data to whoever may see it.
	showsPersonal := []string{"/api/v1/events", "/api/v1/events/{messageId}", "/api/v1/quarantine", "/api/v1/profiles/lookup",
		"/api/v1/profiles/{id}", "/api/v1/profiles/{id}/events", "/api/v1/imports/{id}/errors",
		"/api/v1/privacy/requests", "/api/v1/privacy/requests/{id}", "/api/v1/privacy/requests/{id}/export"}
	ops := n.managementOps()
	checked := 0
	for op, perm := range ops {
		method, path, _ := strings.Cut(op, " ")
		if method != "GET" {
			continue
		}
		target := path
		if p, ok := paths[path]; ok {
			target = p
		} else if strings.Contains(path, "{") {
			t.Errorf("%s: no test value for its path parameters; add it to paths", op)
			continue
		}
		if target == "" {
			continue
		}
		for _, role := range access.Roles {
			if perm != "" && !access.Can(role, access.Permission(perm)) {
				continue
			}
			r := n.do("GET", target, "bearer:"+tokens[role], nil, nil)
			if r.status != 200 {
				t.Errorf("%s as %s: %d %s", target, role, r.status, r.body)
				continue
			}
			body := string(r.body)
			if !access.Can(role, access.ReadPII) {
				checked++
				if m := anyEmail.FindString(body); m != "" {
					t.Errorf("%s as %s shows the e-mail address %s: %s", target, role, m, body)
				}
				if m := anyPhone.FindString(body); m != "" {
					t.Errorf("%s as %s shows the phone number %s: %s", target, role, m, body)
				}
				for _, v := range personal {
					if strings.Contains(body, v) {
						t.Errorf("%s as %s shows %q", target, role, v)
					}
				}
				if (path == "/api/v1/profiles/{id}" || path == "/api/v1/profiles/lookup") && !strings.Contains(body, profileID) {
					t.Errorf("%s as %s lost the pseudonymous profile id: %s", target, role, body)
				}
			} else if containsStr(showsPersonal, path) && !anyEmail.MatchString(body) {
				t.Errorf("%s as %s (may see personal data) shows no e-mail address: %s", target, role, body)
			}
		}
	}
	if checked < 15 {
		t.Errorf("only %d masked answers checked", checked)
	}
	// The pseudonym is stable: the same address masks the same way in the
	// profile and in the event.
	a := n.do("GET", "/api/v1/events/m-ann", "bearer:"+tokens[access.RoleAnalyst], nil, nil).json(t)
	b := n.do("GET", "/api/v1/events/m-buy", "bearer:"+tokens[access.RoleAnalyst], nil, nil).json(t)
	email := a["traits"].(map[string]any)["email"].(string)
	if !strings.HasPrefix(email, "masked:email:") || b["userId"] != email || a["traits"].(map[string]any)["plan"] != "gold" {
		t.Errorf("pseudonyms: identify %v, track %v", a, b)
	}
}

func containsStr(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestPseudonymsSurviveRestart: the mask key is the installation's, so a
// pseudonym is the same after a restart (reports made before and after
// can be joined), and it is not the unkeyed hash of the address.
func TestPseudonymsSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, dir, nil)
	analyst := n.roleTokens()[access.RoleAnalyst]
	if r := n.do("POST", "/v1/identify", "basic:"+n.writeKey, []byte(`{"userId":"u1","messageId":"m1","traits":{"email":"ann.lee@example.com"}}`), nil); r.status != 200 {
		t.Fatalf("identify: %d %s", r.status, r.body)
	}
	n.drain()
	read := func(n *node) string {
		t.Helper()
		r := n.do("GET", "/api/v1/events/m1", "bearer:"+analyst, nil, nil)
		if r.status != 200 {
			t.Fatalf("read: %d %s", r.status, r.body)
		}
		return r.json(t)["traits"].(map[string]any)["email"].(string)
	}
	before := read(n)
	n.stop()
	after := read(startNode(t, dir, nil))
	sum := sha256.Sum256([]byte("ann.lee@example.com"))
	if before != after || !strings.HasPrefix(before, "masked:email:") || strings.Contains(before, hex.EncodeToString(sum[:])[:12]) {
		t.Errorf("pseudonym %q before the restart, %q after", before, after)
	}
}
