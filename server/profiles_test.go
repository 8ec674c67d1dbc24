package server

import (
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"testing"
)

// profileEvents lists the messageIds of a profile's timeline.
func (n *node) profileEvents(id string) []string {
	n.t.Helper()
	r := n.admin("GET", "/api/v1/profiles/"+id+"/events?limit=1000", nil)
	if r.status != 200 {
		n.t.Fatalf("profile events: %d %s", r.status, r.body)
	}
	var page struct {
		Items []struct {
			MessageID string `json:"messageId"`
		} `json:"items"`
	}
	if err := json.Unmarshal(r.body, &page); err != nil {
		n.t.Fatal(err)
	}
	var out []string
	for _, e := range page.Items {
		out = append(out, e.MessageID)
	}
	return out
}

func (n *node) lookup(ident string) map[string]any {
	n.t.Helper()
	r := n.admin("GET", "/api/v1/profiles/lookup?identifier="+url.QueryEscape(ident), nil)
	if r.status != 200 {
		n.t.Fatalf("lookup %s: %d %s", ident, r.status, r.body)
	}
	return r.json(n.t)
}

// TestProfiles drives identity through a real node: a web visit, a login
// that merges it with the user, a call-centre contact matched by phone;
// then lookup, the whole timeline (events from before the merge
// included), the explanation, and an unmerge that re-attributes events.
func TestProfiles(t *testing.T) {
	n := startNode(t, "", nil)
	batch := `{"batch":[
		{"type":"page","anonymousId":"tablet","messageId":"w1","timestamp":"2024-05-01T09:00:00Z"},
		{"type":"track","anonymousId":"tablet","event":"Viewed Shoes","messageId":"w2","timestamp":"2024-05-01T09:01:00Z"},
		{"type":"identify","userId":"dora","anonymousId":"laptop","messageId":"w3","timestamp":"2024-05-01T10:00:00Z","traits":{"phone":"+44 20 7946 0000","name":"Dora"}},
		{"type":"identify","userId":"dora","anonymousId":"tablet","messageId":"w4","timestamp":"2024-05-01T11:00:00Z","traits":{"name":"Dora B."}},
		{"type":"track","anonymousId":"call-17","event":"Call Logged","messageId":"c1","timestamp":"2024-05-01T12:00:00Z","context":{"traits":{"phone":"0044 20-7946-0000"}}}
	]}`
	if r := n.do("POST", "/v1/batch", "basic:"+n.writeKey, []byte(batch), nil); r.status != 200 {
		t.Fatalf("batch: %d %s", r.status, r.body)
	}
	n.drain()

	p := n.lookup("phone:+44 (20) 7946 0000")
	id := p["id"].(string)
	if got := n.lookup("user_id:dora")["id"]; got != id {
		t.Fatalf("dora is %v, the phone's profile is %s", got, id)
	}
	if p["traits"].(map[string]any)["name"] != "Dora B." {
		t.Errorf("traits (last write by event time): %v", p["traits"])
	}
	if _, ok := p["audiences"].([]any); !ok {
		t.Errorf("no audiences list: %s", p)
	}
	if got, want := n.profileEvents(id), []string{"w1", "w2", "w3", "w4", "c1"}; !slices.Equal(got, want) {
		t.Errorf("timeline %v, want %v", got, want)
	}
	r := n.admin("GET", "/api/v1/profiles/"+id+"/explain", nil)
	if r.status != 200 {
		t.Fatalf("explain: %d %s", r.status, r.body)
	}
	var x struct {
		Summary string
		Steps   []struct {
			Kind, MessageID, MergeID, Identifier, Text string
		}
	}
	if err := json.Unmarshal(r.body, &x); err != nil {
		t.Fatal(err)
	}
	mergeID := ""
	for _, s := range x.Steps {
		if s.Kind == "merged" && s.MessageID == "w4" {
			mergeID = s.MergeID
		}
	}
	if mergeID == "" || x.Summary == "" {
		t.Fatalf("no merge by w4 in %s", r.body)
	}

	// Roles: it may not read profiles; analyst reads but may not unmerge.
	analyst := n.admin("POST", "/api/v1/users", map[string]any{"name": "ana", "role": "analyst"}).json(t)["token"].(string)
	it := n.admin("POST", "/api/v1/users", map[string]any{"name": "ops", "role": "it"}).json(t)["token"].(string)
	checkError(t, n.do("GET", "/api/v1/profiles/"+id, "bearer:"+it, nil, nil), 403, "forbidden", "")
	if r := n.do("GET", "/api/v1/profiles/"+id, "bearer:"+analyst, nil, nil); r.status != 200 {
		t.Errorf("analyst read: %d %s", r.status, r.body)
	}
	checkError(t, n.do("POST", "/api/v1/profiles/"+id+"/unmerge", "bearer:"+analyst, []byte(`{"mergeId":"`+mergeID+`"}`), nil), 403, "forbidden", "")
	checkError(t, n.admin("GET", "/api/v1/profiles/lookup?identifier=nocolon", nil), 400, "invalid_field", "identifier")
	checkError(t, n.admin("GET", "/api/v1/profiles/lookup?identifier=shoe_size:42", nil), 400, "invalid_field", "identifier")
	checkError(t, n.admin("GET", "/api/v1/profiles/lookup?identifier=email:nobody@example.com", nil), 404, "not_found", "")
	checkError(t, n.admin("GET", "/api/v1/profiles/prf_nothing", nil), 404, "not_found", "")
	checkError(t, n.admin("POST", "/api/v1/profiles/"+id+"/unmerge", map[string]any{"mergeId": "mrg_nope"}), 400, "invalid_field", "mergeId")
	checkError(t, n.admin("POST", "/api/v1/profiles/"+id+"/unmerge", map[string]any{}), 400, "invalid_field", "mergeId")

	// Unmerge the shared tablet: its visit goes back to a profile of its
	// own with its events; Dora keeps hers and the call.
	r = n.admin("POST", "/api/v1/profiles/"+id+"/unmerge", map[string]any{"mergeId": mergeID, "reason": "shared tablet"})
	if r.status != 200 {
		t.Fatalf("unmerge: %d %s", r.status, r.body)
	}
	tablet := n.lookup("anonymous_id:tablet")["id"].(string)
	dora := n.lookup("user_id:dora")["id"].(string)
	if tablet == dora {
		t.Fatalf("still one profile after unmerge")
	}
	// The unmerge is in the audit log: who, which profile, the decision
	// and the resulting profiles, by id only.
	um := n.admin("GET", "/api/v1/audit?action=profile.unmerge&subject="+id, nil)
	var ums struct{ Items []map[string]any }
	if err := json.Unmarshal(um.body, &ums); err != nil || len(ums.Items) != 1 {
		t.Fatalf("audit entries of the unmerge: %d %s", um.status, um.body)
	}
	if after, _ := json.Marshal(ums.Items[0]["after"]); !strings.Contains(string(after), tablet) || !strings.Contains(string(after), dora) ||
		strings.Contains(string(um.body), "7946") || strings.Contains(string(um.body), "tablet\"") {
		t.Errorf("the unmerge's audit entry: %s", um.body)
	}
	if got, want := n.profileEvents(tablet), []string{"w1", "w2"}; !slices.Equal(got, want) {
		t.Errorf("tablet timeline %v, want %v", got, want)
	}
	if got, want := n.profileEvents(dora), []string{"w3", "w4", "c1"}; !slices.Equal(got, want) {
		t.Errorf("dora timeline %v, want %v", got, want)
	}
	// The id that disappeared in the merge (or the unmerge) still answers.
	for _, old := range []string{id, tablet, dora} {
		if r := n.admin("GET", "/api/v1/profiles/"+old, nil); r.status != 200 {
			t.Errorf("GET %s: %d %s", old, r.status, r.body)
		}
	}
}
