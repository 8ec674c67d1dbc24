package server

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"tandem/access"
	"tandem/config"
	"tandem/policy"
	"tandem/testserver"
)

// TestDecisionRights is the "done when" for decision rights,
// through a real node with a real user of each role, on the embedded
// state store and on PostgreSQL.
func TestDecisionRights(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { testDecisionRights(t, nil) })
	t.Run("postgres", func(t *testing.T) {
		pg := testserver.PostgresInstance(t)
		testDecisionRights(t, func(t *testing.T) string { return pg.NewDatabase(t) })
	})
}

// testDecisionRights runs the cases, each on a new node; state, when not
// nil, gives each a new --state database.
func testDecisionRights(t *testing.T, state func(t *testing.T) string) {
	start := func(t *testing.T, preset string, mutate func(*config.Config)) (*node, map[access.Role]string) {
		url := ""
		if state != nil {
			url = state(t)
		}
		n := startNode(t, "", func(c *config.Config) {
			c.Policy.Preset = preset
			c.State = url
			if mutate != nil {
				mutate(c)
			}
		})
		return n, n.roleTokens()
	}
	t.Run("MarketingLed", func(t *testing.T) {
		n, tok := start(t, policy.MarketingLed, nil)
		// A marketing tool without personal data: marketing alone approves
		// it, by proposing it.
		src := n.proposeSource(tok[access.RoleMarketing], "newsletter-app", "behavioural")
		if src["approval"] != "approved" || src["change"] != nil {
			t.Fatalf("marketing's tool: %v", src)
		}
		n.collect(src["writeKey"].(string), 200)
		// The same tool proposed by IT waits for marketing.
		src = n.proposeSource(tok[access.RoleIT], "survey-app", "behavioural")
		c := n.change(tok[access.RoleIT], src["change"])
		if src["approval"] != "pending" || !equalRoles(c["needs"], "marketing") || len(c["approvals"].([]any)) != 0 {
			t.Fatalf("it's proposal: %v, change %v", src, c)
		}
		n.collect(src["writeKey"].(string), 403)
		checkError(t, n.decideChange(tok[access.RoleIT], c["id"], "approve", ""), 403, "forbidden", "")
		if r := n.decideChange(tok[access.RoleMarketing], c["id"], "approve", "fine"); r.status != 200 || r.json(t)["state"] != "approved" {
			t.Fatalf("marketing approves: %d %s", r.status, r.body)
		}
		n.collect(src["writeKey"].(string), 200)
		// Personal data brings IT in, also under marketing-led.
		src = n.proposeSource(tok[access.RoleMarketing], "crm-sync", "contact")
		if c := n.change(tok[access.RoleMarketing], src["change"]); src["approval"] != "pending" || !equalRoles(c["needs"], "it", "marketing") {
			t.Fatalf("contact under marketing-led: %v %v", src, c)
		}
	})

	t.Run("Joint", func(t *testing.T) {
		n, tok := start(t, policy.Joint, nil)
		src := n.proposeSource(tok[access.RoleMarketing], "newsletter-app", "behavioural")
		id := src["change"]
		c := n.change(tok[access.RoleMarketing], id)
		if src["approval"] != "pending" || !equalRoles(c["needs"], "it", "marketing") || c["state"] != "pending" ||
			c["kind"] != "source" || c["action"] != "create" || c["subject"] != src["id"] {
			t.Fatalf("joint: %v, change %v", src, c)
		}
		if a := c["approvals"].([]any); len(a) != 1 || a[0].(map[string]any)["role"] != "marketing" {
			t.Fatalf("the proposer's approval: %v", c["approvals"])
		}
		n.collect(src["writeKey"].(string), 403)
		// Informed roles (privacy, under joint) see it; roles without
		// changes:read may not list.
		if ids := n.changeIDs(tok[access.RolePrivacy], "pending"); !slices.Contains(ids, id.(string)) {
			t.Errorf("privacy (informed) does not see %s: %v", id, ids)
		}
		checkError(t, n.do("GET", "/api/v1/changes", "bearer:"+tok[access.RoleAnalyst], nil, nil), 403, "forbidden", "")
		checkError(t, n.decideChange(tok[access.RolePrivacy], id, "approve", ""), 403, "forbidden", "")
		if r := n.decideChange(tok[access.RoleIT], id, "approve", "reviewed"); r.status != 200 || r.json(t)["state"] != "approved" {
			t.Fatalf("it approves: %d %s", r.status, r.body)
		}
		n.collect(src["writeKey"].(string), 200)
		checkError(t, n.decideChange(tok[access.RoleIT], id, "reject", ""), 409, "change_decided", "")

		// A rejection is kept with its reason; the tool stays out.
		src = n.proposeSource(tok[access.RoleIT], "shadow-tool", "")
		rid := src["change"]
		if r := n.decideChange(tok[access.RoleMarketing], rid, "reject", "we have one already"); r.status != 200 {
			t.Fatalf("reject: %d %s", r.status, r.body)
		}
		c = n.change(tok[access.RoleIT], rid)
		if c["state"] != "rejected" || c["reason"] != "we have one already" || c["decidedAt"] == nil {
			t.Fatalf("rejected: %v", c)
		}
		if r := n.admin("GET", "/api/v1/sources/"+src["id"].(string), nil); r.json(t)["approval"] != "rejected" {
			t.Fatalf("rejected source: %s", r.body)
		}
		n.collect(src["writeKey"].(string), 403)
		if ids := n.changeIDs(tok[access.RoleIT], "rejected"); !slices.Equal(ids, []string{rid.(string)}) {
			t.Errorf("rejected list: %v", ids)
		}

		// Preview: what a change would need, without making it.
		r := n.do("POST", "/api/v1/changes/preview", "bearer:"+tok[access.RoleMarketing],
			[]byte(`{"kind":"destination","action":"create","after":{"dataCategories":["sensitive"]}}`), nil)
		if r.status != 200 || !equalRoles(r.json(t)["needs"], "it", "marketing", "privacy") || r.json(t)["direct"] != false {
			t.Fatalf("preview: %d %s", r.status, r.body)
		}
		r = n.admin("POST", "/api/v1/changes/preview", map[string]any{"kind": "source", "action": "create"})
		if r.status != 200 || r.json(t)["direct"] != true {
			t.Fatalf("preview as admin: %d %s", r.status, r.body)
		}
		checkError(t, n.admin("POST", "/api/v1/changes/preview", map[string]any{"kind": "apps", "action": "create"}), 400, "invalid_field", "kind")
		checkError(t, n.do("POST", "/api/v1/changes/preview", "bearer:"+tok[access.RoleIT], []byte(`{"kind":"consent_defaults","action":"update"}`), nil),
			403, "forbidden", "")

		// Every proposal and decision is in the audit log with the change's id.
		r = n.admin("GET", "/api/v1/audit?limit=1000", nil)
		var page struct {
			Items []map[string]any `json:"items"`
		}
		if err := json.Unmarshal(r.body, &page); err != nil {
			t.Fatal(err)
		}
		got := map[string]bool{}
		for _, e := range page.Items {
			if cr, _ := e["changeRequest"].(string); cr != "" {
				got[fmt.Sprint(e["action"], " ", cr)] = true
			}
		}
		for _, want := range []string{"change.propose " + id.(string), "change.approve " + id.(string), "source.approval " + id.(string),
			"source.create " + id.(string), "change.propose " + rid.(string), "change.reject " + rid.(string)} {
			if !got[want] {
				t.Errorf("audit log lacks %q: %v", want, got)
			}
		}
	})

	t.Run("ContactDestination", func(t *testing.T) {
		n, tok := start(t, policy.ITLed, func(c *config.Config) {
			c.DestinationAllow = []string{"127.0.0.0/8"}
			c.Consent.Defaults = map[string]bool{"crm": true}
		})
		var mu sync.Mutex
		var got []string
		rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			var e map[string]any
			_ = json.Unmarshal(b, &e)
			mu.Lock()
			got = append(got, fmt.Sprint(e["messageId"]))
			mu.Unlock()
		}))
		defer rc.Close()
		received := func() []string { mu.Lock(); defer mu.Unlock(); return slices.Clone(got) }
		body, _ := json.Marshal(map[string]any{"name": "CRM hook", "type": "webhook", "config": map[string]any{"url": rc.URL + "/hook"},
			"owner": "Marketing", "purpose": "sync contacts", "dataCategories": []string{"contact"}, "consentPurposes": []string{"crm"}})
		r := n.do("POST", "/api/v1/destinations", "bearer:"+tok[access.RoleMarketing], body, nil)
		if r.status != 201 {
			t.Fatalf("create: %d %s", r.status, r.body)
		}
		d := r.json(t)
		c := n.change(tok[access.RoleIT], d["change"])
		if d["approval"] != "pending" || !equalRoles(c["needs"], "it") || !equalRoles(c["informed"], "marketing") {
			t.Fatalf("marketing's contact destination: %v, change %v", d, c)
		}
		// A change is shown only to whom it concerns: privacy is neither
		// needed nor informed here.
		checkError(t, n.do("GET", "/api/v1/changes/"+d["change"].(string), "bearer:"+tok[access.RolePrivacy], nil, nil), 404, "not_found", "")
		if ids := n.changeIDs(tok[access.RolePrivacy], ""); len(ids) != 0 {
			t.Errorf("privacy lists %v", ids)
		}
		send := func(ids ...string) {
			t.Helper()
			var evs []string
			for _, id := range ids {
				evs = append(evs, fmt.Sprintf(`{"type":"track","event":"Order Completed","userId":"u1","messageId":%q}`, id))
			}
			if r := n.do("POST", "/v1/batch", "basic:"+n.writeKey, []byte(`{"batch":[`+strings.Join(evs, ",")+`]}`), nil); r.status != 200 {
				t.Fatalf("batch: %d %s", r.status, r.body)
			}
		}
		send("before-1", "before-2")
		n.drain()
		time.Sleep(1500 * time.Millisecond) // more than a delivery poll
		if g := received(); len(g) != 0 {
			t.Fatalf("a pending destination received %v", g)
		}
		checkError(t, n.decideChange(tok[access.RoleMarketing], d["change"], "approve", ""), 403, "forbidden", "")
		// IT approves through the destination's own approvals endpoint:
		// the decision goes on the change request.
		ab, _ := json.Marshal(map[string]any{"decision": "approve", "comment": "DPA signed"})
		r = n.do("POST", "/api/v1/destinations/"+d["id"].(string)+"/approvals", "bearer:"+tok[access.RoleIT], ab, nil)
		if r.status != 200 || r.json(t)["approval"] != "approved" || r.json(t)["change"] != d["change"] {
			t.Fatalf("approve: %d %s", r.status, r.body)
		}
		if c := n.change(tok[access.RoleMarketing], d["change"]); c["state"] != "approved" {
			t.Fatalf("the change after the approval: %v", c)
		}
		send("after-1", "after-2", "after-3")
		deadline := time.Now().Add(15 * time.Second)
		for len(received()) < 3 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(300 * time.Millisecond)
		if g := received(); strings.Join(g, ",") != "after-1,after-2,after-3" {
			t.Fatalf("received %v, want the three events sent after the approval, in order", g)
		}

		// A change of the approved destination by marketing is held: the
		// destination stays as it is (and keeps delivering) until IT
		// approves.
		pb, _ := json.Marshal(map[string]any{"config": map[string]any{"url": rc.URL + "/v2"}})
		r = n.do("PATCH", "/api/v1/destinations/"+d["id"].(string), "bearer:"+tok[access.RoleMarketing], pb, nil)
		if r.status != 202 {
			t.Fatalf("patch by marketing: %d %s", r.status, r.body)
		}
		pc := r.json(t)["change"].(map[string]any)
		if pc["kind"] != "destination" || pc["action"] != "update" || !equalRoles(pc["needs"], "it") {
			t.Fatalf("held patch: %v", pc)
		}
		if g, _ := n.srv.Governance.GetDestination(t.Context(), d["id"].(string)); g.Config["url"] != rc.URL+"/hook" || g.Approval != "approved" {
			t.Fatalf("the held change was applied: %v", g)
		}
		if r := n.decideChange(tok[access.RoleIT], pc["id"], "approve", ""); r.status != 200 {
			t.Fatalf("approve the patch: %d %s", r.status, r.body)
		}
		if g, _ := n.srv.Governance.GetDestination(t.Context(), d["id"].(string)); g.Config["url"] != rc.URL+"/v2" || g.Approval != "approved" {
			t.Fatalf("the approved change: %v", g)
		}
		// Adding sensitive data is a data_categories change needing privacy too.
		pb, _ = json.Marshal(map[string]any{"dataCategories": []string{"contact", "sensitive"}})
		r = n.do("PATCH", "/api/v1/destinations/"+d["id"].(string), "bearer:"+tok[access.RoleIT], pb, nil)
		if r.status != 202 || r.json(t)["change"].(map[string]any)["kind"] != "data_categories" ||
			!equalRoles(r.json(t)["change"].(map[string]any)["needs"], "it", "privacy") {
			t.Fatalf("categories patch by it: %d %s", r.status, r.body)
		}
		held := r.json(t)["change"].(map[string]any)["id"]
		// Deleting the destination withdraws what was pending on it.
		if r := n.do("DELETE", "/api/v1/destinations/"+d["id"].(string), "bearer:"+tok[access.RoleIT], nil, nil); r.status != 204 {
			t.Fatalf("delete: %d %s", r.status, r.body)
		}
		if c := n.change(tok[access.RoleIT], held); c["state"] != "rejected" || c["reason"] != "the destination was deleted" {
			t.Fatalf("the pending change after the deletion: %v", c)
		}
	})

	t.Run("SensitiveSource", func(t *testing.T) {
		n, tok := start(t, policy.ITLed, nil)
		src := n.proposeSource(tok[access.RoleMarketing], "health-app", "sensitive")
		id := src["change"]
		if c := n.change(tok[access.RolePrivacy], id); src["approval"] != "pending" || !equalRoles(c["needs"], "it", "privacy") {
			t.Fatalf("sensitive source: %v %v", src, c)
		}
		key := src["writeKey"].(string)
		n.collect(key, 403)
		if r := n.decideChange(tok[access.RoleIT], id, "approve", ""); r.status != 200 || r.json(t)["state"] != "pending" {
			t.Fatalf("it approves: %d %s", r.status, r.body)
		}
		n.collect(key, 403) // privacy has not approved yet
		if r := n.decideChange(tok[access.RolePrivacy], id, "approve", "DPIA done"); r.status != 200 || r.json(t)["state"] != "approved" {
			t.Fatalf("privacy approves: %d %s", r.status, r.body)
		}
		n.collect(key, 200)
		// Suspended again (a rejection through the source's approvals,
		// with no change pending): refused at collection at once.
		if r := n.do("POST", "/api/v1/sources/"+src["id"].(string)+"/approvals", "bearer:"+tok[access.RoleIT], []byte(`{"decision":"reject"}`), nil); r.status != 200 {
			t.Fatalf("reject: %d %s", r.status, r.body)
		}
		n.collect(key, 403)

		// A tracking plan proposed by marketing waits for IT; the plan in
		// force is unchanged until then.
		plan := []byte(`{"unplanned":"block","events":{"Opened":{}}}`)
		r := n.do("PUT", "/api/v1/tracking-plans/"+src["id"].(string), "bearer:"+tok[access.RoleMarketing], plan, nil)
		if r.status != 202 {
			t.Fatalf("plan by marketing: %d %s", r.status, r.body)
		}
		pc := r.json(t)["change"].(map[string]any)
		if pc["kind"] != "tracking_plan" || pc["action"] != "create" || !equalRoles(pc["needs"], "it") {
			t.Fatalf("held plan: %v", pc)
		}
		checkError(t, n.admin("GET", "/api/v1/tracking-plans/"+src["id"].(string), nil), 404, "not_found", "")
		if r := n.decideChange(tok[access.RoleIT], pc["id"], "approve", ""); r.status != 200 || r.json(t)["state"] != "approved" {
			t.Fatalf("approve the plan: %d %s", r.status, r.body)
		}
		r = n.admin("GET", "/api/v1/tracking-plans/"+src["id"].(string), nil)
		if r.status != 200 || r.json(t)["unplanned"] != "block" || r.json(t)["createdBy"] == nil {
			t.Fatalf("the approved plan: %d %s", r.status, r.body)
		}
		// A bad plan is refused at once, not held.
		checkError(t, n.do("PUT", "/api/v1/tracking-plans/"+src["id"].(string), "bearer:"+tok[access.RoleMarketing],
			[]byte(`{"unplanned":"sometimes","events":{}}`), nil), 400, "invalid_field", "unplanned")
	})
}

// proposeSource creates a source as the holder of token; cats is one
// data category or "".
func (n *node) proposeSource(token, name, cat string) map[string]any {
	n.t.Helper()
	cats := []string{}
	if cat != "" {
		cats = append(cats, cat)
	}
	b, _ := json.Marshal(map[string]any{"name": name, "kind": "web", "owner": "Marketing", "purpose": "test", "dataCategories": cats})
	r := n.do("POST", "/api/v1/sources", "bearer:"+token, b, nil)
	if r.status != 201 {
		n.t.Fatalf("create source %s: %d %s", name, r.status, r.body)
	}
	return r.json(n.t)
}

// collect sends one event with key and checks the status.
func (n *node) collect(key string, want int) {
	n.t.Helper()
	r := n.do("POST", "/v1/track", "basic:"+key, []byte(`{"userId":"u1","event":"Opened"}`), nil)
	if r.status != want {
		n.t.Fatalf("collect: %d %s, want %d", r.status, r.body, want)
	}
	if want == 403 {
		checkError(n.t, r, 403, "source_not_approved", "")
	}
}

func (n *node) change(token string, id any) map[string]any {
	n.t.Helper()
	s, ok := id.(string)
	if !ok || !strings.HasPrefix(s, "chg_") {
		n.t.Fatalf("no change id: %v", id)
	}
	r := n.do("GET", "/api/v1/changes/"+s, "bearer:"+token, nil, nil)
	if r.status != 200 {
		n.t.Fatalf("GET change %s: %d %s", s, r.status, r.body)
	}
	return r.json(n.t)
}

func (n *node) decideChange(token string, id any, decision, comment string) response {
	n.t.Helper()
	b, _ := json.Marshal(map[string]string{"decision": decision, "comment": comment})
	return n.do("POST", fmt.Sprintf("/api/v1/changes/%v/approvals", id), "bearer:"+token, b, nil)
}

func (n *node) changeIDs(token, state string) []string {
	n.t.Helper()
	r := n.do("GET", "/api/v1/changes?state="+state, "bearer:"+token, nil, nil)
	if r.status != 200 {
		n.t.Fatalf("GET changes: %d %s", r.status, r.body)
	}
	var page struct {
		Items []struct {
			ID string `json:"id"`
		} `json:"items"`
	}
	if err := json.Unmarshal(r.body, &page); err != nil {
		n.t.Fatal(err)
	}
	var ids []string
	for _, c := range page.Items {
		ids = append(ids, c.ID)
	}
	return ids
}

func equalRoles(v any, want ...string) bool {
	list, _ := v.([]any)
	if len(list) != len(want) {
		return false
	}
	for i := range list {
		if list[i] != want[i] {
			return false
		}
	}
	return true
}
