package server

import (
	"strings"
	"testing"
)

func TestManagementAuth(t *testing.T) {
	n := startNode(t, "", nil)
	checkError(t, n.do("GET", "/api/v1/sources", "", nil, nil), 401, "unauthenticated", "")
	checkError(t, n.do("GET", "/api/v1/sources", "bearer:tdm_wrong", nil, nil), 401, "unauthenticated", "")
	checkError(t, n.do("GET", "/api/v1/sources", "basic:"+n.writeKey, nil, nil), 401, "unauthenticated", "")

	r := n.admin("POST", "/api/v1/users", map[string]any{"name": "ana", "role": "analyst"})
	if r.status != 201 {
		t.Fatalf("create user: %d %s", r.status, r.body)
	}
	analyst := r.json(t)["token"].(string)
	if !strings.HasPrefix(analyst, "tdm_") {
		t.Errorf("token %q", analyst)
	}
	checkError(t, n.do("POST", "/api/v1/sources", "bearer:"+analyst, []byte(`{"name":"x","kind":"web","owner":"marketing"}`), nil), 403, "forbidden", "")
	checkError(t, n.do("POST", "/api/v1/users", "bearer:"+analyst, []byte(`{"name":"x","role":"admin"}`), nil), 403, "forbidden", "")
	if r := n.do("GET", "/api/v1/events", "bearer:"+analyst, nil, nil); r.status != 200 {
		t.Errorf("analyst reading events: %d %s", r.status, r.body)
	}
	checkError(t, n.admin("POST", "/api/v1/users", map[string]any{"name": "x", "role": "overlord"}), 400, "invalid_field", "role")
	checkError(t, n.admin("POST", "/api/v1/users", map[string]any{"name": 5, "role": "it"}), 400, "invalid_type", "name")
	checkError(t, n.admin("POST", "/api/v1/users", map[string]any{"name": "x", "role": "it", "extra": 1}), 400, "unknown_field", "extra")
	checkError(t, n.admin("GET", "/api/v1/events?limit=0", nil), 400, "invalid_field", "limit")
	checkError(t, n.admin("GET", "/api/v1/events?from=yesterday", nil), 400, "invalid_field", "from")
	checkError(t, n.admin("GET", "/api/v1/events?cursor=garbage", nil), 400, "invalid_field", "cursor")
	checkError(t, n.admin("DELETE", "/api/v1/sources", nil), 405, "method_not_allowed", "")
	checkError(t, n.admin("GET", "/api/v1/nothing-here", nil), 404, "not_found", "")
	if r := n.do("GET", "/api/v1/openapi.json", "", nil, nil); r.status != 200 || r.json(t)["openapi"] == nil {
		t.Errorf("openapi: %d", r.status)
	}
}

func TestSourceApproval(t *testing.T) {
	n := startNode(t, "", nil)
	r := n.admin("POST", "/api/v1/users", map[string]any{"name": "mia", "role": "marketing"})
	mktToken := r.json(t)["token"].(string)
	// A source with contact data registered by marketing waits for IT's
	// (here an admin's) approval.
	r = n.do("POST", "/api/v1/sources", "bearer:"+mktToken, []byte(`{"name":"shop","kind":"server","owner":"sales","purpose":"orders","dataCategories":["contact"],"monthlyCost":120}`), nil)
	if r.status != 201 {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	src := r.json(t)
	if src["approval"] != "pending" || src["writeKey"] == "" || src["change"] == nil {
		t.Fatalf("new source: %v", src)
	}
	key := src["writeKey"].(string)
	checkError(t, n.do("POST", "/v1/track", "basic:"+key, []byte(`{"userId":"u","event":"e"}`), nil), 403, "source_not_approved", "")
	r = n.admin("POST", "/api/v1/sources/"+src["id"].(string)+"/approvals", map[string]any{"decision": "approve", "comment": "ok"})
	if r.status != 200 || r.json(t)["approval"] != "approved" {
		t.Fatalf("approve: %d %s", r.status, r.body)
	}
	// The approval takes effect at once on the node that made it (the
	// write-key cache forgets it), and so does a rejection.
	if r := n.do("POST", "/v1/track", "basic:"+key, []byte(`{"userId":"u","event":"e"}`), nil); r.status != 200 {
		t.Errorf("approved source: %d %s, want 200 at once", r.status, r.body)
	}
	if r := n.admin("POST", "/api/v1/sources/"+src["id"].(string)+"/approvals", map[string]any{"decision": "reject"}); r.status != 200 {
		t.Fatalf("reject: %d %s", r.status, r.body)
	}
	checkError(t, n.do("POST", "/v1/track", "basic:"+key, []byte(`{"userId":"u","event":"e"}`), nil), 403, "source_not_approved", "")
	if r := n.admin("POST", "/api/v1/sources/"+src["id"].(string)+"/approvals", map[string]any{"decision": "approve"}); r.status != 200 {
		t.Fatalf("approve again: %d %s", r.status, r.body)
	}
	checkError(t, n.admin("POST", "/api/v1/sources", map[string]any{"name": "shop", "kind": "web", "owner": "it"}), 409, "conflict", "")
	checkError(t, n.admin("POST", "/api/v1/sources", map[string]any{"kind": "web", "owner": "it"}), 400, "invalid_field", "name")
	checkError(t, n.admin("GET", "/api/v1/sources/src_nope", nil), 404, "not_found", "")
	if r := n.admin("GET", "/api/v1/sources", nil); r.status != 200 || len(r.json(t)["items"].([]any)) != 2 {
		t.Errorf("list sources: %s", r.body)
	}
}

// TestSourceByName: wherever a source id is taken, its name is too, and an
// unknown one is a 400 naming "source", never an empty success.
func TestSourceByName(t *testing.T) {
	n := startNode(t, "", nil)
	id := n.importSource("Call Centre")
	mapping := []byte("event: Call\nkey: id\ntimestamp: {column: at, format: YYYY-MM-DD}\nidentifiers: {email: email}\n")
	data := "id,at,email\n1,2024-02-01,a@example.com\n2,2024-02-30,b@example.com\n"
	r := n.do("POST", "/api/v1/imports?source=call%20centre&mapping="+urlQueryEscape(string(mapping)), "bearer:"+n.token,
		[]byte(data), map[string]string{"Content-Type": "text/csv"})
	if st := decodeStatus(t, r); st.RowsImported != 1 || st.RowsFailed != 1 {
		t.Fatalf("import: %d %s", r.status, r.body)
	}
	n.drain()
	for _, ref := range []string{id, "Call%20Centre", "call%20centre"} {
		evs := n.events("source=" + ref)
		if len(evs) != 1 || evs[0]["sourceId"] != id {
			t.Errorf("events?source=%s: %v", ref, evs)
		}
		r := n.admin("GET", "/api/v1/quarantine?source="+ref, nil)
		if items, _ := r.json(t)["items"].([]any); r.status != 200 || len(items) != 1 || items[0].(map[string]any)["sourceId"] != id {
			t.Errorf("quarantine?source=%s: %d %s", ref, r.status, r.body)
		}
		if r := n.admin("GET", "/api/v1/sources/"+ref, nil); r.status != 200 || r.json(t)["id"] != id {
			t.Errorf("sources/%s: %d %s", ref, r.status, r.body)
		}
		if r := n.admin("GET", "/api/v1/sources/"+ref+"/approvals", nil); r.status != 200 {
			t.Errorf("sources/%s/approvals: %d %s", ref, r.status, r.body)
		}
	}
	if r := n.admin("GET", "/api/v1/events?source=default", nil); r.status != 200 || len(r.json(t)["items"].([]any)) != 0 {
		t.Errorf("events of the default source: %d %s", r.status, r.body)
	}
	checkError(t, n.admin("GET", "/api/v1/events?source=call-centre", nil), 400, "invalid_field", "source")
	checkError(t, n.admin("GET", "/api/v1/events/some-id?source=nope", nil), 400, "invalid_field", "source")
	checkError(t, n.admin("GET", "/api/v1/quarantine?source=src_nope", nil), 400, "invalid_field", "source")
	checkError(t, n.admin("GET", "/api/v1/sources/nope", nil), 404, "not_found", "")
	checkError(t, n.admin("POST", "/api/v1/sources/nope/approvals", map[string]any{"decision": "approve"}), 404, "not_found", "")
}
