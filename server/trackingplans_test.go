package server

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestTrackingPlans drafts a plan from what a source sends, puts it,
// and follows violations through the quarantine: replayed before the fix
// they are held again (the plan in force at replay decides); after the
// plan is fixed a replay stores each of them once, nothing lost between.
func TestTrackingPlans(t *testing.T) {
	n := startNode(t, "", nil)
	send := func(body string) {
		t.Helper()
		if r := n.do("POST", "/v1/track", "basic:"+n.writeKey, []byte(body), nil); r.status != 200 {
			t.Fatalf("track: %d %s", r.status, r.body)
		}
	}
	stored := func(id string) int {
		c := 0
		for _, e := range n.events("") {
			if e["messageId"] == id {
				c++
			}
		}
		return c
	}
	src := n.admin("GET", "/api/v1/sources", nil).json(t)["items"].([]any)[0].(map[string]any)
	srcName := src["name"].(string)
	plan := "/api/v1/tracking-plans/" + src["id"].(string)

	// Without a plan: 404 in the error shape, and events pass.
	checkError(t, n.admin("GET", plan, nil), 404, "not_found", "")
	send(`{"userId":"u1","messageId":"m-first","event":"Order Completed","properties":{"price":9.99,"sku":"A-1"}}`)
	n.drain()

	// The draft, by the source's name, from the event sent.
	r := n.admin("POST", "/api/v1/tracking-plans/"+srcName+"/draft", nil)
	if r.status != 200 {
		t.Fatalf("draft: %d %s", r.status, r.body)
	}
	var draft struct {
		Unplanned string
		Events    map[string]struct{ Properties json.RawMessage }
		Sampled   int
	}
	json.Unmarshal(r.body, &draft)
	if draft.Sampled != 1 || !strings.Contains(string(draft.Events["Order Completed"].Properties), `"price":{"type":"number"}`) {
		t.Fatalf("draft: %s", r.body)
	}

	// The plan: price must be a number; other events are blocked.
	strict := map[string]any{"unplanned": "block", "events": map[string]any{
		"Order Completed": map[string]any{"properties": map[string]any{"type": "object",
			"properties": map[string]any{"price": map[string]any{"type": "number"}}, "required": []string{"price"}}},
	}}
	r = n.admin("PUT", plan, strict)
	if r.status != 200 || r.json(t)["version"] != 1.0 {
		t.Fatalf("put: %d %s", r.status, r.body)
	}
	checkError(t, n.admin("PUT", plan, map[string]any{"unplanned": "sometimes"}), 400, "invalid_field", "unplanned")
	checkError(t, n.admin("PUT", plan, map[string]any{"unplanned": "allow", "events": map[string]any{
		"X": map[string]any{"properties": map[string]any{"type": 5}}}}), 400, "invalid_field", "events.X.properties")

	send(`{"userId":"u1","messageId":"m-good","event":"Order Completed","properties":{"price":5}}`)
	send(`{"userId":"u1","messageId":"m-bad","event":"Order Completed","properties":{"price":"9.99"}}`)
	send(`{"userId":"u1","messageId":"m-other","event":"Clicked"}`)
	n.drain()
	if stored("m-good") != 1 {
		t.Fatal("a valid event was not stored")
	}
	held := func() map[string]map[string]any {
		out := map[string]map[string]any{}
		for _, e := range n.quarantine() {
			if e["status"] == "held" {
				out[e["messageId"].(string)] = e
			}
		}
		return out
	}
	q := held()
	bad, other := q["m-bad"], q["m-other"]
	if bad == nil || bad["code"] != "plan_violation" || bad["field"] != "properties.price" ||
		!strings.HasPrefix(bad["message"].(string), "properties.price: ") || !strings.Contains(bad["message"].(string), "number") {
		t.Fatalf("violation in the quarantine: %v", bad)
	}
	if other == nil || other["code"] != "unplanned_event" || other["field"] != "event" {
		t.Fatalf("unplanned event in the quarantine: %v", other)
	}
	for _, id := range []string{"m-bad", "m-other"} {
		if stored(id) != 0 {
			t.Fatalf("%s was stored although it fails the plan", id)
		}
	}

	// Replayed before the fix: checked against the plan in force, held again.
	replay := func(ids ...string) {
		t.Helper()
		if r := n.admin("POST", "/api/v1/quarantine/replay", map[string]any{"ids": ids}); r.status != 200 || strings.Contains(string(r.body), "invalid") {
			t.Fatalf("replay: %d %s", r.status, r.body)
		}
		n.drain()
	}
	replay(bad["id"].(string))
	q = held()
	if q["m-bad"] == nil || q["m-bad"]["id"] == bad["id"] || q["m-bad"]["code"] != "plan_violation" {
		t.Fatalf("a replay before the fix: %v", q["m-bad"])
	}

	// The plan fixed: price may also be a string, other events are flagged.
	fixed := map[string]any{"unplanned": "flag", "events": map[string]any{
		"Order Completed": map[string]any{"properties": map[string]any{"type": "object",
			"properties": map[string]any{"price": map[string]any{"type": []string{"number", "string"}}}}},
	}}
	if r := n.admin("PUT", "/api/v1/tracking-plans/"+srcName, fixed); r.status != 200 || r.json(t)["version"] != 2.0 {
		t.Fatalf("put fixed: %d %s", r.status, r.body)
	}
	replay(q["m-bad"]["id"].(string), q["m-other"]["id"].(string))
	if q := held(); len(q) != 0 {
		t.Fatalf("still held after the fix: %v", q)
	}
	for _, id := range []string{"m-first", "m-good", "m-bad", "m-other"} {
		if got := stored(id); got != 1 {
			t.Errorf("%s stored %d times, want once", id, got)
		}
	}

	// Flagged: stored, and listed with the plan.
	send(`{"userId":"u1","messageId":"m-new","event":"Video Played"}`)
	n.drain()
	if stored("m-new") != 1 {
		t.Error("a flagged event was not stored")
	}
	got := n.admin("GET", plan, nil)
	var view struct {
		Version    int
		SourceName string
		Flagged    []struct {
			Name string
			Seen int
		}
	}
	json.Unmarshal(got.body, &view)
	if view.Version != 2 || view.SourceName != srcName || !strings.Contains(string(got.body), `"name":"Video Played"`) {
		t.Errorf("plan in force: %s", got.body)
	}
	if r := n.admin("GET", "/api/v1/tracking-plans", nil); r.status != 200 || len(r.json(t)["items"].([]any)) != 1 {
		t.Errorf("list: %d %s", r.status, r.body)
	}
	// Every put is in the audit log, with the version before it.
	a := n.admin("GET", "/api/v1/audit?limit=1000", nil)
	if c := strings.Count(string(a.body), `"trackingplan.put"`); c != 2 {
		t.Errorf("%d trackingplan.put audit entries, want 2: %s", c, a.body)
	}
}
