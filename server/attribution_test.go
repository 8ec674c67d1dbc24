package server

import (
	"encoding/json"
	"testing"

	"tandem/attribution"
	"tandem/config"
)

// TestAttributionAPI sends touches and purchases through the collection
// API of a real server, merges a visitor into a customer, and asks for
// attribution under every model and for the cost-and-return report with
// costs from the catalogue.
func TestAttributionAPI(t *testing.T) {
	n := startNode(t, "", func(c *config.Config) {
		c.DestinationAllow = []string{"127.0.0.0/8"}
		c.Attribution.Tools = []attribution.Rule{{Tool: "mailer", Touch: []string{"e-mail"}}}
	})
	// The shop's source costs 10.00 a day (304.375 a month of 30.4375
	// days), the mailer 2.00 and the ads destination 1.00; the default
	// source nothing.
	created := n.admin("POST", "/api/v1/sources", map[string]any{"name": "shop", "kind": "web", "owner": "marketing", "purpose": "shop", "monthlyCost": 304.375}).json(t)
	web, key := created["id"].(string), created["writeKey"].(string)
	dst := func(name string, cost float64) string {
		r := n.admin("POST", "/api/v1/destinations", map[string]any{"name": name, "type": "webhook", "config": map[string]any{"url": "http://127.0.0.1:9/x"},
			"owner": "marketing", "purpose": "campaigns", "dataCategories": []string{"contact"}, "consentPurposes": []string{"Advertising"}, "monthlyCost": cost})
		if r.status != 201 && r.status != 200 {
			t.Fatalf("destination %s: %d %s", name, r.status, r.body)
		}
		return r.json(t)["id"].(string)
	}
	mailer, ads := dst("mailer", 60.875), dst("ads", 30.4375)

	// A visitor comes from a newsletter, later from a search, then signs
	// in as ana and buys 300.00; ben buys 100.00 with no touch.
	batch := `{"batch":[
		{"type":"page","anonymousId":"v1","name":"Mail","timestamp":"2024-03-02T10:00:00Z","context":{"campaign":{"medium":"email","source":"mailer","name":"march"}}},
		{"type":"page","anonymousId":"v1","name":"Home","timestamp":"2024-03-03T10:00:00Z","context":{"page":{"url":"https://shop.example/","referrer":"https://www.google.com/"}}},
		{"type":"identify","anonymousId":"v1","userId":"ana","timestamp":"2024-03-03T12:00:00Z"},
		{"type":"track","userId":"ana","event":"Order Completed","timestamp":"2024-03-04T10:00:00Z","properties":{"revenue":300}},
		{"type":"track","userId":"ben","event":"Order Completed","timestamp":"2024-03-05T10:00:00Z","properties":{"revenue":"100"}}
	]}`
	if r := n.do("POST", "/v1/batch", "basic:"+key, []byte(batch), nil); r.status != 200 {
		t.Fatalf("batch: %d %s", r.status, r.body)
	}
	n.drain()

	q := map[string]any{"conversion": map[string]any{"event": "Order Completed", "value": "revenue"}, "lookback": "30d",
		"from": "2024-03-01T00:00:00Z", "to": "2024-04-01T00:00:00Z"}
	r := n.admin("POST", "/api/v1/analytics/attribution", q)
	if r.status != 200 {
		t.Fatalf("attribution: %d %s", r.status, r.body)
	}
	var res struct {
		Conversions int64   `json:"conversions"`
		Value       float64 `json:"value"`
		NoTouch     int64   `json:"noTouch"`
		Models      []struct {
			Model   string `json:"model"`
			Credits []struct {
				Key         string  `json:"key"`
				Conversions float64 `json:"conversions"`
				Value       float64 `json:"value"`
			} `json:"credits"`
		} `json:"models"`
	}
	if err := json.Unmarshal(r.body, &res); err != nil || res.Conversions != 2 || res.Value != 400 || res.NoTouch != 1 || len(res.Models) != 6 {
		t.Fatalf("attribution: %s", r.body)
	}
	// The merge joins the visitor's touches to ana's purchase: e-mail
	// first, organic search last, half each where shared.
	want := map[string]map[string]float64{
		"first_touch": {"e-mail": 300, "(none)": 100},
		"last_touch":  {"organic-search": 300, "(none)": 100},
		"linear":      {"e-mail": 150, "organic-search": 150, "(none)": 100},
		"position":    {"e-mail": 150, "organic-search": 150, "(none)": 100},
		"markov":      {"e-mail": 150, "organic-search": 150, "(none)": 100},
	}
	for _, m := range res.Models {
		var conv, val float64
		got := map[string]float64{}
		for _, c := range m.Credits {
			conv += c.Conversions
			val += c.Value
			got[c.Key] = c.Value
		}
		if conv != 2 || val != 400 {
			t.Errorf("%s: credits sum to %v conversions, %v value", m.Model, conv, val)
		}
		if w, ok := want[m.Model]; ok && !equalMap(got, w) {
			t.Errorf("%s: %v, want %v", m.Model, got, w)
		}
	}

	r = n.admin("GET", "/api/v1/analytics/roi?from=2024-03-01T00:00:00Z&to=2024-04-01T00:00:00Z&model=linear", nil)
	if r.status != 200 {
		t.Fatalf("roi: %d %s", r.status, r.body)
	}
	var rep struct {
		Conversions int64   `json:"conversions"`
		Cost        float64 `json:"cost"`
		Tools       []struct {
			Tool              string   `json:"tool"`
			Kind              string   `json:"kind"`
			Cost              float64  `json:"cost"`
			Conversions       float64  `json:"conversions"`
			Value             float64  `json:"value"`
			CostPerConversion *float64 `json:"costPerConversion"`
			ReturnOnSpend     *float64 `json:"returnOnSpend"`
		} `json:"tools"`
		Channels []struct {
			Channel string  `json:"channel"`
			Cost    float64 `json:"cost"`
		} `json:"channels"`
		Review []struct {
			Tool string `json:"tool"`
		} `json:"review"`
	}
	if err := json.Unmarshal(r.body, &rep); err != nil || rep.Conversions != 2 || rep.Cost != 310+62+31 {
		t.Fatalf("roi: %s", r.body)
	}
	tools := map[string]int{}
	for i, tl := range rep.Tools {
		tools[tl.Tool] = i
	}
	// 31 days: web 310.00 for 0.5 conversions worth 150.00; the mailer
	// 62.00 for the same.
	if i, ok := tools[web]; !ok || rep.Tools[i].Cost != 310 || rep.Tools[i].Value != 150 || *rep.Tools[i].CostPerConversion != 620 || *rep.Tools[i].ReturnOnSpend != 0.4839 {
		t.Errorf("web source: %s", r.body)
	}
	if i, ok := tools[mailer]; !ok || rep.Tools[i].Kind != "destination" || rep.Tools[i].Cost != 62 || rep.Tools[i].Value != 150 || *rep.Tools[i].ReturnOnSpend != 2.4194 {
		t.Errorf("mailer: %s", r.body)
	}
	if len(rep.Review) != 1 || rep.Review[0].Tool != ads {
		t.Errorf("review: %s", r.body)
	}

	// Roles: analytics readers may; privacy may not. Bad input names the
	// field.
	priv := n.admin("POST", "/api/v1/users", map[string]string{"name": "dpo", "role": "privacy"}).json(t)["token"].(string)
	body, _ := json.Marshal(q)
	checkError(t, n.do("POST", "/api/v1/analytics/attribution", "bearer:"+priv, body, nil), 403, "forbidden", "")
	checkError(t, n.do("GET", "/api/v1/analytics/roi", "bearer:"+priv, nil, nil), 403, "forbidden", "")
	analyst := n.admin("POST", "/api/v1/users", map[string]string{"name": "al", "role": "analyst"}).json(t)["token"].(string)
	if r := n.do("POST", "/api/v1/analytics/attribution", "bearer:"+analyst, body, nil); r.status != 200 {
		t.Errorf("analyst: %d %s", r.status, r.body)
	}
	checkError(t, n.admin("POST", "/api/v1/analytics/attribution", map[string]any{"conversion": map[string]any{}}), 400, "invalid_field", "conversion.event")
	checkError(t, n.admin("POST", "/api/v1/analytics/attribution", map[string]any{"conversion": map[string]any{"event": "x"}, "models": []string{"linear", "shapley"}}), 400, "invalid_field", "models[1]")
	checkError(t, n.admin("POST", "/api/v1/analytics/attribution", map[string]any{"conversion": map[string]any{"event": "x"}, "by": 3}), 400, "invalid_type", "by")
	checkError(t, n.admin("GET", "/api/v1/analytics/roi?model=shapley", nil), 400, "invalid_field", "model")
	checkError(t, n.admin("GET", "/api/v1/analytics/roi?from=yesterday", nil), 400, "invalid_field", "from")
}

func equalMap(a, b map[string]float64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
