package server

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"

	"tandem/config"
)

func gz(b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

func TestTrackAndReadBack(t *testing.T) {
	n := startNode(t, "", nil)
	r := n.do("POST", "/v1/track", "basic:"+n.writeKey,
		[]byte(`{"userId":"u1","event":"Signed Up","messageId":"m-1","properties":{"plan":"pro"},"timestamp":"2026-01-02T03:04:05Z"}`), nil)
	if r.status != 200 || string(r.body) != `{"success":true}` {
		t.Fatalf("track: %d %s", r.status, r.body)
	}
	n.drain()
	evs := n.events("profile=u1")
	if len(evs) != 1 {
		t.Fatalf("want 1 event, got %d", len(evs))
	}
	e := evs[0]
	if e["messageId"] != "m-1" || e["event"] != "Signed Up" || e["type"] != "track" || e["timestamp"] != "2026-01-02T03:04:05Z" ||
		e["originalTimestamp"] != "2026-01-02T03:04:05Z" || e["receivedAt"] == nil || e["sourceId"] == nil {
		t.Errorf("event read back wrong: %v", e)
	}
	if p, _ := e["properties"].(map[string]any); p["plan"] != "pro" {
		t.Errorf("properties lost: %v", e)
	}
	one := n.admin("GET", "/api/v1/events/m-1", nil)
	if one.status != 200 || one.json(t)["event"] != "Signed Up" {
		t.Errorf("GET /events/m-1: %d %s", one.status, one.body)
	}
	checkError(t, n.admin("GET", "/api/v1/events/nope", nil), 404, "not_found", "")
}

func TestWriteKeyInBodyAndGzip(t *testing.T) {
	n := startNode(t, "", nil)
	body := []byte(`{"writeKey":"` + n.writeKey + `","batch":[{"type":"identify","userId":"u2","traits":{"plan":"x"}},{"type":"page","anonymousId":"a2","name":"Home"}]}`)
	// RudderStack's node SDK sends gzip under a form Content-Type.
	r := n.do("POST", "/v1/batch", "", gz(body), map[string]string{"Content-Encoding": "gzip", "Content-Type": "application/x-www-form-urlencoded"})
	if r.status != 200 {
		t.Fatalf("batch: %d %s", r.status, r.body)
	}
	r = n.do("POST", "/v1/screen", "", []byte(`{"writeKey":"`+n.writeKey+`","userId":"u2","name":"Settings"}`), nil)
	if r.status != 200 {
		t.Fatalf("screen: %d %s", r.status, r.body)
	}
	n.drain()
	if evs := n.events(""); len(evs) != 3 {
		t.Fatalf("want 3 events, got %d", len(evs))
	}
	for _, e := range n.events("") {
		if _, ok := e["writeKey"]; ok {
			t.Errorf("write key echoed back in stored event: %v", e)
		}
	}
}

func TestRefusedWholeNothingStored(t *testing.T) {
	n := startNode(t, "", nil)
	good := `{"type":"track","event":"e","userId":"u"}`
	big := `{"batch":[` + strings.TrimSuffix(strings.Repeat(`{"type":"track","event":"e","userId":"u","properties":{"p":"`+strings.Repeat("x", 20000)+`"}},`, 30), ",") + `]}`
	for _, c := range []struct {
		name   string
		path   string
		auth   string
		body   []byte
		header map[string]string
		status int
		code   string
		field  string
	}{
		{"malformed JSON", "/v1/batch", "basic:" + n.writeKey, []byte(`{"batch":[` + good), nil, 400, "invalid_json", ""},
		{"not an object", "/v1/track", "basic:" + n.writeKey, []byte(`[` + good + `]`), nil, 400, "invalid_body", ""},
		{"batch not array", "/v1/batch", "basic:" + n.writeKey, []byte(`{"batch":{}}`), nil, 400, "invalid_field", "batch"},
		{"bad gzip", "/v1/batch", "basic:" + n.writeKey, []byte("not gzip at all"), map[string]string{"Content-Encoding": "gzip"}, 400, "invalid_gzip", "Content-Encoding"},
		{"truncated gzip", "/v1/batch", "basic:" + n.writeKey, gz([]byte(`{"batch":[` + good + `]}`))[:20], map[string]string{"Content-Encoding": "gzip"}, 400, "invalid_gzip", ""},
		{"unknown encoding", "/v1/batch", "basic:" + n.writeKey, []byte(`{"batch":[]}`), map[string]string{"Content-Encoding": "br"}, 400, "unsupported_encoding", "Content-Encoding"},
		{"wrong write key", "/v1/batch", "basic:wk_wrong", []byte(`{"batch":[` + good + `]}`), nil, 401, "unauthenticated", ""},
		{"wrong key in body", "/v1/batch", "", []byte(`{"writeKey":"wk_wrong","batch":[` + good + `]}`), nil, 401, "unauthenticated", ""},
		{"no write key", "/v1/track", "", []byte(good), nil, 401, "unauthenticated", ""},
		{"oversize request", "/v1/batch", "basic:" + n.writeKey, []byte(big), nil, 413, "too_large", ""},
		{"oversize gzip request", "/v1/batch", "basic:" + n.writeKey, gz([]byte(big)), map[string]string{"Content-Encoding": "gzip"}, 413, "too_large", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			checkError(t, n.do("POST", c.path, c.auth, c.body, c.header), c.status, c.code, c.field)
		})
	}
	checkError(t, n.do("GET", "/v1/track", "basic:"+n.writeKey, nil, nil), 405, "method_not_allowed", "")
	n.drain()
	if evs := n.events(""); len(evs) != 0 {
		t.Errorf("refused requests stored %d events", len(evs))
	}
	if q := n.quarantine(); len(q) != 0 {
		t.Errorf("refused requests quarantined %d events", len(q))
	}
}

func TestBadEventsQuarantinedNeighboursKept(t *testing.T) {
	n := startNode(t, "", nil)
	huge := `{"type":"track","event":"big","userId":"u","properties":{"p":"` + strings.Repeat("x", 33*1024) + `"}}`
	batch := `{"batch":[
		{"type":"track","event":"ok-0","userId":"u","messageId":"ok-0"},
		{"type":"track","event":"bad-ts","userId":"u","timestamp":"last tuesday"},
		{"type":"track","event":"no-ids"},
		{"type":"track","userId":"u"},
		{"type":"teleport","userId":"u"},
		{"type":"track","event":"typed","userId":"u","properties":"not an object"},
		{"type":"track","event":"ok-6","userId":"u","messageId":"ok-6"},
		` + huge + `,
		{"type":"identify","userId":["u"]},
		{"type":"track","event":"ok-9","anonymousId":"a","messageId":"ok-9"}]}`
	r := n.do("POST", "/v1/batch", "basic:"+n.writeKey, []byte(batch), nil)
	if r.status != 200 {
		t.Fatalf("batch: %d %s", r.status, r.body)
	}
	reply := r.json(t)
	want := map[int][2]string{
		1: {"invalid_timestamp", "batch[1].timestamp"},
		2: {"missing_field", "batch[2].userId"},
		3: {"missing_field", "batch[3].event"},
		4: {"unknown_type", "batch[4].type"},
		5: {"invalid_type", "batch[5].properties"},
		7: {"too_large", "batch[7]"},
		8: {"invalid_type", "batch[8].userId"},
	}
	q, _ := reply["quarantined"].([]any)
	if reply["success"] != true || len(q) != len(want) {
		t.Fatalf("reply: %s", r.body)
	}
	for _, x := range q {
		m := x.(map[string]any)
		idx := int(m["index"].(float64))
		if w, ok := want[idx]; !ok || m["code"] != w[0] || m["field"] != w[1] || m["message"] == "" {
			t.Errorf("quarantined entry %v, want %v", m, want[idx])
		}
	}
	// A single-event endpoint reports index 0.
	r = n.do("POST", "/v1/track", "basic:"+n.writeKey, []byte(`{"userId":"u"}`), nil)
	if r.status != 200 || !strings.Contains(string(r.body), `"index":0`) || !strings.Contains(string(r.body), `"field":"event"`) {
		t.Errorf("single bad event: %d %s", r.status, r.body)
	}
	n.drain()
	evs := n.events("")
	if len(evs) != 3 {
		t.Fatalf("want the 3 valid events stored, got %d", len(evs))
	}
	entries := n.quarantine()
	if len(entries) != len(want)+1 {
		t.Fatalf("want %d quarantine entries, got %d", len(want)+1, len(entries))
	}
	fields := map[string]bool{}
	for _, e := range entries {
		fields[e["field"].(string)] = true
		if e["raw"] == nil || e["status"] != "held" || e["code"] == "" {
			t.Errorf("entry %v", e)
		}
	}
	for _, w := range want {
		if !fields[w[1]] {
			t.Errorf("quarantine lacks %s", w[1])
		}
	}
}

func TestDedupAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, dir, nil)
	send := func(n *node) {
		r := n.do("POST", "/v1/batch", "basic:"+n.writeKey, []byte(`{"batch":[
			{"type":"track","event":"A","userId":"u","messageId":"dup-1"},
			{"type":"track","event":"A again","userId":"u","messageId":"dup-1"},
			{"type":"track","event":"B","userId":"u","messageId":"dup-2"}]}`), nil)
		if r.status != 200 {
			t.Fatalf("%d %s", r.status, r.body)
		}
	}
	send(n)
	send(n)
	n.drain()
	if evs := n.events(""); len(evs) != 2 {
		t.Fatalf("want 2 events, got %d", len(evs))
	}
	n.stop()
	n2 := startNode(t, dir, nil)
	send(n2)
	n2.drain()
	evs := n2.events("")
	if len(evs) != 2 {
		t.Fatalf("after restart: want 2 events, got %d", len(evs))
	}
	if evs[0]["event"] != "A" && evs[1]["event"] != "A" {
		t.Errorf("first write should win: %v", evs)
	}
}

func TestRateLimitPerSource(t *testing.T) {
	n := startNode(t, "", func(c *config.Config) { c.SourceRateLimit = 100; c.SourceBurst = 2500 })
	r := n.admin("POST", "/api/v1/sources", map[string]any{"name": "quiet", "kind": "web", "owner": "marketing"})
	if r.status != 201 {
		t.Fatalf("create source: %d %s", r.status, r.body)
	}
	quietKey := r.json(t)["writeKey"].(string)
	batch := func(k int) []byte {
		var b strings.Builder
		b.WriteString(`{"batch":[`)
		for i := 0; i < k; i++ {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"type":"track","event":"flood","userId":"u"}`)
		}
		b.WriteString(`]}`)
		return []byte(b.String())
	}
	var limited response
	for i := 0; i < 5; i++ {
		r := n.do("POST", "/v1/batch", "basic:"+n.writeKey, batch(1000), nil)
		if r.status == 429 {
			limited = r
			break
		}
	}
	checkError(t, limited, 429, "rate_limited", "")
	if ra, _ := strconv.Atoi(limited.header.Get("Retry-After")); ra < 1 {
		t.Errorf("Retry-After %q", limited.header.Get("Retry-After"))
	}
	if r := n.do("POST", "/v1/batch", "basic:"+quietKey, batch(10), nil); r.status != 200 {
		t.Errorf("another source was starved: %d %s", r.status, r.body)
	}
}

func TestLogFullAnswers503NotOK(t *testing.T) {
	n := startNode(t, "", func(c *config.Config) { c.LogMaxBytes = 256 << 10 })
	body := []byte(`{"batch":[` + strings.TrimSuffix(strings.Repeat(`{"type":"track","event":"fill","userId":"u","properties":{"p":"`+strings.Repeat("y", 900)+`"}},`, 50), ",") + `]}`)
	var ok, unavailable int
	for i := 0; i < 40 && unavailable == 0; i++ {
		r := n.do("POST", "/v1/batch", "basic:"+n.writeKey, body, nil)
		switch r.status {
		case 200:
			ok++
		case 503:
			unavailable++
			checkError(t, r, 503, "unavailable", "")
			if r.header.Get("Retry-After") == "" {
				t.Error("503 without Retry-After")
			}
		default:
			t.Fatalf("status %d %s", r.status, r.body)
		}
	}
	if unavailable == 0 {
		t.Fatal("a full log never answered 503")
	}
	if r := n.do("GET", "/readyz", "", nil, nil); r.status != 503 {
		t.Errorf("readyz with a full log: %d", r.status)
	}
	n.drain()
	if got := len(n.events("")); got != ok*50 {
		t.Errorf("%d requests got 200 (%d events) but %d events stored", ok, ok*50, got)
	}
}

func TestConcurrentIngestAllStoredOnce(t *testing.T) {
	n := startNode(t, "", nil)
	const clients, reqs, per = 8, 20, 50
	var wg sync.WaitGroup
	errs := make(chan string, clients*reqs)
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			for r := 0; r < reqs; r++ {
				var b strings.Builder
				b.WriteString(`{"batch":[`)
				for i := 0; i < per; i++ {
					if i > 0 {
						b.WriteByte(',')
					}
					fmt.Fprintf(&b, `{"type":"track","event":"e","userId":"u%d","messageId":"c%d-r%d-i%d"}`, c, c, r, i)
				}
				b.WriteString(`]}`)
				resp := n.do("POST", "/v1/batch", "basic:"+n.writeKey, []byte(b.String()), nil)
				if resp.status != 200 {
					errs <- fmt.Sprintf("%d %s", resp.status, resp.body)
				}
			}
		}(c)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	n.drain()
	evs := n.events("")
	seen := map[string]bool{}
	for _, e := range evs {
		id := e["messageId"].(string)
		if seen[id] {
			t.Errorf("duplicate %s", id)
		}
		seen[id] = true
	}
	if len(seen) != clients*reqs*per {
		t.Errorf("stored %d distinct events, want %d", len(seen), clients*reqs*per)
	}
	m := string(n.do("GET", "/metrics", "", nil, nil).body)
	for _, want := range []string{"tandem_events_accepted_total", "tandem_log_append_seconds_bucket", "tandem_pipeline_lag_records", `tandem_collect_requests_total{endpoint="batch",status="200"} 160`} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
