package server

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"tandem/config"
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

// TestAudiences drives an audience through a real node: a rule error
// naming its position, membership entered on an event, the Audience
// Entered event stored like any event, the member list, the profile's
// audiences, leaving on a later event, and delivery of the changes to the
// audience's destination (a real webhook receiver) but not to another.
func TestAudiences(t *testing.T) {
	n := startNode(t, "", func(c *config.Config) { c.DestinationAllow = []string{"127.0.0.0/8"} })
	var mu sync.Mutex
	got := map[string][]string{} // destination name -> event names received
	dest := func(name string) string {
		rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			var e map[string]any
			_ = json.Unmarshal(b, &e)
			mu.Lock()
			got[name] = append(got[name], fmt.Sprint(e["event"]))
			mu.Unlock()
		}))
		t.Cleanup(rc.Close)
		r := n.admin("POST", "/api/v1/destinations", map[string]any{"name": name, "type": "webhook",
			"config": map[string]any{"url": rc.URL}, "owner": "Marketing", "purpose": "campaigns",
			"dataCategories": []string{"contact"}, "consentPurposes": []string{}, "monthlyCost": 10})
		if r.status != 201 {
			t.Fatalf("create destination: %d %s", r.status, r.body)
		}
		id := r.json(t)["id"].(string)
		if r.json(t)["approval"] != "approved" {
			if r := n.admin("POST", "/api/v1/destinations/"+id+"/approvals", map[string]any{"decision": "approve"}); r.status != 200 {
				t.Fatalf("approve: %d %s", r.status, r.body)
			}
		}
		return id
	}
	crmID := dest("crm")
	dest("other")
	send := func(body string) {
		t.Helper()
		if r := n.do("POST", "/v1/batch", "basic:"+n.writeKey, []byte(body), nil); r.status != 200 {
			t.Fatalf("batch: %d %s", r.status, r.body)
		}
	}
	analyst := n.admin("POST", "/api/v1/users", map[string]any{"name": "al", "role": "analyst"}).json(t)["token"].(string)
	post := func(path, body string) response {
		t.Helper()
		return n.do("POST", path, "bearer:"+analyst, []byte(body), nil)
	}
	for _, body := range []string{
		`{"name":"orders","kind":"count","event":"Order Completed","window":"30d"}`,
		`{"name":"refunds","kind":"count","event":"Refund Requested","window":"30d"}`,
	} {
		if r := post("/api/v1/computed-traits", body); r.status != 201 {
			t.Fatalf("define: %d %s", r.status, r.body)
		}
	}
	r := post("/api/v1/audiences", `{"name":"buyers","rule":"computed.orders >= 2 and"}`)
	checkError(t, r, 400, "invalid_field", "rule")
	if msg := r.json(t)["error"].(map[string]any)["message"].(string); !strings.Contains(msg, "line 1, column") {
		t.Errorf("rule error without a position: %s", msg)
	}
	r = post("/api/v1/audiences", `{"name":"buyers","destinations":["`+crmID+`"],"rule":"computed.orders >= 2 and computed.refunds == 0 and traits.plan == \"pro\""}`)
	if r.status != 201 {
		t.Fatalf("audience: %d %s", r.status, r.body)
	}
	audID := r.json(t)["id"].(string)

	now := time.Now().UTC().Format(time.RFC3339)
	send(`{"batch":[
		{"type":"identify","userId":"max","messageId":"i1","timestamp":"` + now + `","traits":{"plan":"pro"}},
		{"type":"track","event":"Order Completed","userId":"max","messageId":"o1","timestamp":"` + now + `"},
		{"type":"track","event":"Order Completed","userId":"max","messageId":"o2","timestamp":"` + now + `"},
		{"type":"track","event":"Order Completed","userId":"kim","messageId":"o3","timestamp":"` + now + `"}
	]}`)
	n.drain()
	n.drain() // the membership event goes through the log too
	p := n.lookup("user_id:max")
	if b, _ := json.Marshal(p["audiences"]); string(b) != `["buyers"]` {
		t.Errorf("max's audiences: %s", b)
	}
	if b, _ := json.Marshal(n.lookup("user_id:kim")["audiences"]); string(b) != `[]` {
		t.Errorf("kim's audiences: %s", b)
	}
	m := n.do("GET", "/api/v1/audiences/"+audID+"/members", "bearer:"+analyst, nil, nil)
	items, _ := m.json(t)["items"].([]any)
	if m.status != 200 || len(items) != 1 || items[0].(map[string]any)["profileId"] != p["id"] {
		t.Errorf("members: %d %s", m.status, m.body)
	}
	entered := n.events("event=Audience+Entered")
	if len(entered) != 1 {
		t.Fatalf("Audience Entered events: %v", entered)
	}

	// A refund takes him out.
	send(`{"batch":[{"type":"track","event":"Refund Requested","userId":"max","messageId":"r1","timestamp":"` + now + `"}]}`)
	n.drain()
	n.drain()
	if b, _ := json.Marshal(n.lookup("user_id:max")["audiences"]); string(b) != `[]` {
		t.Errorf("max's audiences after the refund: %s", b)
	}
	if exited := n.events("event=Audience+Exited"); len(exited) != 1 {
		t.Errorf("Audience Exited events: %v", exited)
	}
	checkError(t, n.do("GET", "/api/v1/audiences/aud_nope/members", "bearer:"+analyst, nil, nil), 404, "not_found", "")

	// The crm destination receives both changes; the other one none.
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		crm, other := strings.Join(got["crm"], ","), strings.Join(got["other"], ",")
		mu.Unlock()
		if strings.Contains(crm, "Audience Entered") && strings.Contains(crm, "Audience Exited") && strings.Contains(other, "Refund Requested") {
			if strings.Contains(other, "Audience") {
				t.Errorf("another destination received audience events: %s", other)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("deliveries: crm %q, other %q", crm, other)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
