package server

import (
	"encoding/json"
	"testing"
)

// TestAnalyticsAPI sends events through the collection API and asks the
// analytics endpoints of a real server, including after an identity merge
// of profiles whose events were already stored.
func TestAnalyticsAPI(t *testing.T) {
	n := startNode(t, "", nil)
	batch := `{"batch":[
		{"type":"track","anonymousId":"v1","event":"Ad Clicked","timestamp":"2024-03-01T10:00:00Z"},
		{"type":"track","anonymousId":"v1","event":"Product Viewed","timestamp":"2024-03-01T10:05:00Z","properties":{"sku":"x1"}},
		{"type":"track","userId":"ana","event":"Order Completed","timestamp":"2024-03-01T11:05:00Z","properties":{"total":30}},
		{"type":"track","userId":"ben","event":"Ad Clicked","timestamp":"2024-03-02T09:00:00Z"},
		{"type":"track","userId":"ben","event":"Order Completed","timestamp":"2024-03-01T09:00:00Z"},
		{"type":"track","userId":"ben","event":"Product Viewed","timestamp":"2024-03-02T09:00:30Z"},
		{"type":"track","userId":"ben","event":"Login","timestamp":"2024-03-03T09:00:30Z"}
	]}`
	if r := n.do("POST", "/v1/batch", "basic:"+n.writeKey, []byte(batch), nil); r.status != 200 {
		t.Fatalf("batch: %d %s", r.status, r.body)
	}
	n.drain()
	funnel := map[string]any{
		"steps":  []any{map[string]any{"event": "Ad Clicked"}, map[string]any{"event": "Product Viewed"}, map[string]any{"event": "Order Completed"}},
		"window": "1d", "from": "2024-03-01T00:00:00Z", "to": "2024-04-01T00:00:00Z",
	}
	steps := func() []int {
		t.Helper()
		r := n.admin("POST", "/api/v1/analytics/funnel", funnel)
		if r.status != 200 {
			t.Fatalf("funnel: %d %s", r.status, r.body)
		}
		var res struct {
			Steps []struct {
				Name     string `json:"name"`
				Profiles int    `json:"profiles"`
			} `json:"steps"`
		}
		if err := json.Unmarshal(r.body, &res); err != nil {
			t.Fatal(err)
		}
		var out []int
		for _, s := range res.Steps {
			out = append(out, s.Profiles)
		}
		return out
	}
	// v1 and ana are apart; ben's order came before his ad click.
	if got := steps(); len(got) != 3 || got[0] != 2 || got[1] != 2 || got[2] != 0 {
		t.Errorf("before the merge: %v, want [2 2 0]", got)
	}
	// Identity resolution joins the visitor to ana when she logs in, after
	// the events were stored; the funnel follows.
	login := `{"type":"identify","anonymousId":"v1","userId":"ana","timestamp":"2024-03-05T10:30:00Z"}`
	if r := n.do("POST", "/v1/identify", "basic:"+n.writeKey, []byte(login), nil); r.status != 200 {
		t.Fatalf("identify: %d %s", r.status, r.body)
	}
	n.drain()
	if got := steps(); len(got) != 3 || got[0] != 2 || got[1] != 2 || got[2] != 1 {
		t.Errorf("after the merge: %v, want [2 2 1]", got)
	}

	// The configured (default) lifecycle.
	r := n.admin("POST", "/api/v1/analytics/journey", map[string]any{"within": "1d", "from": "2024-03-01T00:00:00Z", "to": "2024-04-01T00:00:00Z"})
	if r.status != 200 {
		t.Fatalf("journey: %d %s", r.status, r.body)
	}
	var j struct {
		Stages []struct {
			Name     string `json:"name"`
			Profiles int    `json:"profiles"`
		} `json:"stages"`
		Gaps []struct {
			Boundary string   `json:"boundary"`
			Stuck    int      `json:"stuck"`
			Sample   []string `json:"sample"`
		} `json:"gaps"`
	}
	if err := json.Unmarshal(r.body, &j); err != nil {
		t.Fatal(err)
	}
	if len(j.Stages) != 6 || j.Stages[0].Name != "awareness" || j.Stages[0].Profiles != 2 || j.Stages[2].Profiles != 2 {
		t.Errorf("journey stages: %s", r.body)
	}
	// ben bought before considering: stuck at marketing→sales; ana bought
	// within the day.
	var ms *struct {
		Boundary string   `json:"boundary"`
		Stuck    int      `json:"stuck"`
		Sample   []string `json:"sample"`
	}
	for i := range j.Gaps {
		if j.Gaps[i].Boundary == "marketing→sales" {
			ms = &j.Gaps[i]
		}
	}
	lookup := n.admin("GET", "/api/v1/profiles/lookup?identifier=user_id:ben", nil)
	var ben struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(lookup.body, &ben); err != nil || ben.ID == "" {
		t.Fatalf("lookup ben: %d %s", lookup.status, lookup.body)
	}
	if ms == nil || ms.Stuck != 1 || len(ms.Sample) != 1 || ms.Sample[0] != ben.ID {
		t.Errorf("marketing→sales gap: %s", r.body)
	}

	r = n.admin("POST", "/api/v1/analytics/paths", map[string]any{"start": map[string]any{"event": "Ad Clicked"}, "steps": 2, "from": "2024-03-01T00:00:00Z", "to": "2024-04-01T00:00:00Z"})
	if r.status != 200 {
		t.Fatalf("paths: %d %s", r.status, r.body)
	}
	var p struct {
		Nodes []map[string]any `json:"nodes"`
		Edges []map[string]any `json:"edges"`
	}
	if err := json.Unmarshal(r.body, &p); err != nil || len(p.Edges) != 3 {
		t.Errorf("paths: %s", r.body)
	}
	r = n.admin("POST", "/api/v1/analytics/retention", map[string]any{"start": map[string]any{"event": "Ad Clicked"}, "return": map[string]any{"event": "Login"}, "period": "day", "periods": 2, "timezone": "Europe/Paris", "from": "2024-03-01T00:00:00Z", "to": "2024-04-01T00:00:00Z"})
	if r.status != 200 {
		t.Fatalf("retention: %d %s", r.status, r.body)
	}
	var ret struct {
		Cohorts []struct {
			Start    string    `json:"start"`
			Profiles int       `json:"profiles"`
			Returned []int     `json:"returned"`
			Share    []float64 `json:"share"`
		} `json:"cohorts"`
	}
	if err := json.Unmarshal(r.body, &ret); err != nil || len(ret.Cohorts) != 2 || ret.Cohorts[1].Start != "2024-03-02T00:00:00+01:00" || ret.Cohorts[1].Returned[0] != 1 {
		t.Errorf("retention: %s", r.body)
	}

	// Unknown events are empty steps; bad queries name the field.
	r = n.admin("POST", "/api/v1/analytics/funnel", map[string]any{"steps": []any{map[string]any{"event": "Nobody Does This"}}, "window": 60})
	if r.status != 200 {
		t.Errorf("unknown event: %d %s", r.status, r.body)
	}
	bad := func(body map[string]any) map[string]any { return body }
	checkError(t, n.admin("POST", "/api/v1/analytics/funnel", bad(map[string]any{"steps": []any{map[string]any{"event": "a"}}, "window": -1})), 400, "invalid_field", "window")
	checkError(t, n.admin("POST", "/api/v1/analytics/funnel", bad(map[string]any{"steps": []any{map[string]any{"event": "a"}, map[string]any{"event": ""}}, "window": 1})), 400, "invalid_field", "steps[1].event")
	checkError(t, n.admin("POST", "/api/v1/analytics/funnel", bad(map[string]any{"steps": []any{map[string]any{"event": "a", "where": []any{map[string]any{"property": "p", "op": "gt", "value": "x"}}}}, "window": 1})), 400, "invalid_field", "steps[0].where[0].value")
	checkError(t, n.admin("POST", "/api/v1/analytics/funnel", bad(map[string]any{"steps": []any{map[string]any{"event": "a"}}, "window": "later"})), 400, "invalid_field", "window")
	checkError(t, n.admin("POST", "/api/v1/analytics/funnel", bad(map[string]any{"steps": []any{map[string]any{"event": "a"}}, "window": 1, "from": "yesterday"})), 400, "invalid_field", "from")
	checkError(t, n.admin("POST", "/api/v1/analytics/journey", bad(map[string]any{"within": -5})), 400, "invalid_field", "within")
	checkError(t, n.admin("POST", "/api/v1/analytics/retention", bad(map[string]any{"start": map[string]any{"event": "a"}, "return": map[string]any{"event": "b"}, "period": "year"})), 400, "invalid_field", "period")
	checkError(t, n.admin("POST", "/api/v1/analytics/paths", bad(map[string]any{"start": map[string]any{"event": "a"}, "steps": 99})), 400, "invalid_field", "steps")
	checkError(t, n.admin("GET", "/api/v1/analytics/funnel", nil), 405, "method_not_allowed", "")

	// Roles: sales reads analytics, privacy does not.
	for role, want := range map[string]int{"sales": 200, "privacy": 403} {
		r := n.admin("POST", "/api/v1/users", map[string]any{"name": role + "-user", "role": role})
		tok := r.json(t)["token"].(string)
		b, _ := json.Marshal(funnel)
		if r := n.do("POST", "/api/v1/analytics/funnel", "bearer:"+tok, b, nil); r.status != want {
			t.Errorf("%s: %d, want %d", role, r.status, want)
		}
	}
	checkError(t, n.do("POST", "/api/v1/analytics/funnel", "", []byte(`{}`), nil), 401, "unauthenticated", "")
}
