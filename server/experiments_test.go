package server

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestExperimentAcrossChannels runs an experiment end to end on a real
// node: visitors are assigned and exposed on the web (the assign endpoint
// recording the exposure, and the SDK's own track call), the shop's
// purchases arrive through an import for the same customers, and the
// results count both together per resolved profile.
func TestExperimentAcrossChannels(t *testing.T) {
	n := startNode(t, "", nil)
	tokens := map[string]string{}
	for _, role := range []string{"marketing", "analyst", "privacy", "it"} {
		r := n.admin("POST", "/api/v1/users", map[string]any{"name": role, "role": role})
		if r.status != 201 {
			t.Fatalf("create user: %d %s", r.status, r.body)
		}
		tokens[role] = r.json(t)["token"].(string)
	}
	now := time.Now().UTC()
	def := map[string]any{
		"key": "hero-2026", "name": "New hero image",
		"variations": []map[string]any{{"key": "control", "weight": 50}, {"key": "new-hero", "weight": 50}},
		"control":    "control",
		"metrics": []map[string]any{
			{"name": "purchase", "kind": "conversion", "event": "Order Completed", "window": "30d"},
			{"name": "revenue", "kind": "revenue", "event": "Order Completed", "property": "revenue"},
		},
		"from": now.Add(-24 * time.Hour).Format(time.RFC3339Nano),
	}
	body, _ := json.Marshal(def)
	checkError(t, n.do("POST", "/api/v1/experiments", "bearer:"+tokens["it"], body, nil), 403, "forbidden", "")
	r := n.do("POST", "/api/v1/experiments", "bearer:"+tokens["marketing"], body, nil)
	if r.status != 201 {
		t.Fatalf("create experiment: %d %s", r.status, r.body)
	}
	id := r.json(t)["id"].(string)
	checkError(t, n.do("POST", "/api/v1/experiments", "bearer:"+tokens["marketing"], body, nil), 409, "conflict", "key")
	bad := strings.Replace(string(body), `"conversion"`, `"median"`, 1)
	checkError(t, n.do("POST", "/api/v1/experiments", "bearer:"+tokens["analyst"], []byte(bad), nil), 400, "invalid_field", "metrics[0].kind")
	if r := n.do("GET", "/api/v1/experiments", "bearer:"+tokens["analyst"], nil, nil); r.status != 200 || len(r.json(t)["items"].([]any)) != 1 {
		t.Fatalf("list: %d %s", r.status, r.body)
	}
	if r := n.do("GET", "/api/v1/experiments/"+id, "bearer:"+tokens["analyst"], nil, nil); r.status != 200 || r.json(t)["key"] != "hero-2026" {
		t.Fatalf("get: %d %s", r.status, r.body)
	}
	checkError(t, n.do("GET", "/api/v1/experiments/"+id+"/results", "bearer:"+tokens["privacy"], nil, nil), 403, "forbidden", "")
	checkError(t, n.admin("GET", "/api/v1/experiments/exp_nope/results", nil), 404, "not_found", "")

	// The assign endpoint's errors.
	assign := "/v1/experiments/hero-2026/assign"
	checkError(t, n.do("GET", assign+"?anonymousId=x", "", nil, nil), 401, "unauthenticated", "")
	checkError(t, n.do("GET", assign+"?anonymousId=x&writeKey=wk_nope", "", nil, nil), 401, "unauthenticated", "")
	checkError(t, n.do("GET", assign+"?writeKey="+n.writeKey, "", nil, nil), 400, "missing_field", "userId")
	checkError(t, n.do("GET", "/v1/experiments/nope/assign?anonymousId=x", "basic:"+n.writeKey, nil, nil), 404, "not_found", "")
	checkError(t, n.do("POST", assign+"?anonymousId=x", "basic:"+n.writeKey, nil, nil), 405, "method_not_allowed", "")

	// 60 customers identify on the web, so their browser and customer
	// number are one profile.
	const customers = 60
	for i := range customers {
		ev := fmt.Sprintf(`{"userId":"user-%d","anonymousId":"browser-%d","traits":{"plan":"free"},"timestamp":%q}`, i, i, now.Add(-3*time.Hour).Format(time.RFC3339))
		if r := n.do("POST", "/v1/identify", "basic:"+n.writeKey, []byte(ev), nil); r.status != 200 {
			t.Fatalf("identify: %d %s", r.status, r.body)
		}
	}
	n.drain()
	// Each browser asks for its variation: the even ones let tandem
	// record the exposure, the odd ones send the SDK's Experiment Viewed.
	variation := map[int]string{}
	profile := map[int]string{}
	for i := range customers {
		q := url.Values{"anonymousId": {fmt.Sprintf("browser-%d", i)}, "writeKey": {n.writeKey}}
		if i%2 == 0 {
			q.Set("record", "true")
		}
		r := n.do("GET", assign+"?"+q.Encode(), "", nil, nil)
		if r.status != 200 {
			t.Fatalf("assign: %d %s", r.status, r.body)
		}
		a := r.json(t)
		variation[i], profile[i] = a["variation"].(string), a["profileId"].(string)
		if a["recorded"] != (i%2 == 0) {
			t.Fatalf("assign %d: %s", i, r.body)
		}
		// The same person asking by user id gets the same answer.
		r = n.do("GET", assign+"?userId="+fmt.Sprintf("user-%d", i), "basic:"+n.writeKey, nil, nil)
		if b := r.json(t); b["variation"] != variation[i] || b["profileId"] != profile[i] {
			t.Fatalf("customer %d: by anonymousId %s/%s, by userId %s", i, variation[i], profile[i], r.body)
		}
		if i%2 == 1 {
			ev := fmt.Sprintf(`{"anonymousId":"browser-%d","event":"Experiment Viewed","properties":{"experiment_id":"hero-2026","variation_id":%q},"timestamp":%q}`,
				i, variation[i], now.Add(-2*time.Hour).Format(time.RFC3339))
			if r := n.do("POST", "/v1/track", "basic:"+n.writeKey, []byte(ev), nil); r.status != 200 {
				t.Fatalf("track: %d %s", r.status, r.body)
			}
		}
	}
	// The shop's purchases, imported: every third customer buys after the
	// exposure (by customer number, as the till knows them), customer 1
	// also bought the day before, which is no conversion.
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	var rows strings.Builder
	wantBuyers := map[string]int{}
	wantRevenue := map[string]float64{}
	line := func(receipt string, cust int, at time.Time, total float64) {
		fmt.Fprintf(&rows, `{"receipt":%q,"store":"Berlin Mitte","purchased_at":%q,"customer":{"id":"user-%d"},"total":%v,"currency":"EUR","items":1,"payment":"card"}`+"\n",
			receipt, at.In(berlin).Format("2006-01-02 15:04:05"), cust, total)
	}
	// The till's times are whole seconds: the purchases are a second or
	// two after the last exposure (which the assign endpoint stamped with
	// the time of the request), and the results are read after them.
	buyAt := time.Now().Add(time.Second).Truncate(time.Second).Add(time.Second)
	for i := 0; i < customers; i += 3 {
		total := float64(10 + i)
		line(fmt.Sprintf("R-%d", i), i, buyAt, total)
		wantBuyers[variation[i]]++
		wantRevenue[variation[i]] += total
	}
	line("R-early", 1, now.Add(-20*time.Hour), 99)
	n.importSource("shop")
	r = n.multipartImport("source=shop", example(t, "shop", "mapping.json"), []byte(rows.String()))
	if st := decodeStatus(t, r); r.status != 201 || st.Status != "completed" || st.RowsImported != customers/3+1 {
		t.Fatalf("import: %d %s", r.status, r.body)
	}
	n.drain()
	time.Sleep(time.Until(buyAt.Add(100 * time.Millisecond)))

	r = n.do("GET", "/api/v1/experiments/"+id+"/results", "bearer:"+tokens["analyst"], nil, nil)
	if r.status != 200 {
		t.Fatalf("results: %d %s", r.status, r.body)
	}
	var res struct {
		SRM struct {
			PValue  *float64 `json:"pValue"`
			Flagged bool     `json:"flagged"`
		} `json:"srm"`
		Exposures struct{ Units, Excluded int64 } `json:"exposures"`
		Metrics   []struct {
			Name       string `json:"name"`
			Variations []struct {
				Key                 string          `json:"key"`
				Units               int64           `json:"units"`
				Mean                float64         `json:"mean"`
				Lift                json.RawMessage `json:"lift"`
				PValue              *float64        `json:"pValue"`
				ChanceToBeatControl *float64        `json:"chanceToBeatControl"`
				SequentialCI95      []float64       `json:"sequentialCi95"`
			} `json:"variations"`
		} `json:"metrics"`
	}
	if err := json.Unmarshal(r.body, &res); err != nil {
		t.Fatal(err)
	}
	units := map[string]int64{}
	for i := range customers {
		units[variation[i]]++
	}
	if res.Exposures.Units != customers || res.Exposures.Excluded != 0 || res.SRM.PValue == nil {
		t.Fatalf("exposures %+v srm %+v: %s", res.Exposures, res.SRM, r.body)
	}
	if len(res.Metrics) != 2 {
		t.Fatalf("metrics: %s", r.body)
	}
	for _, m := range res.Metrics {
		for _, v := range m.Variations {
			if v.Units != units[v.Key] {
				t.Errorf("%s/%s: %d units, assigned %d", m.Name, v.Key, v.Units, units[v.Key])
			}
			want := float64(wantBuyers[v.Key]) / float64(units[v.Key])
			if m.Name == "revenue" {
				want = wantRevenue[v.Key] / float64(units[v.Key])
			}
			if d := v.Mean - want; d > 1e-9 || d < -1e-9 {
				t.Errorf("%s/%s: mean %v, want %v (web exposures and shop purchases of one customer count together)", m.Name, v.Key, v.Mean, want)
			}
			if v.Key == "control" {
				if string(v.Lift) != "null" || v.PValue != nil {
					t.Errorf("control has a lift: %s", r.body)
				}
			} else if string(v.Lift) == "null" || v.PValue == nil || v.ChanceToBeatControl == nil || len(v.SequentialCI95) != 2 {
				t.Errorf("%s/%s lacks its comparison: %s", m.Name, v.Key, r.body)
			}
		}
	}
	// The exposures recorded by the assign endpoint are ordinary events.
	if evs := n.events("event=" + url.QueryEscape("Experiment Viewed")); len(evs) != customers {
		t.Errorf("%d Experiment Viewed events stored, want %d", len(evs), customers)
	}
}
