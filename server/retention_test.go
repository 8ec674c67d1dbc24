package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"tandem/config"
	"tandem/event"
)

// TestRetention: with a short configured age for one source, a run
// removes that source's expired data from every store (event store and
// its API, the event log, the quarantine, dead letters and delivery
// attempts, the consent history) and keeps its recent data and another
// source's, whose age is longer.
func TestRetention(t *testing.T) {
	const expiredValue, expiredBad = "expired-note-3f9a1c", "expired-bad-7d20be"
	const age = 8 * time.Second
	n := startNode(t, "", func(c *config.Config) {
		c.DestinationAllow = []string{"127.0.0.0/8"}
		c.Retention.Sources = map[string]time.Duration{"shop": age}
		c.Retention.Default = time.Hour
		c.Retention.ConsentHistory = age
		c.Retention.Every = time.Hour // the test runs it now
	})
	// A receiver that refuses every event (400): each becomes a dead letter.
	var mu sync.Mutex
	refused := map[string]bool{}
	rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var e map[string]any
		_ = json.Unmarshal(b, &e)
		mu.Lock()
		refused[fmt.Sprint(e["messageId"])] = true
		mu.Unlock()
		w.WriteHeader(400)
	}))
	defer rc.Close()
	r := n.admin("POST", "/api/v1/destinations", map[string]any{"name": "strict", "type": "webhook",
		"config": map[string]any{"url": rc.URL}, "owner": "it", "purpose": "archive"})
	if r.status != 201 {
		t.Fatalf("create destination: %d %s", r.status, r.body)
	}
	dest := r.json(t)["id"].(string)
	_, shopKey := n.createSource("shop", nil)

	send := func(key, body string) {
		t.Helper()
		if r := n.do("POST", "/v1/track", "basic:"+key, []byte(body), nil); r.status != 200 {
			t.Fatalf("track: %d %s", r.status, r.body)
		}
	}
	consent := `"context":{"consent":{"categoryPreferences":{"Analytics":true}}}`
	deadLetters := func() []string {
		t.Helper()
		var dl struct {
			Items []struct {
				MessageID string `json:"messageId"`
			} `json:"items"`
		}
		if err := json.Unmarshal(n.admin("GET", "/api/v1/destinations/"+dest+"/dead-letters", nil).body, &dl); err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, d := range dl.Items {
			ids = append(ids, d.MessageID)
		}
		slices.Sort(ids)
		return ids
	}
	// waitRefused waits until the receiver refused ids and delivery
	// stored them as dead letters (after the receiver answered).
	waitRefused := func(ids ...string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			mu.Lock()
			all := true
			for _, id := range ids {
				all = all && refused[id]
			}
			mu.Unlock()
			dead := deadLetters()
			for _, id := range ids {
				all = all && slices.Contains(dead, id)
			}
			if all {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the receiver never got %v, or they are not dead letters (%v)", ids, dead)
			}
			time.Sleep(50 * time.Millisecond)
		}
		n.drain()
	}
	send(shopKey, `{"userId":"u-old","event":"Viewed","messageId":"old-1",`+consent+`}`)
	send(shopKey, `{"userId":"u-old","event":"Viewed","messageId":"old-2","properties":{"note":"`+expiredValue+`"}}`)
	send(shopKey, `{"event":"Viewed","messageId":"old-bad","properties":{"note":"`+expiredBad+`"}}`) // no id: quarantined
	send(n.writeKey, `{"userId":"u-def","event":"Viewed","messageId":"def-old"}`)
	waitRefused("old-1", "old-2", "def-old")
	oldSent := time.Now()
	time.Sleep(time.Until(oldSent.Add(age + 500*time.Millisecond)))
	send(shopKey, `{"userId":"u-new","event":"Viewed","messageId":"new-1",`+consent+`}`)
	send(shopKey, `{"event":"Viewed","messageId":"new-bad"}`)
	send(n.writeKey, `{"userId":"u-def","event":"Viewed","messageId":"def-new"}`)
	waitRefused("new-1", "def-new")

	// The search can fail: the expired values are on disk before the run.
	if found := grepDir(t, n.dir, []string{expiredValue, expiredBad}); len(found[expiredValue]) == 0 || len(found[expiredBad]) == 0 {
		t.Fatalf("the expired values are in no file before the run: %v", found)
	} else {
		t.Logf("before the run: %v", found)
	}
	r = n.admin("POST", "/api/v1/privacy/retention/run", nil)
	if r.status != 200 {
		t.Fatalf("run: %d %s", r.status, r.body)
	}
	var run struct {
		Removed map[string]int64 `json:"removed"`
		Sources []struct{ Name, MaxAge, Basis string }
	}
	if err := json.Unmarshal(r.body, &run); err != nil {
		t.Fatal(err)
	}
	for store, want := range map[string]int64{"events": 2, "quarantine": 1, "delivery": 2, "consent_history": 1} {
		if run.Removed[store] != want {
			t.Errorf("removed from %s: %d, want %d (%s)", store, run.Removed[store], want, r.body)
		}
	}

	// The event store and its API.
	if r := n.admin("GET", "/api/v1/events/old-1", nil); r.status != 404 {
		t.Errorf("old-1 after retention: %d %s", r.status, r.body)
	}
	var ids []string
	for _, e := range n.events("") {
		ids = append(ids, e["messageId"].(string))
	}
	slices.Sort(ids)
	if !slices.Equal(ids, []string{"def-new", "def-old", "new-1"}) {
		t.Errorf("events after retention: %v, want def-new, def-old, new-1", ids)
	}
	// The quarantine.
	var q []string
	for _, e := range n.quarantine() {
		raw, _ := e["raw"].(map[string]any)
		q = append(q, fmt.Sprint(raw["messageId"]))
	}
	if !slices.Equal(q, []string{"new-bad"}) {
		t.Errorf("quarantine after retention: %v, want new-bad", q)
	}
	// Dead letters and delivery attempts.
	if dead := deadLetters(); !slices.Equal(dead, []string{"def-new", "def-old", "new-1"}) {
		t.Errorf("dead letters after retention: %v", dead)
	}
	attempts := string(n.admin("GET", "/api/v1/destinations/"+dest+"/deliveries", nil).body)
	if strings.Contains(attempts, `"old-`) || !strings.Contains(attempts, `"new-1"`) || !strings.Contains(attempts, `"def-old"`) {
		t.Errorf("delivery attempts after retention: %s", attempts)
	}
	// The consent history: the old decision's entry is gone, the decision
	// itself stays (delivery is checked against it), the new one is kept.
	history := func(user string) (int, map[string]any) {
		t.Helper()
		p := n.admin("GET", "/api/v1/profiles/lookup?identifier=user_id:"+user, nil)
		if p.status != 200 {
			t.Fatalf("lookup %s: %d %s", user, p.status, p.body)
		}
		m := p.json(t)
		var h struct {
			Items []any `json:"items"`
		}
		_ = json.Unmarshal(n.admin("GET", "/api/v1/profiles/"+m["id"].(string)+"/consent/history", nil).body, &h)
		c, _ := m["consent"].(map[string]any)
		return len(h.Items), c
	}
	if k, c := history("u-old"); k != 0 || c["purposes"].(map[string]any)["Analytics"] != true {
		t.Errorf("u-old: %d history entries, consent %v; want none, Analytics still granted", k, c)
	}
	if k, _ := history("u-new"); k != 1 {
		t.Errorf("u-new: %d history entries, want 1", k)
	}
	// The event log keeps records no longer than the shortest age: the
	// old records are gone from it, the new ones are there.
	deadline := time.Now().Add(15 * time.Second)
	for {
		inLog := logMessageIDs(t, n)
		old := slices.ContainsFunc(inLog, func(id string) bool { return strings.HasPrefix(id, "old-") || id == "def-old" })
		if !old && slices.Contains(inLog, "new-1") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the event log holds %v; want the old records gone, new-1 kept", inLog)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Not one byte of the expired events is left under the data
	// directory: the event store's file was copied, the state store
	// checkpointed, the log's records aged out.
	if !strings.Contains(string(r.body), `"compacted":["state","events"]`) {
		t.Errorf("the run compacted: %s", r.body)
	}
	if found := grepDir(t, n.dir, []string{expiredValue, expiredBad}); len(found) > 0 {
		t.Errorf("after the retention run, found on disk: %v", found)
	}
	// The policy as the API shows it, and the metrics.
	pol := string(n.admin("GET", "/api/v1/privacy/retention", nil).body)
	if !strings.Contains(pol, `"name":"shop","maxAge":"8s","basis":"source"`) || !strings.Contains(pol, `"logMaxAge":"8s"`) ||
		!strings.Contains(pol, `"name":"default","maxAge":"1h0m0s","basis":"default"`) {
		t.Errorf("GET /privacy/retention: %s", pol)
	}
	m := string(n.do("GET", "/metrics", "", nil, nil).body)
	if !strings.Contains(m, `tandem_retention_removed_total{store="events"} 2`) || !strings.Contains(m, `tandem_retention_runs_total{result="ok"}`) {
		t.Errorf("metrics: %s", grepLines(m, "tandem_retention"))
	}
}

// logMessageIDs reads the whole event log with a throwaway consumer and
// returns the message ids of its events and quarantined entries.
func logMessageIDs(t *testing.T, n *node) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	name := fmt.Sprintf("retention-check-%d", time.Now().UnixNano())
	c, err := n.srv.Log.Consumer(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		c.Close()
		if d, ok := n.srv.Log.(interface {
			DeleteConsumer(context.Context, string) error
		}); ok {
			_ = d.DeleteConsumer(ctx, name)
		}
	}()
	var ids []string
	for {
		msgs, err := c.Fetch(ctx, 100, 300*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) == 0 {
			return ids
		}
		for _, m := range msgs {
			evs, probs, err := event.DecodeRecord(m.Data)
			if err != nil {
				continue
			}
			for _, e := range evs {
				ids = append(ids, e.MessageID)
			}
			for _, p := range probs {
				ids = append(ids, p.MessageID)
			}
		}
		_ = c.Ack(ctx, msgs...)
	}
}
