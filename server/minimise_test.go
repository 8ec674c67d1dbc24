package server

import (
	"bytes"
	"encoding/json"
	"testing"
)

// TestIPMinimisation: context.ip is truncated by default (the address
// tandem adds and one the event carries, in a batch's context too, IPv4
// and IPv6), dropped or kept by the source's ipPolicy, and the raw
// address is in no file of the data directory (log, state store, event
// store), the quarantine included.
func TestIPMinimisation(t *testing.T) {
	n := startNode(t, "", nil)
	post := func(key, path, body string) {
		t.Helper()
		if r := n.do("POST", path, "basic:"+key, []byte(body), nil); r.status != 200 {
			t.Fatalf("POST %s: %d %s", path, r.status, r.body)
		}
	}
	ipOf := func(id string) any {
		t.Helper()
		r := n.admin("GET", "/api/v1/events/"+id, nil)
		if r.status != 200 {
			t.Fatalf("GET event %s: %d %s", id, r.status, r.body)
		}
		c, _ := r.json(t)["context"].(map[string]any)
		if c == nil {
			return nil
		}
		return c["ip"]
	}
	src := n.admin("GET", "/api/v1/sources/default", nil).json(t)
	if src["ipPolicy"] != "truncate" {
		t.Errorf("default source's ipPolicy = %v, want truncate", src["ipPolicy"])
	}
	post(n.writeKey, "/v1/track", `{"userId":"u1","event":"E","messageId":"t1"}`)
	post(n.writeKey, "/v1/track", `{"userId":"u1","event":"E","messageId":"t2","context":{"ip":"198.51.100.77"}}`)
	post(n.writeKey, "/v1/batch", `{"context":{"ip":"203.0.113.199"},"batch":[{"type":"track","userId":"u1","event":"E","messageId":"t3"},`+
		`{"type":"track","userId":"u1","event":"E","messageId":"t4","context":{"ip":"2001:db8:abcd:12::77"}}]}`)
	post(n.writeKey, "/v1/import", `{"batch":[{"type":"track","userId":"u1","event":"E","messageId":"t5","timestamp":"2025-01-01T00:00:00Z","context":{"ip":"192.0.2.188"}}]}`)
	// Invalid (no userId or anonymousId): quarantined with its context.
	post(n.writeKey, "/v1/track", `{"event":"E","messageId":"q1","context":{"ip":"198.51.100.66"}}`)

	dropID, dropKey := n.createSource("ip-drop", nil)
	if r := n.admin("PATCH", "/api/v1/sources/"+dropID, map[string]any{"ipPolicy": "drop"}); r.status != 200 || r.json(t)["ipPolicy"] != "drop" {
		t.Fatalf("PATCH ipPolicy drop: %d %s", r.status, r.body)
	}
	post(dropKey, "/v1/track", `{"userId":"u2","event":"E","messageId":"d1"}`)
	post(dropKey, "/v1/track", `{"userId":"u2","event":"E","messageId":"d2","context":{"ip":"198.51.100.55","locale":"de"}}`)

	m, r := n.createSourceRaw(map[string]any{"name": "ip-keep", "kind": "server", "owner": "it", "ipPolicy": "keep"})
	if m == nil || m["ipPolicy"] != "keep" {
		t.Fatalf("create with ipPolicy keep: %d %s", r.status, r.body)
	}
	post(m["writeKey"].(string), "/v1/track", `{"userId":"u3","event":"E","messageId":"k1","context":{"ip":"198.51.100.44"}}`)
	n.drain()

	for id, want := range map[string]any{"t1": "127.0.0.0", "t2": "198.51.100.0", "t3": "203.0.113.0", "t4": "2001:db8:abcd::",
		"t5": "192.0.2.0", "d1": nil, "d2": nil, "k1": "198.51.100.44"} {
		if got := ipOf(id); got != want {
			t.Errorf("%s: context.ip = %v, want %v", id, got, want)
		}
	}
	q := n.quarantine()
	if raw, _ := json.Marshal(q); len(q) != 1 || bytes.Contains(raw, []byte("198.51.100.66")) || !bytes.Contains(raw, []byte("198.51.100.0")) {
		t.Errorf("quarantine: %v, want one entry without the raw address", q)
	}
	for _, raw := range []string{"198.51.100.77", "203.0.113.199", "2001:db8:abcd:12::77", "192.0.2.188", "198.51.100.66", "198.51.100.55"} {
		if hits := grepDir(t, n.dir, []string{raw})[raw]; len(hits) > 0 {
			t.Errorf("the raw address %s is stored in %v", raw, hits)
		}
	}
	// The kept one is where it is expected: a control for the search.
	if hits := grepDir(t, n.dir, []string{"198.51.100.44"})["198.51.100.44"]; len(hits) == 0 {
		t.Error("the byte search finds not even the kept address")
	}

	for _, bad := range []any{"mask", 3} {
		checkError(t, n.admin("PATCH", "/api/v1/sources/"+dropID, map[string]any{"ipPolicy": bad}), 400, "", "ipPolicy")
	}
	if _, r := n.createSourceRaw(map[string]any{"name": "ip-bad", "kind": "server", "owner": "it", "ipPolicy": "hash"}); r.status != 400 {
		t.Errorf("create with ipPolicy hash: %d %s", r.status, r.body)
	}
}
