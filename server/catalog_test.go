package server

import (
	"encoding/json"
	"testing"

	"tandem/config"
)

// TestCatalog: every source is a tool of the catalogue with its owner,
// purpose, categories, cost and who approved it when; the report sums the
// stack up by department.
func TestCatalog(t *testing.T) {
	n := startNode(t, "", func(c *config.Config) { c.DestinationAllow = []string{"127.0.0.0/8"} })
	adminID := n.admin("GET", "/api/v1/me", nil).json(t)["id"].(string)
	it := n.admin("POST", "/api/v1/users", map[string]string{"name": "ops", "role": "it"}).json(t)
	itID, itToken := it["id"].(string), it["token"].(string)
	mkt := n.admin("POST", "/api/v1/users", map[string]string{"name": "mia", "role": "marketing"}).json(t)["token"].(string)
	sales := n.admin("POST", "/api/v1/users", map[string]string{"name": "sam", "role": "sales"}).json(t)["token"].(string)
	body, _ := json.Marshal(map[string]any{"name": "crm", "kind": "crm", "owner": "sales", "purpose": "leads", "dataCategories": []string{"contact"}, "monthlyCost": 300})
	// Proposed by marketing, they wait for IT (the default decision rights).
	crm := n.do("POST", "/api/v1/sources", "bearer:"+mkt, body, nil).json(t)["id"].(string)
	body, _ = json.Marshal(map[string]any{"name": "shop", "kind": "web", "owner": "marketing", "purpose": "shop analytics", "dataCategories": []string{"behavioural"}, "monthlyCost": 49.5})
	shop := n.do("POST", "/api/v1/sources", "bearer:"+mkt, body, nil).json(t)["id"].(string)
	if r := n.do("POST", "/api/v1/sources/"+shop+"/approvals", "bearer:"+itToken, []byte(`{"decision":"approve"}`), nil); r.status != 200 {
		t.Fatalf("approve: %d %s", r.status, r.body)
	}

	// A destination is a tool too, with its consent purposes; approved
	// by it, it names it and when.
	body, _ = json.Marshal(map[string]any{"name": "ads", "type": "webhook", "config": map[string]any{"url": "http://127.0.0.1:9/x"},
		"owner": "marketing", "purpose": "retargeting", "dataCategories": []string{"contact"}, "consentPurposes": []string{"Advertising"}, "monthlyCost": 120})
	dst := n.do("POST", "/api/v1/destinations", "bearer:"+mkt, body, nil).json(t)["id"].(string)
	if r := n.do("POST", "/api/v1/destinations/"+dst+"/approvals", "bearer:"+itToken, []byte(`{"decision":"approve"}`), nil); r.status != 200 {
		t.Fatalf("approve destination: %d %s", r.status, r.body)
	}

	r := n.do("GET", "/api/v1/catalog", "bearer:"+sales, nil, nil)
	var c struct {
		Tools []map[string]any `json:"tools"`
		Flows []any            `json:"flows"`
	}
	if err := json.Unmarshal(r.body, &c); err != nil || r.status != 200 || c.Flows == nil {
		t.Fatalf("catalog: %d %s", r.status, r.body)
	}
	tools := map[string]map[string]any{}
	for _, tl := range c.Tools {
		if tl["id"] == dst {
			if tl["kind"] != "destination" || tl["type"] != "webhook" || tl["approval"] != "approved" || tl["approvedBy"] != itID ||
				tl["approvedAt"] == nil || tl["consentPurposes"].([]any)[0] != "Advertising" || tl["monthlyCost"] != 120.0 {
				t.Errorf("destination %v", tl)
			}
			continue
		}
		tools[tl["id"].(string)] = tl
		if tl["kind"] != "source" {
			t.Errorf("tool kind %v", tl["kind"])
		}
	}
	if len(tools) != 3 { // with the bootstrap default source
		t.Fatalf("%d tools: %s", len(tools), r.body)
	}
	if tl := tools[crm]; tl["approval"] != "pending" || tl["approvedBy"] != "" || tl["approvedAt"] != nil || tl["owner"] != "sales" ||
		tl["monthlyCost"] != 300.0 || tl["purpose"] != "leads" || tl["dataCategories"].([]any)[0] != "contact" || tl["consentPurposes"] == nil {
		t.Errorf("crm %v", tl)
	}
	if tl := tools[shop]; tl["approval"] != "approved" || tl["approvedBy"] != itID || tl["approvedAt"] == nil || tl["name"] != "shop" {
		t.Errorf("shop %v", tl)
	}
	for id, tl := range tools {
		if id != crm && id != shop && (tl["approvedBy"] != adminID || tl["approvedAt"] == nil) {
			t.Errorf("the default source, created by the admin, is approved by it: %v", tl)
		}
	}

	r = n.do("GET", "/api/v1/catalog/report", "bearer:"+sales, nil, nil)
	var rep struct {
		Departments []struct {
			Owner          string   `json:"owner"`
			Tools          []string `json:"tools"`
			MonthlyCost    float64  `json:"monthlyCost"`
			DataCategories []string `json:"dataCategories"`
			Pending        int      `json:"pending"`
		} `json:"departments"`
		MonthlyCost      float64 `json:"monthlyCost"`
		UnjustifiedFlows []any   `json:"unjustifiedFlows"`
	}
	if err := json.Unmarshal(r.body, &rep); err != nil || r.status != 200 || rep.UnjustifiedFlows == nil {
		t.Fatalf("report: %d %s", r.status, r.body)
	}
	byOwner := map[string]int{}
	for i, d := range rep.Departments {
		byOwner[d.Owner] = i
	}
	s := rep.Departments[byOwner["sales"]]
	m := rep.Departments[byOwner["marketing"]]
	if s.MonthlyCost != 300 || s.Pending != 1 || len(s.Tools) != 1 || s.DataCategories[0] != "contact" ||
		m.MonthlyCost != 169.5 || m.Pending != 0 || rep.MonthlyCost < 469.5 {
		t.Errorf("report %s", r.body)
	}
}
