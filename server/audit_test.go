package server

import (
	"context"
	"encoding/json"
	"net/url"
	"strconv"
	"strings"
	"testing"
)

// TestAuditLog: through a real server with users of several roles, every
// change and every read of personal data lands in the audit log, with ids
// and never the personal data or secrets themselves; GET /audit filters
// and pages it for the roles allowed; the chain verifies; and when the log
// cannot be written, personal data is not served.
func TestAuditLog(t *testing.T) {
	n := startNode(t, "", nil)
	ctx := context.Background()
	adminID := n.admin("GET", "/api/v1/me", nil).json(t)["id"].(string)
	users := map[string]struct{ id, token string }{}
	for _, role := range []string{"it", "privacy", "analyst", "marketing"} {
		r := n.admin("POST", "/api/v1/users", map[string]string{"name": "Jane " + role, "role": role})
		if r.status != 201 {
			t.Fatalf("create %s: %d %s", role, r.status, r.body)
		}
		m := r.json(t)
		users[role] = struct{ id, token string }{m["id"].(string), m["token"].(string)}
	}
	as := func(role, method, path string, body any) response {
		t.Helper()
		var b []byte
		if body != nil {
			b, _ = json.Marshal(body)
		}
		return n.do(method, path, "bearer:"+users[role].token, b, nil)
	}

	// A source with contact data created by marketing waits for IT's
	// approval (an admin's counts for it).
	r := as("marketing", "POST", "/api/v1/sources", map[string]any{"name": "crm", "kind": "crm", "owner": "sales", "purpose": "leads", "dataCategories": []string{"contact"}})
	if r.status != 201 {
		t.Fatalf("create source: %d %s", r.status, r.body)
	}
	src := r.json(t)
	srcID, crmKey := src["id"].(string), src["writeKey"].(string)
	if r := n.admin("POST", "/api/v1/sources/"+srcID+"/approvals", map[string]string{"decision": "approve", "comment": "ticket 42"}); r.status != 200 {
		t.Fatalf("approve: %d %s", r.status, r.body)
	}

	// A person, and a bad event for the quarantine.
	r = n.do("POST", "/v1/identify", "basic:"+n.writeKey, []byte(`{"userId":"u1","messageId":"m-ann","traits":{"email":"ann@example.com","phone":"+4915112345678"}}`), nil)
	if r.status != 200 {
		t.Fatalf("identify: %d %s", r.status, r.body)
	}
	n.do("POST", "/v1/track", "basic:"+n.writeKey, []byte(`{"userId":"ann@example.com"}`), nil)
	n.drain()

	r = as("privacy", "GET", "/api/v1/profiles/lookup?identifier=email:ann@example.com", nil)
	if r.status != 200 {
		t.Fatalf("lookup: %d %s", r.status, r.body)
	}
	prf := r.json(t)["id"].(string)
	for _, path := range []string{"/api/v1/events?profile=u1", "/api/v1/events/m-ann", "/api/v1/events?profile=" + url.QueryEscape("nobody@example.com")} {
		if r := n.admin("GET", path, nil); r.status != 200 {
			t.Fatalf("GET %s: %d %s", path, r.status, r.body)
		}
	}
	q := n.quarantine()
	if len(q) != 1 {
		t.Fatalf("quarantine: %v", q)
	}
	if r := as("it", "POST", "/api/v1/quarantine/replay", map[string]any{"ids": []string{q[0]["id"].(string)}}); r.status != 200 {
		t.Fatalf("replay: %d %s", r.status, r.body)
	}

	// A bulk import of customers' purchases.
	if r := n.multipartImport("source=default", example(t, "shop", "mapping.json"), example(t, "shop", "purchases.ndjson")); r.status != 201 {
		t.Fatalf("import: %d %s", r.status, r.body)
	}

	// What privacy sees about the person: who read what, by profile id.
	entries := auditPages(t, n, users["privacy"].token, "subject="+prf, 2)
	var got []string
	for _, e := range entries {
		if e["subject"] != prf {
			t.Errorf("subject filter let through %v", e)
		}
		got = append(got, e["actor"].(string)+" "+e["action"].(string))
	}
	want := []string{users["privacy"].id + " profile.lookup", adminID + " events.list", adminID + " events.read"}
	if strings.Join(got, ", ") != strings.Join(want, ", ") {
		t.Errorf("entries about %s:\n%s\nwant\n%s", prf, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// Everything, by action, in order.
	all := auditPages(t, n, n.token, "", 1000)
	byAction := map[string][]map[string]any{}
	var actions []string
	for i, e := range all {
		if int(e["seq"].(float64)) != i+1 {
			t.Fatalf("entry %d has seq %v", i, e["seq"])
		}
		a := e["action"].(string)
		byAction[a] = append(byAction[a], e)
		actions = append(actions, a)
	}
	for _, a := range []string{"user.create", "source.create", "source.approval", "profile.lookup", "events.list", "events.read", "quarantine.list", "quarantine.replay", "import.create", "import.run", "audit.read"} {
		if len(byAction[a]) == 0 {
			t.Errorf("no %s entry among %v", a, actions)
		}
	}
	if e := byAction["import.run"][0]; e["actor"] != adminID || e["after"].(map[string]any)["rowsImported"].(float64) == 0 {
		t.Errorf("the import's run: %v", e)
	}
	if e := byAction["user.create"][0]; e["actor"] != "system" || e["resource"] != "user/"+adminID {
		t.Errorf("the bootstrap admin's creation: %v", e)
	}
	if e := byAction["source.approval"][0]; e["actor"] != adminID || e["resource"] != "source/"+srcID ||
		e["before"].(map[string]any)["approval"] != "pending" || e["after"].(map[string]any)["approval"] != "approved" ||
		e["changeRequest"] != src["change"] || src["change"] == nil {
		t.Errorf("the approval: %v", e)
	}
	if e := byAction["change.propose"][0]; e["actor"] != users["marketing"].id || e["changeRequest"] != src["change"] {
		t.Errorf("the change request: %v", e)
	}
	if e := byAction["source.create"][1]; e["actor"] != users["marketing"].id || e["after"].(map[string]any)["name"] != "crm" {
		t.Errorf("the source's creation: %v", e)
	}
	// The read by an unresolved e-mail address is recorded by its digest.
	if e := byAction["events.list"][1]; e["subject"] != nil || e["after"].(map[string]any)["profileDigest"] == nil {
		t.Errorf("read by an unknown identifier: %v", e)
	}

	// Neither personal data nor secrets are in the log.
	raw := n.admin("GET", "/api/v1/audit?limit=1000", nil).body
	for _, secret := range []string{"@", "4915112345678", "Jane", n.token, n.writeKey, crmKey,
		users["it"].token, users["privacy"].token, users["analyst"].token} {
		if strings.Contains(string(raw), secret) {
			t.Errorf("the audit log holds %q", secret)
		}
	}

	// Who may read it; bad parameters.
	checkError(t, as("analyst", "GET", "/api/v1/audit", nil), 403, "forbidden", "")
	checkError(t, n.do("GET", "/api/v1/audit", "", nil, nil), 401, "unauthenticated", "")
	if r := as("it", "GET", "/api/v1/audit?limit=1", nil); r.status != 200 {
		t.Errorf("it reading the audit log: %d %s", r.status, r.body)
	}
	checkError(t, n.admin("GET", "/api/v1/audit?cursor=nope", nil), 400, "invalid_field", "cursor")
	checkError(t, n.admin("GET", "/api/v1/audit?from=yesterday", nil), 400, "invalid_field", "from")
	checkError(t, n.admin("GET", "/api/v1/audit?limit=0", nil), 400, "invalid_field", "limit")

	rep, err := n.srv.Audit.Verify(ctx, nil)
	if err != nil || rep.Broken != nil || rep.Entries < int64(len(all)) {
		t.Fatalf("Verify: %+v %v", rep, err)
	}

	// A log that cannot be written: reads of personal data are refused,
	// changes still go ahead.
	if _, err := n.srv.State.Exec(ctx, `DROP TABLE audit_entries`); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/api/v1/profiles/" + prf, "/api/v1/events?profile=u1", "/api/v1/events/m-ann", "/api/v1/quarantine"} {
		r := as("privacy", "GET", path, nil)
		checkError(t, r, 503, "unavailable", "")
		if strings.Contains(string(r.body), "u1") || strings.Contains(string(r.body), "ann@") {
			t.Errorf("%s served personal data unrecorded: %s", path, r.body)
		}
	}
	if r := n.admin("POST", "/api/v1/users", map[string]string{"name": "late", "role": "sales"}); r.status != 201 {
		t.Errorf("a change with the audit log down: %d %s", r.status, r.body)
	}
}

// auditPages reads GET /audit?query with the token, every page of size
// limit.
func auditPages(t *testing.T, n *node, token, query string, limit int) []map[string]any {
	t.Helper()
	var out []map[string]any
	cursor := ""
	for range 1000 {
		path := "/api/v1/audit?limit=" + strconv.Itoa(limit) + "&" + query
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		r := n.do("GET", path, "bearer:"+token, nil, nil)
		if r.status != 200 {
			t.Fatalf("GET %s: %d %s", path, r.status, r.body)
		}
		var page struct {
			Items []map[string]any `json:"items"`
			Next  string           `json:"next"`
		}
		if err := json.Unmarshal(r.body, &page); err != nil {
			t.Fatal(err)
		}
		out = append(out, page.Items...)
		if page.Next == "" {
			return out
		}
		cursor = page.Next
	}
	t.Fatal("GET /audit: too many pages")
	return nil
}
