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
	"tandem/delivery"
)

// TestDestinationsAPI drives destinations through the management API on a
// real node: an it user creates a webhook (pending, secret never shown),
// events sent before approval never reach the receiver, events after do,
// signed; deliveries, metrics, replay, PATCH and DELETE answer as
// documented.
func TestDestinationsAPI(t *testing.T) {
	n := startNode(t, "", func(c *config.Config) {
		c.DestinationAllow = []string{"127.0.0.0/8"}
		c.Consent.Defaults = map[string]bool{"crm": true} // the destination's purpose
	})
	var mu sync.Mutex
	var got []string
	badSig := 0
	rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var e map[string]any
		_ = json.Unmarshal(b, &e)
		mu.Lock()
		defer mu.Unlock()
		if r.Header.Get("X-Tandem-Signature") != delivery.Sign("topsecret", b) {
			badSig++
		}
		got = append(got, fmt.Sprint(e["messageId"]))
	}))
	defer rc.Close()
	received := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), got...)
	}

	user := func(role string) string {
		r := n.admin("POST", "/api/v1/users", map[string]any{"name": role + "-user", "role": role})
		if r.status != 201 {
			t.Fatalf("create user: %d %s", r.status, r.body)
		}
		return r.json(t)["token"].(string)
	}
	it, marketing, analyst := user("it"), user("marketing"), user("analyst")
	body := map[string]any{"name": "CRM hook", "type": "webhook", "config": map[string]any{"url": rc.URL + "/hook", "secret": "topsecret"},
		"owner": "Sales", "purpose": "sync contacts", "dataCategories": []string{"contact"}, "consentPurposes": []string{"crm"}, "monthlyCost": 50}
	b, _ := json.Marshal(body)
	checkError(t, n.do("POST", "/api/v1/destinations", "bearer:"+analyst, b, nil), 403, "forbidden", "")
	bad, _ := json.Marshal(map[string]any{"name": "x", "type": "webhook", "config": map[string]any{}, "owner": "IT"})
	checkError(t, n.do("POST", "/api/v1/destinations", "bearer:"+it, bad, nil), 400, "invalid_field", "config.url")
	bad, _ = json.Marshal(map[string]any{"name": "x", "type": "fax", "owner": "IT"})
	checkError(t, n.do("POST", "/api/v1/destinations", "bearer:"+it, bad, nil), 400, "invalid_field", "type")
	bad, _ = json.Marshal(map[string]any{"name": "x", "type": "webhook", "config": map[string]any{"url": "http://169.254.169.254/latest"}, "owner": "IT"})
	checkError(t, n.do("POST", "/api/v1/destinations", "bearer:"+it, bad, nil), 400, "invalid_field", "config.url")

	// Proposed by marketing, a destination of contact data waits for IT.
	r := n.do("POST", "/api/v1/destinations", "bearer:"+marketing, b, nil)
	if r.status != 201 {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	if strings.Contains(string(r.body), "topsecret") {
		t.Fatalf("the secret came back: %s", r.body)
	}
	d := r.json(t)
	id := d["id"].(string)
	if d["approval"] != "pending" || d["config"].(map[string]any)["secret"] != "(set)" {
		t.Fatalf("created: %s", r.body)
	}
	for _, path := range []string{"/api/v1/destinations/" + id, "/api/v1/destinations"} {
		r := n.admin("GET", path, nil)
		if r.status != 200 || strings.Contains(string(r.body), "topsecret") || !strings.Contains(string(r.body), id) {
			t.Fatalf("GET %s: %d %s", path, r.status, r.body)
		}
	}

	send := func(ids ...string) {
		t.Helper()
		var evs []string
		for _, id := range ids {
			evs = append(evs, fmt.Sprintf(`{"type":"track","event":"Order Completed","userId":"u1","messageId":%q}`, id))
		}
		r := n.do("POST", "/v1/batch", "basic:"+n.writeKey, []byte(`{"batch":[`+strings.Join(evs, ",")+`]}`), nil)
		if r.status != 200 {
			t.Fatalf("batch: %d %s", r.status, r.body)
		}
	}
	send("before-1", "before-2")
	time.Sleep(1500 * time.Millisecond) // more than a poll
	if g := received(); len(g) != 0 {
		t.Fatalf("pending destination received %v", g)
	}
	// it may decide approvals; replay before approval is a 409.
	checkError(t, n.do("POST", "/api/v1/destinations/"+id+"/replay", "bearer:"+it, nil, nil), 409, "not_delivering", "")
	ab, _ := json.Marshal(map[string]any{"decision": "approve", "comment": "DPA signed"})
	if r := n.do("POST", "/api/v1/destinations/"+id+"/approvals", "bearer:"+it, ab, nil); r.status != 200 || r.json(t)["approval"] != "approved" {
		t.Fatalf("approve: %d %s", r.status, r.body)
	}
	send("after-1", "after-2", "after-3")
	deadline := time.Now().Add(15 * time.Second)
	for len(received()) < 3 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	if g := received(); strings.Join(g, ",") != "after-1,after-2,after-3" {
		t.Fatalf("received %v, want the three events sent after approval, in order", g)
	}
	if badSig != 0 {
		t.Fatal("bad signature")
	}

	r = n.do("GET", "/api/v1/destinations/"+id+"/deliveries", "bearer:"+it, nil, nil)
	var atts struct {
		Items []delivery.Attempt `json:"items"`
	}
	if r.status != 200 || json.Unmarshal(r.body, &atts) != nil || len(atts.Items) != 3 || atts.Items[0].MessageID != "after-3" || atts.Items[0].Status != "delivered" {
		t.Fatalf("deliveries: %d %s", r.status, r.body)
	}
	checkError(t, n.do("GET", "/api/v1/destinations/"+id+"/deliveries", "bearer:"+marketing, nil, nil), 403, "forbidden", "")
	if r := n.do("POST", "/api/v1/destinations/"+id+"/replay", "bearer:"+it, nil, nil); r.status != 202 || r.json(t)["replaying"] != float64(0) {
		t.Fatalf("replay: %d %s", r.status, r.body)
	}
	m := n.do("GET", "/metrics", "", nil, nil)
	if !strings.Contains(string(m.body), `tandem_delivery_events_total{destination="`+id+`",outcome="delivered"} 3`) ||
		!strings.Contains(string(m.body), `tandem_delivery_events_total{destination="`+id+`",outcome="before_approval"} 2`) {
		t.Fatalf("metrics:\n%s", m.body)
	}

	// PATCH: a new URL by it (which the decision rights let decide
	// alone) takes effect at once; the secret, left out, is kept. The
	// same by marketing waits for IT (202).
	pb, _ := json.Marshal(map[string]any{"config": map[string]any{"url": rc.URL + "/v2"}, "owner": "Support"})
	r = n.do("PATCH", "/api/v1/destinations/"+id, "bearer:"+it, pb, nil)
	if r.status != 200 || r.json(t)["approval"] != "approved" || r.json(t)["owner"] != "Support" || r.json(t)["config"].(map[string]any)["secret"] != "(set)" {
		t.Fatalf("patch: %d %s", r.status, r.body)
	}
	if g, err := n.srv.Governance.GetDestination(t.Context(), id); err != nil || g.Config["secret"] != "topsecret" {
		t.Fatalf("stored secret after patch: %v %v", g.Config, err)
	}
	pb, _ = json.Marshal(map[string]any{"config": map[string]any{"url": rc.URL + "/v3", "secret": "newsecret"}})
	r = n.do("PATCH", "/api/v1/destinations/"+id, "bearer:"+marketing, pb, nil)
	if r.status != 202 || strings.Contains(string(r.body), "newsecret") || strings.Contains(string(r.body), "topsecret") {
		t.Fatalf("patch by marketing: %d %s", r.status, r.body)
	}
	if g, _ := n.srv.Governance.GetDestination(t.Context(), id); g.Config["url"] != rc.URL+"/v2" {
		t.Fatalf("a held patch was applied: %v", g.Config)
	}
	r = n.admin("GET", "/api/v1/destinations/"+id+"/approvals", nil)
	if r.status != 200 || !strings.Contains(string(r.body), `"DPA signed"`) {
		t.Fatalf("approvals: %d %s", r.status, r.body)
	}
	if r := n.do("DELETE", "/api/v1/destinations/"+id, "bearer:"+it, nil, nil); r.status != 204 {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	// Every change is in the audit log, without the secret.
	r = n.admin("GET", "/api/v1/audit?resource=destination/"+id, nil)
	if r.status != 200 || strings.Contains(string(r.body), "topsecret") {
		t.Fatalf("audit: %d %s", r.status, r.body)
	}
	for _, action := range []string{"destination.create", "destination.approval", "destination.replay", "destination.update", "destination.delete"} {
		if !strings.Contains(string(r.body), `"`+action+`"`) {
			t.Errorf("audit log lacks %s: %s", action, r.body)
		}
	}
	checkError(t, n.admin("GET", "/api/v1/destinations/"+id, nil), 404, "not_found", "")
	checkError(t, n.admin("DELETE", "/api/v1/destinations/"+id, nil), 404, "not_found", "")
}

// TestSegmentForward: node A forwards to node B through a destination of
// type segment (B's Segment-compatible collection API and a write key of
// B); every event sent to A is stored by B, with its messageId, type and
// properties.
func TestSegmentForward(t *testing.T) {
	b := startNode(t, "", nil)
	a := startNode(t, "", func(c *config.Config) { c.DestinationAllow = []string{"127.0.0.0/8"} })
	r := a.admin("POST", "/api/v1/destinations", map[string]any{"name": "to B", "type": "segment",
		"config": map[string]any{"url": b.url, "writeKey": b.writeKey, "batch": 10}, "owner": "IT"})
	if r.status != 201 || strings.Contains(string(r.body), b.writeKey) {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	var evs []string
	var ids []string
	for i := range 25 {
		id := fmt.Sprintf("fwd-%02d", i)
		ids = append(ids, id)
		evs = append(evs, fmt.Sprintf(`{"type":"track","event":"Forwarded","userId":"u%d","messageId":%q,"properties":{"i":%d}}`, i%3, id, i))
	}
	evs = append(evs, `{"type":"identify","userId":"u1","messageId":"fwd-id","traits":{"plan":"pro"}}`)
	ids = append(ids, "fwd-id")
	if r := a.do("POST", "/v1/batch", "basic:"+a.writeKey, []byte(`{"batch":[`+strings.Join(evs, ",")+`]}`), nil); r.status != 200 {
		t.Fatalf("batch to A: %d %s", r.status, r.body)
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, id := range ids {
		for {
			r := b.admin("GET", "/api/v1/events/"+id, nil)
			if r.status == 200 {
				e := r.json(t)
				if id == "fwd-id" && e["type"] != "identify" {
					t.Errorf("%s: %s", id, r.body)
				}
				if id != "fwd-id" && (e["type"] != "track" || !strings.Contains(string(r.body), "Forwarded")) {
					t.Errorf("%s: %s", id, r.body)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("event %s never reached B (last answer %d %s)", id, r.status, r.body)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// A bad write key on B's side is a 401: not retried, dead-lettered.
	r = a.admin("POST", "/api/v1/destinations", map[string]any{"name": "bad key", "type": "segment",
		"config": map[string]any{"url": b.url, "writeKey": "wk_nope"}, "owner": "IT"})
	if r.status != 201 {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	id := r.json(t)["id"].(string)
	time.Sleep(300 * time.Millisecond)
	if r := a.do("POST", "/v1/track", "basic:"+a.writeKey, []byte(`{"event":"X","userId":"u9","messageId":"fwd-bad"}`), nil); r.status != 200 {
		t.Fatalf("track: %d %s", r.status, r.body)
	}
	deadline = time.Now().Add(15 * time.Second)
	for {
		r := a.admin("GET", "/api/v1/destinations/"+id+"/dead-letters", nil)
		if r.status == 200 && strings.Contains(string(r.body), "fwd-bad") {
			if !strings.Contains(string(r.body), "HTTP 401") || strings.Contains(string(r.body), "wk_nope") {
				t.Fatalf("dead letters: %s", r.body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no dead letter: %d %s", r.status, r.body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestDeliveryHonoursConsent: a destination that declares a consent
// purpose receives only the events of people who granted it — by their
// event's own categoryPreferences, by an earlier decision of theirs, or by
// the configured default — and nothing of people who refused it, sent
// Sec-GPC: 1 for a sale/sharing purpose, or made no decision where the
// default refuses. Refusals are counted, not errors.
func TestDeliveryHonoursConsent(t *testing.T) {
	n := startNode(t, "", func(c *config.Config) {
		c.DestinationAllow = []string{"127.0.0.0/8"}
		c.Consent.Defaults = map[string]bool{"Advertising": false}
	})
	var mu sync.Mutex
	got := map[string]bool{}
	rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var e map[string]any
		_ = json.Unmarshal(b, &e)
		mu.Lock()
		got[fmt.Sprint(e["messageId"])] = true
		mu.Unlock()
	}))
	defer rc.Close()
	r := n.admin("POST", "/api/v1/destinations", map[string]any{"name": "ads", "type": "webhook",
		"config": map[string]any{"url": rc.URL}, "owner": "Marketing", "purpose": "retargeting",
		"dataCategories": []string{"contact"}, "consentPurposes": []string{"Advertising"}, "monthlyCost": 10})
	if r.status != 201 {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	id := r.json(t)["id"].(string)
	if d := r.json(t)["approval"]; d != "approved" {
		if r := n.admin("POST", "/api/v1/destinations/"+id+"/approvals", map[string]any{"decision": "approve"}); r.status != 200 {
			t.Fatalf("approve: %d %s", r.status, r.body)
		}
	}
	send := func(body string, headers map[string]string) {
		t.Helper()
		if r := n.do("POST", "/v1/batch", "basic:"+n.writeKey, []byte(body), headers); r.status != 200 {
			t.Fatalf("batch: %d %s", r.status, r.body)
		}
	}
	granted := `{"consent":{"categoryPreferences":{"Advertising":true}}}`
	refused := `{"consent":{"categoryPreferences":{"Advertising":false}}}`
	send(`{"batch":[
		{"type":"track","event":"Viewed","userId":"yes","messageId":"yes-1","context":`+granted+`},
		{"type":"track","event":"Viewed","userId":"no","messageId":"no-1","context":`+refused+`},
		{"type":"track","event":"Viewed","userId":"unknown","messageId":"unknown-1"}]}`, nil)
	// A later event of someone who granted before, without consent of its
	// own (once the pipeline has recorded the decision: the route judges
	// by recorded consent and the event's own); and someone who granted
	// but whose browser sends Sec-GPC: 1.
	deadline := time.Now().Add(15 * time.Second)
	for {
		r := n.admin("GET", "/api/v1/profiles/lookup?identifier=user_id:yes", nil)
		if r.status == 200 {
			if c, _ := r.json(t)["consent"].(map[string]any); c != nil {
				if p, _ := c["purposes"].(map[string]any); p["Advertising"] == true {
					break
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the pipeline never recorded the consent of yes-1: %d %s", r.status, r.body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	send(`{"batch":[{"type":"track","event":"Viewed","userId":"yes","messageId":"yes-2"}]}`, nil)
	send(`{"batch":[{"type":"track","event":"Viewed","userId":"gpc","messageId":"gpc-1","context":`+granted+`}]}`, map[string]string{"Sec-GPC": "1"})
	want := []string{"yes-1", "yes-2"}
	deadline = time.Now().Add(15 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n >= len(want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(1500 * time.Millisecond) // anything that should not arrive has had its chance
	mu.Lock()
	defer mu.Unlock()
	for _, m := range want {
		if !got[m] {
			t.Errorf("%s (consent granted) was not delivered; got %v", m, got)
		}
	}
	for _, m := range []string{"no-1", "unknown-1", "gpc-1"} {
		if got[m] {
			t.Errorf("%s was delivered without consent", m)
		}
	}
	if v := metricValue(t, n, `tandem_delivery_events_total{destination="`+id+`",outcome="no_consent"}`); v != 3 {
		t.Errorf("no_consent counted %v times, want 3", v)
	}
}

// TestDeliveryConsentPerPurpose: a profile that withdrew Marketing reaches
// the analytics destination and never the marketing one; and a withdrawal
// made through the API while the profile's events sit in the marketing
// destination's retry queue holds for those events: once the receiver
// recovers they are not sent to it (counted as no_consent), while the
// analytics destination got them.
func TestDeliveryConsentPerPurpose(t *testing.T) {
	n := startNode(t, "", func(c *config.Config) {
		c.DestinationAllow = []string{"127.0.0.0/8"}
		c.Consent.Defaults = map[string]bool{"Analytics": true}
	})
	type receiver struct {
		mu     sync.Mutex
		failed map[string]int  // messageId → answers 500
		got    map[string]bool // messageId → accepted (200)
		down   bool
	}
	serve := func(rv *receiver) *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			var e map[string]any
			_ = json.Unmarshal(b, &e)
			m := fmt.Sprint(e["messageId"])
			rv.mu.Lock()
			defer rv.mu.Unlock()
			if rv.down {
				rv.failed[m]++
				w.WriteHeader(http.StatusInternalServerError)
				return
			}
			rv.got[m] = true
		}))
	}
	mkt := &receiver{failed: map[string]int{}, got: map[string]bool{}}
	ana := &receiver{failed: map[string]int{}, got: map[string]bool{}}
	mktSrv, anaSrv := serve(mkt), serve(ana)
	defer mktSrv.Close()
	defer anaSrv.Close()
	create := func(name, url, purpose string) string {
		t.Helper()
		r := n.admin("POST", "/api/v1/destinations", map[string]any{"name": name, "type": "webhook",
			"config": map[string]any{"url": url}, "owner": "Marketing", "purpose": name,
			"dataCategories": []string{"contact"}, "consentPurposes": []string{purpose}, "monthlyCost": 10})
		if r.status != 201 {
			t.Fatalf("create %s: %d %s", name, r.status, r.body)
		}
		id := r.json(t)["id"].(string)
		if d := r.json(t)["approval"]; d != "approved" {
			if r := n.admin("POST", "/api/v1/destinations/"+id+"/approvals", map[string]any{"decision": "approve"}); r.status != 200 {
				t.Fatalf("approve %s: %d %s", name, r.status, r.body)
			}
		}
		return id
	}
	mktID := create("newsletter", mktSrv.URL, "Marketing")
	anaID := create("warehouse", anaSrv.URL, "Analytics")
	send := func(body string) {
		t.Helper()
		if r := n.do("POST", "/v1/batch", "basic:"+n.writeKey, []byte(body), nil); r.status != 200 {
			t.Fatalf("batch: %d %s", r.status, r.body)
		}
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	has := func(rv *receiver, ids ...string) func() bool {
		return func() bool {
			rv.mu.Lock()
			defer rv.mu.Unlock()
			for _, m := range ids {
				if !rv.got[m] {
					return false
				}
			}
			return true
		}
	}
	noConsent := func(id string) float64 {
		r := n.do("GET", "/metrics", "", nil, nil)
		name := `tandem_delivery_events_total{destination="` + id + `",outcome="no_consent"} `
		for _, l := range strings.Split(string(r.body), "\n") {
			if v, ok := strings.CutPrefix(l, name); ok {
				var f float64
				_, _ = fmt.Sscan(v, &f)
				return f
			}
		}
		return 0
	}

	// 1. Withdrawn by the event itself: analytics yes, marketing no; a
	// person who granted Marketing reaches it (the route is not simply shut).
	both := `{"consent":{"categoryPreferences":{"Marketing":true,"Analytics":true}}}`
	withdrawn := `{"consent":{"categoryPreferences":{"Marketing":false,"Analytics":true}}}`
	send(`{"batch":[
		{"type":"track","event":"Viewed","userId":"alice","messageId":"alice-1","context":` + withdrawn + `},
		{"type":"track","event":"Viewed","userId":"bob","messageId":"bob-1","context":` + both + `},
		{"type":"track","event":"Viewed","userId":"alice","messageId":"alice-2","context":` + withdrawn + `}]}`)
	waitFor("analytics to get alice-1, alice-2, bob-1", has(ana, "alice-1", "alice-2", "bob-1"))
	waitFor("marketing to get bob-1", has(mkt, "bob-1"))
	waitFor("alice's events counted as no_consent", func() bool { return noConsent(mktID) >= 2 })

	// 2. Queued while granted, withdrawn through the API while retried.
	mkt.mu.Lock()
	mkt.down = true
	mkt.mu.Unlock()
	carol := []string{"carol-1", "carol-2", "carol-3"}
	send(`{"batch":[
		{"type":"track","event":"Viewed","userId":"carol","messageId":"carol-1","context":` + both + `},
		{"type":"track","event":"Viewed","userId":"carol","messageId":"carol-2","context":` + both + `},
		{"type":"track","event":"Viewed","userId":"carol","messageId":"carol-3","context":` + both + `}]}`)
	waitFor("analytics to get carol's events", has(ana, carol...))
	waitFor("the marketing receiver to refuse carol's first event", func() bool {
		mkt.mu.Lock()
		defer mkt.mu.Unlock()
		return mkt.failed["carol-1"] > 0
	})
	var profile string
	waitFor("carol's profile", func() bool {
		r := n.admin("GET", "/api/v1/profiles/lookup?identifier=user_id:carol", nil)
		if r.status != 200 {
			return false
		}
		profile, _ = r.json(t)["id"].(string)
		return profile != ""
	})
	if r := n.admin("PUT", "/api/v1/profiles/"+profile+"/consent", map[string]any{
		"purposes": map[string]bool{"Marketing": false}, "source": "support-call"}); r.status != 200 {
		t.Fatalf("withdraw: %d %s", r.status, r.body)
	}
	mkt.mu.Lock()
	mkt.down = false
	mkt.mu.Unlock()
	waitFor("carol's queued events to be dropped or delivered", func() bool { return noConsent(mktID) >= 5 || has(mkt, carol...)() })
	time.Sleep(1500 * time.Millisecond) // anything that should not arrive has had its chance
	mkt.mu.Lock()
	defer mkt.mu.Unlock()
	for _, m := range append([]string{"alice-1", "alice-2"}, carol...) {
		if mkt.got[m] {
			t.Errorf("%s reached the marketing destination after Marketing was withdrawn", m)
		}
	}
	if v := noConsent(mktID); v != 5 {
		t.Errorf("marketing no_consent counted %v, want 5", v)
	}
	if v := noConsent(anaID); v != 0 {
		t.Errorf("analytics no_consent counted %v, want 0", v)
	}
}
