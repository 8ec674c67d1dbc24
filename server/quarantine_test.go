package server

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"tandem/event"
)

func TestQuarantineReplay(t *testing.T) {
	n := startNode(t, "", nil)
	// One event invalid at ingest, and one that (as after an event-store
	// failure) was quarantined in processing although it is valid.
	r := n.do("POST", "/v1/track", "basic:"+n.writeKey, []byte(`{"userId":"u"}`), nil)
	if r.status != 200 {
		t.Fatal(r.status)
	}
	n.drain()
	srcs := n.admin("GET", "/api/v1/sources", nil).json(t)["items"].([]any)
	srcID := srcs[0].(map[string]any)["id"].(string)
	err := n.srv.Quarantine.Add(context.Background(), 1<<62|7, []event.Problem{{
		SourceID: srcID, Code: "processing_failed", Message: "event store was down", ReceivedAt: time.Now().UTC(),
		Raw: []byte(`{"type":"track","event":"Recovered","userId":"u"}`),
	}})
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{}
	for _, e := range n.quarantine() {
		ids[e["code"].(string)] = e["id"].(string)
	}
	body := map[string]any{"ids": []string{ids["missing_field"], ids["processing_failed"], "q_nope"}}
	r = n.admin("POST", "/api/v1/quarantine/replay", body)
	if r.status != 200 {
		t.Fatalf("replay: %d %s", r.status, r.body)
	}
	var out struct {
		Items []struct{ ID, Status, Code, Field string }
	}
	json.Unmarshal(r.body, &out)
	want := []string{"invalid", "replayed", "not_found"}
	for i, it := range out.Items {
		if it.Status != want[i] {
			t.Errorf("item %d: %+v, want %s", i, it, want[i])
		}
	}
	if out.Items[0].Field != "event" {
		t.Errorf("an invalid replay should say why: %+v", out.Items[0])
	}
	// Replaying again does nothing more, and the event is stored once.
	r = n.admin("POST", "/api/v1/quarantine/replay", map[string]any{"ids": []string{ids["processing_failed"]}})
	if !json.Valid(r.body) || r.status != 200 || !contains(r.body, "already_replayed") {
		t.Errorf("second replay: %d %s", r.status, r.body)
	}
	n.drain()
	evs := n.events("event=Recovered")
	if len(evs) != 1 {
		t.Fatalf("replayed event stored %d times", len(evs))
	}
	checkError(t, n.admin("POST", "/api/v1/quarantine/replay", map[string]any{"ids": []string{}}), 400, "invalid_field", "ids")
}

func contains(b []byte, s string) bool { return strings.Contains(string(b), s) }
