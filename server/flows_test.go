package server

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"tandem/config"
)

// TestCatalogFlows: the catalogue's flows are source → destination with
// the events delivered over the last 30 days, counted from what a real
// local receiver got; flows carrying personal data to a destination
// without a purpose or consent purpose are the report's unjustified ones.
func TestCatalogFlows(t *testing.T) {
	n := startNode(t, "", func(c *config.Config) {
		c.DestinationAllow = []string{"127.0.0.0/8"}
		c.Consent.Defaults = map[string]bool{"Analytics": true}
	})
	var mu sync.Mutex
	got := map[string]int{} // per receiver path
	rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		mu.Lock()
		got[r.URL.Path]++
		mu.Unlock()
	}))
	defer rc.Close()
	dest := func(name, purpose string, purposes []string) string {
		t.Helper()
		r := n.admin("POST", "/api/v1/destinations", map[string]any{"name": name, "type": "webhook",
			"config": map[string]any{"url": rc.URL + "/" + name}, "owner": "marketing", "purpose": purpose,
			"dataCategories": []string{"behavioural"}, "consentPurposes": purposes})
		if r.status != 201 {
			t.Fatalf("create destination: %d %s", r.status, r.body)
		}
		return r.json(t)["id"].(string)
	}
	warehouse := dest("warehouse", "journey analytics", []string{"Analytics"})
	mailer := dest("mailer", "", nil)
	shopID, shopKey := n.createSource("shop", nil) // behavioural
	m, r := n.createSourceRaw(map[string]any{"name": "crm", "kind": "crm", "owner": "sales", "purpose": "leads", "dataCategories": []string{"contact"}})
	if m == nil {
		t.Fatalf("create crm: %d %s", r.status, r.body)
	}
	crmID, crmKey := m["id"].(string), m["writeKey"].(string)
	send := func(key string, k int, prefix string) {
		t.Helper()
		for i := range k {
			body := fmt.Sprintf(`{"userId":"u-%s-%d","event":"Viewed","messageId":"%s-%d"}`, prefix, i, prefix, i)
			if r := n.do("POST", "/v1/track", "basic:"+key, []byte(body), nil); r.status != 200 {
				t.Fatalf("track: %d %s", r.status, r.body)
			}
		}
	}
	send(shopKey, 3, "shop")
	send(crmKey, 2, "crm")
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		done := got["/warehouse"] >= 5 && got["/mailer"] >= 5
		mu.Unlock()
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("receivers got %v, want 5 each", got)
		}
		time.Sleep(50 * time.Millisecond)
	}

	type flow struct {
		n        int64
		personal bool
	}
	want := map[[2]string]flow{
		{shopID, warehouse}: {3, false}, {shopID, mailer}: {3, false},
		{crmID, warehouse}: {2, true}, {crmID, mailer}: {2, true},
	}
	// The receiver answers before delivery counts the event: read until
	// the counts are there.
	var have map[[2]string]flow
	deadline = time.Now().Add(10 * time.Second)
	for {
		var c struct {
			Flows []struct {
				From, To     string
				Events30d    int64 `json:"events30d"`
				PersonalData bool  `json:"personalData"`
			} `json:"flows"`
		}
		r = n.admin("GET", "/api/v1/catalog", nil)
		if err := json.Unmarshal(r.body, &c); err != nil || r.status != 200 {
			t.Fatalf("catalog: %d %s", r.status, r.body)
		}
		have = map[[2]string]flow{}
		for _, f := range c.Flows {
			have[[2]string{f.From, f.To}] = flow{f.Events30d, f.PersonalData}
		}
		if maps.Equal(have, want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !maps.Equal(have, want) {
		t.Errorf("flows %+v, want %+v (%s)", have, want, r.body)
	}

	var rep struct {
		Unjustified []struct{ From, To string } `json:"unjustifiedFlows"`
	}
	r = n.admin("GET", "/api/v1/catalog/report", nil)
	if err := json.Unmarshal(r.body, &rep); err != nil || r.status != 200 {
		t.Fatalf("report: %d %s", r.status, r.body)
	}
	if len(rep.Unjustified) != 1 || rep.Unjustified[0].From != crmID || rep.Unjustified[0].To != mailer {
		t.Errorf("unjustifiedFlows %s, want only crm → mailer (personal data, no purpose, no consent purpose)", r.body)
	}
}
