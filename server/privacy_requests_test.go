package server

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"tandem/access"
	"tandem/config"
)

// privacyRequest is a data-subject request as GET /privacy/requests/{id}
// shows it.
type privacyRequest struct {
	ID           string `json:"id"`
	Type         string `json:"type"`
	Status       string `json:"status"`
	Identity     struct{ Type, Value string }
	Verification struct {
		By, Method string
		At         time.Time
	}
	ProfileID   string     `json:"profileId"`
	CreatedAt   time.Time  `json:"createdAt"`
	Deadline    time.Time  `json:"deadline"`
	CompletedAt *time.Time `json:"completedAt"`
	Steps       []struct {
		Store, Destination, Status, Detail string
		At                                 time.Time
	} `json:"steps"`
}

func (n *node) fileRequest(token, typ, identType, identValue string) (string, string) {
	n.t.Helper()
	b, _ := json.Marshal(map[string]any{"type": typ, "identity": map[string]string{"type": identType, "value": identValue},
		"verification": map[string]string{"method": "e-mail round trip"}})
	r := n.do("POST", "/api/v1/privacy/requests", "bearer:"+token, b, nil)
	if r.status != 201 {
		n.t.Fatalf("file %s request: %d %s", typ, r.status, r.body)
	}
	m := r.json(n.t)
	return m["id"].(string), m["status"].(string)
}

func (n *node) getRequest(id string) privacyRequest {
	n.t.Helper()
	r := n.admin("GET", "/api/v1/privacy/requests/"+id, nil)
	if r.status != 200 {
		n.t.Fatalf("get request %s: %d %s", id, r.status, r.body)
	}
	var req privacyRequest
	if err := json.Unmarshal(r.body, &req); err != nil {
		n.t.Fatal(err)
	}
	return req
}

// TestPrivacyRequestsTracked: a privacy user files a request; it is kept
// with its deadline, who verified the subject and how, listed newest
// first, audited without the identifier, and refused to other roles.
func TestPrivacyRequestsTracked(t *testing.T) {
	n := startNode(t, "", nil)
	tokens := n.roleTokens()
	id, status := n.fileRequest(tokens[access.RolePrivacy], "access", "email", "ann.lee@example.com")
	if status != "received" || !strings.HasPrefix(id, "dsr_") {
		t.Fatalf("filed: %s %s", id, status)
	}
	req := n.getRequest(id)
	me := n.do("GET", "/api/v1/me", "bearer:"+tokens[access.RolePrivacy], nil, nil).json(t)
	if req.Type != "access" || req.Status != "received" || req.Identity.Type != "email" || req.Identity.Value != "ann.lee@example.com" ||
		req.Verification.By != me["id"] || req.Verification.Method != "e-mail round trip" || req.CompletedAt != nil || req.Steps == nil {
		t.Errorf("request: %+v (me %v)", req, me)
	}
	if d := req.Deadline.Sub(req.CreatedAt); d != 30*24*time.Hour || time.Since(req.CreatedAt) > time.Minute {
		t.Errorf("created %v, deadline %v", req.CreatedAt, req.Deadline)
	}
	second, _ := n.fileRequest(n.token, "portability", "user_id", "u1")
	third, _ := n.fileRequest(n.token, "erasure", "user_id", "u2")
	page1 := n.admin("GET", "/api/v1/privacy/requests?limit=2", nil).json(t)
	items := page1["items"].([]any)
	if len(items) != 2 || items[0].(map[string]any)["id"] != third || items[1].(map[string]any)["id"] != second || page1["next"] == nil {
		t.Fatalf("page 1: %v", page1)
	}
	page2 := n.admin("GET", "/api/v1/privacy/requests?limit=2&cursor="+page1["next"].(string), nil).json(t)
	if items := page2["items"].([]any); len(items) != 1 || items[0].(map[string]any)["id"] != id || page2["next"] != nil {
		t.Fatalf("page 2: %v", page2)
	}

	// Bad input names its field.
	bad := func(body, field string) {
		t.Helper()
		checkError(t, n.do("POST", "/api/v1/privacy/requests", "bearer:"+n.token, []byte(body), nil), 400, "", field)
	}
	bad(`{"type":"delete","identity":{"type":"email","value":"a@b.c"},"verification":{"method":"x"}}`, "type")
	bad(`{"type":"access","identity":{"type":"email","value":""},"verification":{"method":"x"}}`, "identity.value")
	bad(`{"type":"access","identity":{"type":"email","value":"a@b.c"}}`, "verification.method")
	bad(`{"type":"access","identity":{"type":"shoe_size","value":"42"},"verification":{"method":"x"}}`, "identity.type")
	checkError(t, n.admin("GET", "/api/v1/privacy/requests/dsr_nope", nil), 404, "not_found", "")
	// Only admin and privacy.
	for _, role := range []access.Role{access.RoleIT, access.RoleMarketing, access.RoleAnalyst, access.RoleService, access.RoleSales} {
		checkError(t, n.do("GET", "/api/v1/privacy/requests/"+id, "bearer:"+tokens[role], nil, nil), 403, "forbidden", "")
		checkError(t, n.do("POST", "/api/v1/privacy/requests", "bearer:"+tokens[role], []byte(`{}`), nil), 403, "forbidden", "")
	}
	// Audited, without the identifier.
	raw := string(n.admin("GET", "/api/v1/audit?limit=1000", nil).body)
	if !strings.Contains(raw, `"privacy_request.create"`) || !strings.Contains(raw, "privacy_request/"+id) || !strings.Contains(raw, "e-mail round trip") {
		t.Errorf("audit lacks the filing: %s", raw)
	}
	if strings.Contains(raw, "ann.lee@example.com") {
		t.Errorf("audit holds the subject's identifier: %s", raw)
	}
}

// TestPrivacyObjection: an objection refuses the marketing purposes for
// the person's profile at once (source objection), and leaves another
// person's consent alone.
func TestPrivacyObjection(t *testing.T) {
	n := startNode(t, "", nil)
	for _, body := range []string{
		`{"type":"track","event":"Viewed","userId":"u1","messageId":"m1","context":{"consent":{"categoryPreferences":{"Advertising":true,"Analytics":true}}}}`,
		`{"type":"track","event":"Viewed","userId":"u2","messageId":"m2","context":{"consent":{"categoryPreferences":{"Advertising":true}}}}`,
	} {
		if r := n.do("POST", "/v1/track", "basic:"+n.writeKey, []byte(body), nil); r.status != 200 {
			t.Fatalf("track: %d %s", r.status, r.body)
		}
	}
	n.drain()
	id, status := n.fileRequest(n.token, "objection", "user_id", "u1")
	if status != "completed" {
		t.Fatalf("objection status %s", status)
	}
	req := n.getRequest(id)
	if req.CompletedAt == nil || len(req.Steps) != 1 || req.Steps[0].Store != "consent" || req.Steps[0].Status != "completed" || req.ProfileID == "" {
		t.Errorf("objection: %+v", req)
	}
	consent := func(user string) map[string]any {
		t.Helper()
		r := n.admin("GET", "/api/v1/profiles/lookup?identifier=user_id:"+user, nil)
		if r.status != 200 {
			t.Fatalf("lookup %s: %d %s", user, r.status, r.body)
		}
		return r.json(t)["consent"].(map[string]any)
	}
	c1 := consent("u1")
	p1 := c1["purposes"].(map[string]any)
	if p1["Advertising"] != false || p1["DataSharing"] != false || p1["Marketing"] != false || p1["Analytics"] != true || c1["source"] != "objection" {
		t.Errorf("u1 after objection: %v", c1)
	}
	if p2 := consent("u2")["purposes"].(map[string]any); p2["Advertising"] != true {
		t.Errorf("u2 changed: %v", p2)
	}
	// An identity no profile holds: completed, nothing refused.
	if _, status := n.fileRequest(n.token, "objection", "user_id", "nobody"); status != "completed" {
		t.Errorf("objection of an unknown person: %s", status)
	}
}

// TestPrivacyExport: the access export of a subject holds every event and
// trait of theirs across merged identities (an anonymous visit before the
// login included), their consent and its history, and nothing of another
// person; it completes the request. An erasure request has no export.
func TestPrivacyExport(t *testing.T) {
	n := startNode(t, "", nil)
	for _, body := range []string{
		`{"type":"page","anonymousId":"a-ann","messageId":"m-visit","name":"Home"}`,
		`{"type":"identify","anonymousId":"a-ann","userId":"u-ann","messageId":"m-login","traits":{"email":"ann@example.com","plan":"gold"}}`,
		`{"type":"track","userId":"u-ann","messageId":"m-buy","event":"Order Completed","properties":{"total":12},"context":{"consent":{"categoryPreferences":{"Advertising":false}}}}`,
		`{"type":"identify","userId":"u-bob","messageId":"m-bob","traits":{"email":"bob@example.org","plan":"silver"}}`,
		`{"type":"track","userId":"u-bob","messageId":"m-bob-buy","event":"Order Completed"}`,
	} {
		typ := strings.SplitN(strings.SplitN(body, `"type":"`, 2)[1], `"`, 2)[0]
		if r := n.do("POST", "/v1/"+typ, "basic:"+n.writeKey, []byte(body), nil); r.status != 200 {
			t.Fatalf("%s: %d %s", typ, r.status, r.body)
		}
	}
	n.drain()
	id, _ := n.fileRequest(n.token, "access", "email", "ann@example.com")
	r := n.admin("GET", "/api/v1/privacy/requests/"+id+"/export", nil)
	if r.status != 200 || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("export: %d %s", r.status, r.body)
	}
	var x struct {
		Schema  string `json:"schema"`
		Request struct {
			ID string `json:"id"`
		} `json:"request"`
		Profile struct {
			ID          string `json:"id"`
			Identifiers []struct{ Type, Value string }
			Traits      map[string]any
		} `json:"profile"`
		Consent struct {
			Purposes map[string]bool `json:"purposes"`
		} `json:"consent"`
		ConsentHistory []map[string]any `json:"consentHistory"`
		Events         []map[string]any `json:"events"`
	}
	if err := json.Unmarshal(r.body, &x); err != nil {
		t.Fatalf("export is not JSON: %v: %s", err, r.body)
	}
	if x.Schema != "tandem.privacy.export/1" || x.Request.ID != id || x.Profile.ID == "" {
		t.Errorf("head: %+v", x)
	}
	msgs := map[string]bool{}
	for _, e := range x.Events {
		msgs[e["messageId"].(string)] = true
	}
	if len(x.Events) != 3 || !msgs["m-visit"] || !msgs["m-login"] || !msgs["m-buy"] {
		t.Errorf("events: %v", msgs)
	}
	ids := map[string]bool{}
	for _, i := range x.Profile.Identifiers {
		ids[i.Type+":"+i.Value] = true
	}
	if !ids["anonymous_id:a-ann"] || !ids["user_id:u-ann"] || !ids["email:ann@example.com"] || x.Profile.Traits["plan"] != "gold" {
		t.Errorf("profile: %+v", x.Profile)
	}
	if x.Consent.Purposes["Advertising"] != false || len(x.ConsentHistory) != 1 {
		t.Errorf("consent %v, history %v", x.Consent, x.ConsentHistory)
	}
	if body := string(r.body); strings.Contains(body, "bob") || strings.Contains(body, "silver") {
		t.Errorf("export holds another person's data: %s", body)
	}
	req := n.getRequest(id)
	if req.Status != "completed" || req.CompletedAt == nil || len(req.Steps) != 1 || req.Steps[0].Store != "export" || req.ProfileID != x.Profile.ID {
		t.Errorf("after export: %+v", req)
	}
	erase, _ := n.fileRequest(n.token, "erasure", "email", "ann@example.com")
	checkError(t, n.admin("GET", "/api/v1/privacy/requests/"+erase+"/export", nil), 409, "not_exportable", "")
	// No profile holds the identity: an empty export.
	none, _ := n.fileRequest(n.token, "portability", "email", "nobody@example.com")
	if r := n.admin("GET", "/api/v1/privacy/requests/"+none+"/export", nil); r.status != 200 || !strings.Contains(string(r.body), `"profile":null`) {
		t.Errorf("export of nobody: %d %s", r.status, r.body)
	}
}

// TestPrivacyErasure: an erasure request deletes the person from every
// store (profile, identifiers and traits, events across merged
// identities, consent, quarantined payloads), each a completed step, and
// leaves another person's data intact.
func TestPrivacyErasure(t *testing.T) {
	n := startNode(t, "", func(c *config.Config) { c.DestinationAllow = []string{"127.0.0.0/8"} })
	// A real local webhook receiver, approved: it gets the events, then
	// the erasure notice.
	var mu sync.Mutex
	var got []map[string]any
	rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var e map[string]any
		_ = json.Unmarshal(b, &e)
		mu.Lock()
		got = append(got, e)
		mu.Unlock()
	}))
	defer rc.Close()
	received := func(key, value string) map[string]any {
		mu.Lock()
		defer mu.Unlock()
		for _, e := range got {
			if e[key] == value {
				return e
			}
		}
		return nil
	}
	dr := n.admin("POST", "/api/v1/destinations", map[string]any{"name": "crm", "type": "webhook",
		"config": map[string]any{"url": rc.URL}, "owner": "Sales", "purpose": "contacts",
		"dataCategories": []string{"contact"}, "consentPurposes": []string{}, "monthlyCost": 1})
	if dr.status != 201 {
		t.Fatalf("create destination: %d %s", dr.status, dr.body)
	}
	destID := dr.json(t)["id"].(string)
	if dr.json(t)["approval"] != "approved" {
		if r := n.admin("POST", "/api/v1/destinations/"+destID+"/approvals", map[string]any{"decision": "approve"}); r.status != 200 {
			t.Fatalf("approve: %d %s", r.status, r.body)
		}
	}
	send := func(path, body string) {
		t.Helper()
		if r := n.do("POST", path, "basic:"+n.writeKey, []byte(body), nil); r.status != 200 {
			t.Fatalf("%s: %d %s", path, r.status, r.body)
		}
	}
	for _, who := range []string{"ann", "bob"} {
		send("/v1/page", `{"anonymousId":"a-`+who+`","messageId":"m-visit-`+who+`","name":"Home"}`)
		send("/v1/identify", `{"anonymousId":"a-`+who+`","userId":"u-`+who+`","messageId":"m-login-`+who+`","traits":{"email":"`+who+`@example.com","plan":"gold"}}`)
		send("/v1/track", `{"userId":"u-`+who+`","messageId":"m-buy-`+who+`","event":"Order Completed","context":{"consent":{"categoryPreferences":{"Advertising":true}}}}`)
		// Refused by validation (no event name): held in the quarantine.
		n.do("POST", "/v1/track", "basic:"+n.writeKey, []byte(`{"userId":"u-`+who+`","messageId":"m-bad-`+who+`"}`), nil)
	}
	n.drain()
	for deadline := time.Now().Add(15 * time.Second); received("messageId", "m-buy-ann") == nil; {
		if time.Now().After(deadline) {
			t.Fatal("the receiver never got ann's events")
		}
		sleepMS(50)
	}
	if q := n.quarantine(); len(q) != 2 {
		t.Fatalf("quarantine before: %v", q)
	}
	id, status := n.fileRequest(n.token, "erasure", "email", "ann@example.com")
	if status != "completed" {
		t.Fatalf("erasure: %s %+v", status, n.getRequest(id))
	}
	req := n.getRequest(id)
	stores := map[string]string{}
	for _, s := range req.Steps {
		stores[s.Store] = s.Status
	}
	for _, s := range []string{"events", "consent", "quarantine", "identity"} {
		if stores[s] != "completed" {
			t.Errorf("step %s: %q (%+v)", s, stores[s], req.Steps)
		}
	}
	forwarded := false
	for _, s := range req.Steps {
		forwarded = forwarded || (s.Destination == destID && s.Status == "completed")
	}
	notice := received("type", "erasure")
	if !forwarded || notice == nil || notice["userId"] != "u-ann" || notice["requestId"] != id || !strings.Contains(fmt_(notice), "ann@example.com") {
		t.Errorf("erasure forwarded: step %v, notice %v (steps %+v)", forwarded, notice, req.Steps)
	}
	// Nothing of ann anywhere.
	for _, ident := range []string{"email:ann@example.com", "user_id:u-ann", "anonymous_id:a-ann"} {
		checkError(t, n.admin("GET", "/api/v1/profiles/lookup?identifier="+ident, nil), 404, "not_found", "")
	}
	for _, m := range []string{"m-visit-ann", "m-login-ann", "m-buy-ann"} {
		checkError(t, n.admin("GET", "/api/v1/events/"+m, nil), 404, "not_found", "")
	}
	if evs := n.events("profile=u-ann"); len(evs) != 0 {
		t.Errorf("events of u-ann: %v", evs)
	}
	if req.ProfileID != "" {
		checkError(t, n.admin("GET", "/api/v1/profiles/"+req.ProfileID+"/consent/history", nil), 404, "not_found", "")
	}
	q := n.quarantine()
	if len(q) != 1 || strings.Contains(fmt_(q), "u-ann") {
		t.Errorf("quarantine after: %v", q)
	}
	// Bob is intact.
	r := n.admin("GET", "/api/v1/profiles/lookup?identifier=email:bob@example.com", nil)
	if r.status != 200 {
		t.Fatalf("bob: %d %s", r.status, r.body)
	}
	bob := r.json(t)
	if bob["traits"].(map[string]any)["plan"] != "gold" || bob["consent"].(map[string]any)["purposes"].(map[string]any)["Advertising"] != true {
		t.Errorf("bob after: %v", bob)
	}
	if evs := n.events("profile=" + bob["id"].(string)); len(evs) != 3 {
		t.Errorf("bob's events: %d", len(evs))
	}
	// The audit records the erasure without the identifier.
	raw := string(n.admin("GET", "/api/v1/audit?limit=1000", nil).body)
	if !strings.Contains(raw, `"privacy_request.completed"`) || strings.Contains(raw, "ann@example.com") {
		t.Errorf("audit: %s", raw)
	}
}

func fmt_(v any) string { b, _ := json.Marshal(v); return string(b) }
