package server

import (
	"bytes"
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"tandem/config"
)

// syncBuffer is a bytes.Buffer safe for the node's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestClassification: fields tagged by default (e-mail, phone, name,
// address), by the configuration (privacy.categories) and by a tracking
// plan (x-category) are masked for a role without pii:read in every
// answer, shown to admin, listed in the records of processing, and never
// written to the node's log.
func TestClassification(t *testing.T) {
	var logs syncBuffer
	n := startNodeLog(t, "", func(c *config.Config) {
		c.Privacy.Categories = map[string]string{"properties.card_last4": "payment"}
		c.Privacy.Subjects = []string{"customers", "employees"}
	}, hooks{}, func(err error) {
		if err != nil {
			t.Errorf("serve: %v", err)
		}
	}, &logs)
	plan := map[string]any{"unplanned": "allow", "events": map[string]any{
		"Order Completed": map[string]any{"properties": map[string]any{"type": "object", "properties": map[string]any{
			"iban": map[string]any{"type": "string", "x-category": "payment"}, "sku": map[string]any{"type": "string"}}}},
		"identify": map[string]any{"traits": map[string]any{"type": "object", "properties": map[string]any{
			"crm_id": map[string]any{"type": "integer", "x-category": "identity"}}}},
	}}
	if r := n.admin("PUT", "/api/v1/tracking-plans/default", plan); r.status != 200 {
		t.Fatalf("put plan: %d %s", r.status, r.body)
	}
	secrets := []string{"ann.lee@example.com", "+49 151 2345 6789", "Ann Lee", "Rosenweg 7", "4242", "DE89370400440532013000", "770011"}
	for _, b := range []string{
		`{"type":"identify","userId":"u-ann","messageId":"c1","traits":{"email":"ann.lee@example.com","phone":"+49 151 2345 6789","name":"Ann Lee","address":"Rosenweg 7","crm_id":770011,"plan":"gold"}}`,
		`{"type":"track","userId":"u-ann","messageId":"c2","event":"Order Completed","properties":{"card_last4":"4242","iban":"DE89370400440532013000","sku":"SKU-9"}}`,
		// Breaks the plan (sku must be a string): quarantined with its payload.
		`{"type":"track","userId":"u-ann","messageId":"c3","event":"Order Completed","properties":{"card_last4":"4242","iban":"DE89370400440532013000","sku":7}}`,
	} {
		if r := n.do("POST", "/v1/batch", "basic:"+n.writeKey, []byte(`{"batch":[`+b+`]}`), nil); r.status != 200 {
			t.Fatalf("batch: %d %s", r.status, r.body)
		}
	}
	n.drain()
	analyst := n.admin("POST", "/api/v1/users", map[string]string{"name": "ana", "role": "analyst"}).json(t)["token"].(string)
	privacyUser := n.admin("POST", "/api/v1/users", map[string]string{"name": "dpo", "role": "privacy"}).json(t)["token"].(string)
	profile := n.admin("GET", "/api/v1/profiles/lookup?identifier=user_id:u-ann", nil).json(t)["id"].(string)
	for _, path := range []string{"/api/v1/events", "/api/v1/events/c1", "/api/v1/events/c2", "/api/v1/quarantine",
		"/api/v1/profiles/" + profile, "/api/v1/profiles/" + profile + "/events"} {
		r := n.do("GET", path, "bearer:"+analyst, nil, nil)
		if path == "/api/v1/quarantine" {
			r = n.do("GET", path, "bearer:"+privacyUser, nil, nil) // privacy reads it (and sees it)
			if !strings.Contains(string(r.body), "DE89370400440532013000") {
				t.Errorf("privacy's quarantine lacks the payload: %s", r.body)
			}
			continue
		}
		if r.status != 200 {
			t.Fatalf("GET %s as analyst: %d %s", path, r.status, r.body)
		}
		for _, s := range secrets {
			if strings.Contains(string(r.body), s) {
				t.Errorf("GET %s as analyst shows %q: %s", path, s, r.body)
			}
		}
	}
	if b := string(n.do("GET", "/api/v1/events/c2", "bearer:"+analyst, nil, nil).body); !strings.Contains(b, `"sku":"SKU-9"`) ||
		!strings.Contains(b, `"iban":"masked:payment:`) || !strings.Contains(b, `"card_last4":"masked:payment:`) {
		t.Errorf("analyst's c2: %s", b)
	}
	if b := string(n.do("GET", "/api/v1/events/c1", "bearer:"+analyst, nil, nil).body); !strings.Contains(b, `"crm_id":"masked:identity:`) || !strings.Contains(b, `"plan":"gold"`) {
		t.Errorf("analyst's c1: %s", b)
	}
	if b := string(n.admin("GET", "/api/v1/events/c2", nil).body); !strings.Contains(b, "DE89370400440532013000") {
		t.Errorf("admin's c2 is masked: %s", b)
	}

	// The records of processing: privacy reads them, analyst may not.
	checkError(t, n.do("GET", "/api/v1/privacy/records", "bearer:"+analyst, nil, nil), 403, "forbidden", "")
	r := n.do("GET", "/api/v1/privacy/records", "bearer:"+privacyUser, nil, nil)
	var rec struct {
		Activities []struct {
			Tool              struct{ ID, Name string }
			DataCategories    []string `json:"dataCategories"`
			SubjectCategories []string `json:"subjectCategories"`
			PersonalData      bool     `json:"personalData"`
		} `json:"activities"`
		ClassifiedFields map[string]string `json:"classifiedFields"`
	}
	if err := json.Unmarshal(r.body, &rec); err != nil || r.status != 200 {
		t.Fatalf("records: %d %s", r.status, r.body)
	}
	if rec.ClassifiedFields["properties.iban"] != "payment" || rec.ClassifiedFields["traits.crmid"] != "identity" ||
		rec.ClassifiedFields["properties.cardlast4"] != "payment" || rec.ClassifiedFields["traits.email"] != "contact" {
		t.Errorf("classifiedFields: %v", rec.ClassifiedFields)
	}
	if len(rec.Activities) != 1 || rec.Activities[0].Tool.Name != "default" || !rec.Activities[0].PersonalData ||
		strings.Join(rec.Activities[0].DataCategories, ",") != "identity,payment" || len(rec.Activities[0].SubjectCategories) != 2 {
		t.Errorf("records: %s", r.body)
	}

	// Never in the log.
	out := logs.String()
	if !strings.Contains(out, "tandem ready") {
		t.Fatalf("the log was not captured: %q", out)
	}
	for _, s := range secrets {
		if strings.Contains(out, s) {
			t.Errorf("the log holds %q", s)
		}
	}
}
