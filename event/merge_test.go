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
