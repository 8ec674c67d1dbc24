package server

import (
	"encoding/json"
	"testing"
)

// TestComputedTraits drives computed traits through a real node: defined
// by marketing (not by it), kept current by the pipeline, backfilled when
// defined after the events, combined over a merge, shown on GET
// /profiles/{id}, deleted.
func TestComputedTraits(t *testing.T) {
	n := startNode(t, "", nil)
	send := func(body string) {
		t.Helper()
		if r := n.do("POST", "/v1/batch", "basic:"+n.writeKey, []byte(body), nil); r.status != 200 {
			t.Fatalf("batch: %d %s", r.status, r.body)
		}
	}
	marketing := n.admin("POST", "/api/v1/users", map[string]any{"name": "mia", "role": "marketing"}).json(t)["token"].(string)
	it := n.admin("POST", "/api/v1/users", map[string]any{"name": "ian", "role": "it"}).json(t)["token"].(string)
	define := func(token, body string) response {
		t.Helper()
		return n.do("POST", "/api/v1/computed-traits", "bearer:"+token, []byte(body), nil)
	}
	checkError(t, define(it, `{"name":"orders","kind":"count","event":"Order Completed"}`), 403, "forbidden", "")
	r := define(marketing, `{"name":"orders","kind":"count","event":"Order Completed","window":"3650d"}`)
	if r.status != 201 {
		t.Fatalf("define: %d %s", r.status, r.body)
	}
	ordersID := r.json(t)["id"].(string)
	checkError(t, define(marketing, `{"name":"orders","kind":"count","event":"Order Completed"}`), 409, "conflict", "")
	checkError(t, define(marketing, `{"name":"x","kind":"count","event":"Order Completed","window":"a month"}`), 400, "invalid_field", "window")
	checkError(t, define(marketing, `{"name":"x","kind":"sum","event":"Order Completed"}`), 400, "invalid_field", "property")

	now := "2026-01-01T00:00:00Z" // well within the window of any clock running this test
	send(`{"batch":[
		{"type":"track","event":"Order Completed","anonymousId":"web-1","messageId":"o1","timestamp":"` + now + `","properties":{"total":10,"item":"tea"}},
		{"type":"track","event":"Order Completed","userId":"zoe","messageId":"o2","timestamp":"` + now + `","properties":{"total":5,"item":"cake"}},
		{"type":"track","event":"Order Completed","userId":"zoe","messageId":"o3","timestamp":"` + now + `","properties":{"total":7.5,"item":"cake"}}
	]}`)
	n.drain()
	computed := func(ident string) string {
		t.Helper()
		b, _ := json.Marshal(n.lookup(ident)["computedTraits"])
		return string(b)
	}
	if got := computed("user_id:zoe"); got != `{"orders":2}` {
		t.Errorf("zoe: %s", got)
	}
	// Defined after the events: backfilled from the event store.
	if r := define(marketing, `{"name":"spent","kind":"sum","event":"Order Completed","property":"total"}`); r.status != 201 {
		t.Fatalf("define spent: %d %s", r.status, r.body)
	}
	if r := define(marketing, `{"name":"fav","kind":"most_frequent","event":"Order Completed","property":"item"}`); r.status != 201 {
		t.Fatalf("define fav: %d %s", r.status, r.body)
	}
	if got := computed("user_id:zoe"); got != `{"fav":"cake","orders":2,"spent":12.5}` {
		t.Errorf("zoe after backfill: %s", got)
	}
	// The web visitor logs in as Zoe: the values combine.
	send(`{"batch":[{"type":"identify","userId":"zoe","anonymousId":"web-1","messageId":"i1","timestamp":"` + now + `"}]}`)
	n.drain()
	p := n.lookup("user_id:zoe")
	b, _ := json.Marshal(p["computedTraits"])
	if string(b) != `{"fav":"cake","orders":3,"spent":22.5}` {
		t.Errorf("zoe after the merge: %s", b)
	}
	r = n.do("GET", "/api/v1/profiles/"+p["id"].(string), "bearer:"+marketing, nil, nil)
	if b, _ := json.Marshal(r.json(t)["computedTraits"]); string(b) != `{"fav":"cake","orders":3,"spent":22.5}` {
		t.Errorf("GET /profiles/{id}: %d %s", r.status, r.body)
	}

	list := n.do("GET", "/api/v1/computed-traits", "bearer:"+marketing, nil, nil)
	if items, _ := list.json(t)["items"].([]any); list.status != 200 || len(items) != 3 {
		t.Errorf("list: %d %s", list.status, list.body)
	}
	if r := n.do("DELETE", "/api/v1/computed-traits/"+ordersID, "bearer:"+marketing, nil, nil); r.status != 204 {
		t.Errorf("delete: %d %s", r.status, r.body)
	}
	checkError(t, n.do("GET", "/api/v1/computed-traits/"+ordersID, "bearer:"+marketing, nil, nil), 404, "not_found", "")
	if got := computed("user_id:zoe"); got != `{"fav":"cake","spent":22.5}` {
		t.Errorf("after delete: %s", got)
	}
}
