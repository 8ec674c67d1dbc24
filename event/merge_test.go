package event

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

func TestBatchContextMerged(t *testing.T) {
	body := `{"context":{"library":{"name":"analytics-go"},"ip":"1.2.3.4"},"integrations":{"All":true},"batch":[
		{"type":"track","event":"A","userId":"u"},
		{"type":"track","event":"B","userId":"u","context":{"ip":"5.6.7.8","page":{"path":"/"}}},
		{"type":"track","event":"C","userId":"u","context":null,"integrations":{}},
		{"type":"track","event":"D","userId":"u","context":{}}]}`
	req, err := ParseBatch([]byte(body), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	want := []map[string]any{
		{"library": map[string]any{"name": "analytics-go"}, "ip": "1.2.3.4"},
		{"library": map[string]any{"name": "analytics-go"}, "ip": "5.6.7.8", "page": map[string]any{"path": "/"}},
		{"library": map[string]any{"name": "analytics-go"}, "ip": "1.2.3.4"},
		{"library": map[string]any{"name": "analytics-go"}, "ip": "1.2.3.4"},
	}
	for i, e := range req.Events {
		var m map[string]any
		if err := json.Unmarshal(e.Raw, &m); err != nil {
			t.Fatalf("event %d: merged raw is not JSON: %s", i, e.Raw)
		}
		if !reflect.DeepEqual(m["context"], want[i]) {
			t.Errorf("event %d: context %v, want %v", i, m["context"], want[i])
		}
		if m["integrations"] == nil || m["event"] == nil {
			t.Errorf("event %d: %s", i, e.Raw)
		}
	}
	if _, err := ParseBatch([]byte(`{"context":[1],"batch":[]}`), time.Now()); err == nil {
		t.Error("a batch context that is not an object was accepted")
	}
}

func TestContextDefaults(t *testing.T) {
	defs := []byte(`{"ip":"203.0.113.9","userAgent":"ua"}`)
	now := time.Now()
	for _, c := range []struct{ body, want string }{
		{`{"userId":"u","event":"e"}`, `{"context":{"ip":"203.0.113.9","userAgent":"ua"},"userId":"u","event":"e"}`},
		{` {"userId":"u","event":"e","context":null}`, `{"userId":"u","event":"e","context":{"ip":"203.0.113.9","userAgent":"ua"}}`},
		{`{"userId":"u","event":"e","context":{}}`, `{"userId":"u","event":"e","context":{"ip":"203.0.113.9","userAgent":"ua"}}`},
		{`{"userId":"u","event":"e","context":{"ip":"1.2.3.4"}}`, `{"userId":"u","event":"e","context":{"ip":"1.2.3.4","userAgent":"ua"}}`},
		{`{"userId":"u","event":"e","context":{"userAgent":"x","ip":"1.2.3.4"}}`, `{"userId":"u","event":"e","context":{"userAgent":"x","ip":"1.2.3.4"}}`},
	} {
		req, err := ParseSingleContext("track", []byte(c.body), now, defs, "")
		if err != nil || len(req.Events) != 1 {
			t.Fatalf("%s: %v %+v", c.body, err, req)
		}
		if got := string(req.Events[0].Raw); got != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.body, got, c.want)
		}
	}
	req, err := ParseBatchContext([]byte(`{"context":{"ip":"10.0.0.1"},"batch":[{"type":"track","userId":"u","event":"e"},{"type":"track","userId":"u","event":"e","context":{"ip":"10.0.0.2"}}]}`), now, defs, "")
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{
		`{"context":{"ip":"10.0.0.1","userAgent":"ua"},"type":"track","userId":"u","event":"e"}`,
		`{"type":"track","userId":"u","event":"e","context":{"ip":"10.0.0.2","userAgent":"ua"}}`,
	} {
		if got := string(req.Events[i].Raw); got != want {
			t.Errorf("batch[%d]:\n got %s\nwant %s", i, got, want)
		}
	}
	// Without defaults nothing changes.
	body := []byte(`{"userId":"u","event":"e"}`)
	req, _ = ParseSingleContext("track", body, now, nil, "")
	if string(req.Events[0].Raw) != string(body) {
		t.Errorf("changed without defaults: %s", req.Events[0].Raw)
	}
}
