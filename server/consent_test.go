package server

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"tandem/config"
)

// TestConsent drives consent through a real node: decisions carried by
// events (categoryPreferences), Sec-GPC on a collection request, the
// configured defaults, a merge of two profiles with different consent, a
// change through the API by the privacy role, the history, and the audit
// entries of the reads and the change.
func TestConsent(t *testing.T) {
	n := startNode(t, "", func(c *config.Config) {
		c.Consent.Defaults = map[string]bool{"Analytics": true, "Advertising": false}
		c.Consent.GPCPurposes = []string{"Advertising"}
	})
	send := func(body string, header map[string]string) {
		t.Helper()
		if r := n.do("POST", "/v1/batch", "basic:"+n.writeKey, []byte(body), header); r.status != 200 {
			t.Fatalf("batch: %d %s", r.status, r.body)
		}
	}
	// Eve's phone grants advertising; her laptop later refuses analytics;
	// a visit with Sec-GPC: 1 opts out of advertising.
	send(`{"batch":[
		{"type":"track","event":"Viewed","anonymousId":"eve-phone","messageId":"p1","timestamp":"2024-05-01T09:00:00Z","context":{"consent":{"categoryPreferences":{"Advertising":true,"Analytics":true}}}},
		{"type":"track","event":"Viewed","anonymousId":"eve-laptop","messageId":"l1","timestamp":"2024-05-01T10:00:00Z","context":{"consent":{"categoryPreferences":{"Analytics":false}}}}
	]}`, nil)
	send(`{"batch":[{"type":"page","anonymousId":"gpc-visitor","messageId":"g1","timestamp":"2024-05-01T09:30:00Z","context":{"consent":{"categoryPreferences":{"Advertising":true}}}}]}`,
		map[string]string{"Sec-GPC": "1"})
	send(`{"batch":[{"type":"page","anonymousId":"nobody","messageId":"d1","timestamp":"2024-05-01T09:30:00Z"}]}`, nil)
	n.drain()

	consentOf := func(ident string) map[string]any {
		t.Helper()
		c, ok := n.lookup(ident)["consent"].(map[string]any)
		if !ok {
			t.Fatalf("%s: no consent object", ident)
		}
		return c
	}
	purposes := func(c map[string]any) string {
		b, _ := json.Marshal(c["purposes"])
		return string(b)
	}
	if c := consentOf("anonymous_id:gpc-visitor"); purposes(c) != `{"Advertising":false,"Analytics":true}` || c["source"] != "gpc" {
		t.Errorf("GPC visitor: %v", c)
	}
	if c := consentOf("anonymous_id:nobody"); purposes(c) != `{"Advertising":false,"Analytics":true}` || c["source"] != "default" || c["updatedAt"] != nil {
		t.Errorf("no decisions (defaults): %v", c)
	}
	if c := consentOf("anonymous_id:eve-phone"); purposes(c) != `{"Advertising":true,"Analytics":true}` {
		t.Errorf("phone before the merge: %v", c)
	}

	// She logs in on both: one profile, the newest decision per purpose.
	send(`{"batch":[
		{"type":"identify","userId":"eve","anonymousId":"eve-phone","messageId":"i1","timestamp":"2024-05-01T11:00:00Z"},
		{"type":"identify","userId":"eve","anonymousId":"eve-laptop","messageId":"i2","timestamp":"2024-05-01T11:01:00Z"}
	]}`, nil)
	n.drain()
	p := n.lookup("user_id:eve")
	id := p["id"].(string)
	c := p["consent"].(map[string]any)
	if purposes(c) != `{"Advertising":true,"Analytics":false}` || c["updatedAt"] != "2024-05-01T10:00:00Z" || c["source"] != "event" {
		t.Errorf("merged consent: %v", c)
	}

	// Privacy records a withdrawal from a support call; analysts may not.
	privacy := n.admin("POST", "/api/v1/users", map[string]any{"name": "dpo", "role": "privacy"}).json(t)
	analyst := n.admin("POST", "/api/v1/users", map[string]any{"name": "ana", "role": "analyst"}).json(t)["token"].(string)
	body := []byte(`{"purposes":{"Advertising":false},"source":"support-call"}`)
	checkError(t, n.do("PUT", "/api/v1/profiles/"+id+"/consent", "bearer:"+analyst, body, nil), 403, "forbidden", "")
	r := n.do("PUT", "/api/v1/profiles/"+id+"/consent", "bearer:"+privacy["token"].(string), body, nil)
	if r.status != 200 {
		t.Fatalf("put consent: %d %s", r.status, r.body)
	}
	if c := r.json(t); purposes(c) != `{"Advertising":false,"Analytics":false}` || c["source"] != "support-call" {
		t.Errorf("after the API change: %s", r.body)
	}
	checkError(t, n.admin("PUT", "/api/v1/profiles/"+id+"/consent", map[string]any{"purposes": map[string]bool{}}), 400, "invalid_field", "purposes")
	checkError(t, n.admin("PUT", "/api/v1/profiles/"+id+"/consent", map[string]any{"purposes": map[string]any{"Advertising": "no"}}), 400, "", "")
	checkError(t, n.admin("PUT", "/api/v1/profiles/prf_nothing/consent", map[string]any{"purposes": map[string]bool{"Advertising": true}}), 404, "not_found", "")

	// The history, newest first, two per page.
	var got []string
	cursor := ""
	for pages := 0; ; pages++ {
		r := n.admin("GET", "/api/v1/profiles/"+id+"/consent/history?limit=2&cursor="+cursor, nil)
		if r.status != 200 || pages > 5 {
			t.Fatalf("history: %d %s", r.status, r.body)
		}
		var page struct {
			Items []struct {
				Purpose, Source, MessageID, Actor string
				Granted                           bool
			}
			Next string
		}
		if err := json.Unmarshal(r.body, &page); err != nil {
			t.Fatal(err)
		}
		for _, c := range page.Items {
			who := c.MessageID
			if c.Actor != "" {
				who = "by " + c.Actor
			}
			got = append(got, c.Purpose+"="+map[bool]string{true: "true", false: "false"}[c.Granted]+" "+c.Source+" "+who)
		}
		if page.Next == "" {
			break
		}
		cursor = page.Next
	}
	want := []string{"Advertising=false support-call by " + privacy["id"].(string), "Analytics=false event l1", "Analytics=true event p1", "Advertising=true event p1"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("history:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	checkError(t, n.admin("GET", "/api/v1/profiles/"+id+"/consent/history?cursor=nope", nil), 400, "invalid_field", "cursor")

	// The change and the reads are in the audit log, by profile id.
	var actions []string
	for _, e := range auditPages(t, n, n.token, "subject="+id, 1000) {
		actions = append(actions, e["action"].(string))
	}
	for _, a := range []string{"profile.lookup", "profile.consent", "profile.consent_history"} {
		if !strings.Contains(strings.Join(actions, " "), a) {
			t.Errorf("audit entries about %s: %v, want %s among them", id, actions, a)
		}
	}
}

// TestConsentRates: GET /privacy/consent counts each identifier's latest
// decision per purpose through a real node, shows configured purposes no
// one decided with their default, and is refused to roles without
// consent:rates.
func TestConsentRates(t *testing.T) {
	n := startNode(t, "", func(c *config.Config) {
		c.Consent.Defaults = map[string]bool{"Analytics": true, "Advertising": false}
	})
	if r := n.do("POST", "/v1/batch", "basic:"+n.writeKey, []byte(`{"batch":[
		{"type":"track","event":"Viewed","userId":"ann","messageId":"r1","timestamp":"2024-05-01T09:00:00Z","context":{"consent":{"categoryPreferences":{"Advertising":true}}}},
		{"type":"track","event":"Viewed","userId":"ann","messageId":"r2","timestamp":"2024-05-01T10:00:00Z","context":{"consent":{"categoryPreferences":{"Advertising":false}}}},
		{"type":"track","event":"Viewed","userId":"bob","messageId":"r3","timestamp":"2024-05-01T09:00:00Z","context":{"consent":{"categoryPreferences":{"Advertising":true,"Marketing":true}}}},
		{"type":"track","event":"Viewed","anonymousId":"cy","messageId":"r4","timestamp":"2024-05-01T09:00:00Z","context":{"consent":{"categoryPreferences":{"Advertising":true}}}}
	]}`), nil); r.status != 200 {
		t.Fatalf("batch: %d %s", r.status, r.body)
	}
	n.drain()
	r := n.admin("GET", "/api/v1/privacy/consent", nil)
	if r.status != 200 {
		t.Fatalf("rates: %d %s", r.status, r.body)
	}
	var got struct {
		Purposes []struct {
			Purpose          string
			Granted, Refused int
			Share            *float64
			Default          *bool
		}
		Unit string
	}
	if err := json.Unmarshal(r.body, &got); err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, p := range got.Purposes {
		l := p.Purpose + " " + strconv.Itoa(p.Granted) + "/" + strconv.Itoa(p.Refused)
		if p.Share != nil {
			l += " " + strconv.FormatFloat(*p.Share, 'f', 2, 64)
		}
		if p.Default != nil {
			l += " default " + strconv.FormatBool(*p.Default)
		}
		lines = append(lines, l)
	}
	want := "Advertising 2/1 0.67 default false, Analytics 0/0 default true, Marketing 1/0 1.00"
	if s := strings.Join(lines, ", "); s != want || got.Unit != "identifier" {
		t.Errorf("rates %q (unit %q), want %q", s, got.Unit, want)
	}
	for role, status := range map[string]int{"analyst": 200, "privacy": 200, "marketing": 200, "it": 403, "sales": 403} {
		tok := n.admin("POST", "/api/v1/users", map[string]any{"name": "u-" + role, "role": role}).json(t)["token"].(string)
		if r := n.do("GET", "/api/v1/privacy/consent", "bearer:"+tok, nil, nil); r.status != status {
			t.Errorf("%s: %d, want %d", role, r.status, status)
		}
	}
}
