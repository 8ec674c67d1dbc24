package e2e

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"sync"
	"testing"
	"time"

	segment "github.com/segmentio/analytics-go/v3"
)

// captureTransport records every request body an SDK sends (un-gzipped if
// it was gzipped) and passes the request on unchanged.
type captureTransport struct {
	next http.RoundTripper

	mu       sync.Mutex
	bodies   [][]byte
	encoding []string // Content-Encoding of each request
	statuses []int
}

func (c *captureTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil {
		b, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		body = b
		req.Body = io.NopCloser(bytes.NewReader(b))
		if req.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(bytes.NewReader(b))
			if err != nil {
				return nil, fmt.Errorf("capture: SDK sent bad gzip: %w", err)
			}
			if body, err = io.ReadAll(zr); err != nil {
				return nil, fmt.Errorf("capture: SDK sent bad gzip: %w", err)
			}
		}
	}
	resp, err := c.next.RoundTrip(req)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.bodies = append(c.bodies, body)
	c.encoding = append(c.encoding, req.Header.Get("Content-Encoding"))
	if err == nil {
		c.statuses = append(c.statuses, resp.StatusCode)
	} else {
		c.statuses = append(c.statuses, 0)
	}
	return resp, err
}

// sdkCallback records the SDK's per-message outcomes.
type sdkCallback struct {
	mu       sync.Mutex
	ok       int
	failures []string
}

func (c *sdkCallback) success() {
	c.mu.Lock()
	c.ok++
	c.mu.Unlock()
}

func (c *sdkCallback) failure(what string, err error) {
	c.mu.Lock()
	c.failures = append(c.failures, fmt.Sprintf("%s: %v", what, err))
	c.mu.Unlock()
}

type segmentCallback struct{ *sdkCallback }

func (c segmentCallback) Success(segment.Message) { c.success() }
func (c segmentCallback) Failure(m segment.Message, err error) {
	c.failure(fmt.Sprintf("%T", m), err)
}

// testLogger sends an SDK's log lines to the test log.
type testLogger struct{ t *testing.T }

func (l testLogger) Logf(format string, args ...any) { l.t.Logf("sdk: "+format, args...) }
func (l testLogger) Errorf(format string, args ...any) {
	l.t.Logf("sdk error: "+format, args...)
}

// sentBatch is the part of a captured /v1/batch body the checks need.
type sentBatch struct {
	SentAt  string            `json:"sentAt"`
	Context map[string]any    `json:"context"`
	Batch   []json.RawMessage `json:"batch"`
}

// sentEvents indexes the captured events by messageId, each with the
// batch-level sentAt it travelled with.
func sentEvents(t *testing.T, ct *captureTransport) (events map[string]map[string]any, sentAt map[string]string, batches []sentBatch) {
	t.Helper()
	ct.mu.Lock()
	defer ct.mu.Unlock()
	events, sentAt = map[string]map[string]any{}, map[string]string{}
	for i, b := range ct.bodies {
		var sb sentBatch
		if err := json.Unmarshal(b, &sb); err != nil {
			t.Fatalf("request %d: SDK sent a body that is not JSON: %v", i, err)
		}
		batches = append(batches, sb)
		for _, raw := range sb.Batch {
			var m map[string]any
			if err := json.Unmarshal(raw, &m); err != nil {
				t.Fatal(err)
			}
			events[str(m, "messageId")] = m
			sentAt[str(m, "messageId")] = sb.SentAt
		}
	}
	return events, sentAt, batches
}

// checkCommon compares what the server stored with what the SDK sent.
func checkCommon(t *testing.T, id string, got, sent map[string]any, sourceID string) {
	t.Helper()
	for _, k := range []string{"type", "userId", "anonymousId", "event", "name", "groupId", "previousId"} {
		if str(got, k) != str(sent, k) {
			t.Errorf("%s: %s = %q, sent %q", id, k, str(got, k), str(sent, k))
		}
	}
	for _, k := range []string{"properties", "traits"} {
		if !reflect.DeepEqual(got[k], sent[k]) {
			t.Errorf("%s: %s = %v, sent %v", id, k, got[k], sent[k])
		}
	}
	if str(got, "messageId") != id {
		t.Errorf("%s: messageId = %q", id, str(got, "messageId"))
	}
	if str(got, "sourceId") != sourceID {
		t.Errorf("%s: sourceId = %q, want %q", id, str(got, "sourceId"), sourceID)
	}
	if _, ok := got["writeKey"]; ok {
		t.Errorf("%s: the stored event shows a writeKey", id)
	}
}

// defaultSourceID returns the id of the bootstrap source "default".
func defaultSourceID(t *testing.T, s *server) string {
	t.Helper()
	status, body := s.admin("GET", "/api/v1/sources", nil)
	if status != 200 {
		t.Fatalf("GET /api/v1/sources: %d %s", status, body)
	}
	var p struct {
		Items []struct{ ID, Name, Approval string } `json:"items"`
	}
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatal(err)
	}
	for _, src := range p.Items {
		if src.Name == "default" {
			if src.Approval != "approved" {
				t.Errorf("source default is %q, want approved", src.Approval)
			}
			return src.ID
		}
	}
	t.Fatalf("no source named default in %s", body)
	return ""
}

// µs is the event store's time resolution: times come back truncated to it.
const µs = time.Microsecond

func TestSegmentGoSDK(t *testing.T) {
	t.Parallel()
	s := startServer(t, "", serverOpts{})
	t.Run("analytics-go", func(t *testing.T) { testSegmentSDK(t, s) })
	t.Run("skewed_client_clock", func(t *testing.T) { testClockSkew(t, s) })
}

// testSegmentSDK sends every call type with Segment's analytics-go and
// reads each event back.
func testSegmentSDK(t *testing.T, s *server) {
	srcID := defaultSourceID(t, s)

	ct := &captureTransport{next: http.DefaultTransport}
	cb := &sdkCallback{}
	client, err := segment.NewWithConfig(s.writeKey, segment.Config{
		Endpoint:  s.url,
		BatchSize: 4,
		Interval:  50 * time.Millisecond,
		Transport: ct,
		Callback:  segmentCallback{cb},
		Logger:    testLogger{t},
		// Fail fast rather than retry for minutes if the server refuses.
		RetryAfter: func(int) time.Duration { return 100 * time.Millisecond },
	})
	if err != nil {
		t.Fatal(err)
	}
	// Client clock readings of when things happened: a minute ago, whole
	// milliseconds as browsers send them, one per message.
	base := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	at := func(i int) time.Time { return base.Add(time.Duration(i) * time.Second) }
	run := fmt.Sprintf("seg-%d", time.Now().UnixNano())
	ids := []string{run + "-identify", run + "-track", run + "-page", run + "-screen", run + "-group", run + "-alias"}
	msgs := []segment.Message{
		segment.Identify{MessageId: ids[0], UserId: "user-42", Timestamp: at(0),
			Traits: segment.NewTraits().SetEmail("ada@example.com").SetName("Ada Lovelace").Set("plan", "pro")},
		segment.Track{MessageId: ids[1], UserId: "user-42", Event: "Order Completed", Timestamp: at(1),
			Properties: segment.NewProperties().SetRevenue(42.5).SetCurrency("EUR").Set("items", 3)},
		segment.Page{MessageId: ids[2], AnonymousId: "anon-7", Name: "Pricing", Timestamp: at(2),
			Properties: segment.NewProperties().SetURL("https://example.com/pricing").SetTitle("Pricing")},
		segment.Screen{MessageId: ids[3], UserId: "user-42", Name: "Checkout", Timestamp: at(3),
			Properties: segment.NewProperties().Set("step", 2)},
		segment.Group{MessageId: ids[4], UserId: "user-42", GroupId: "acme", Timestamp: at(4),
			Traits: segment.NewTraits().SetName("Acme Inc").Set("employees", 120)},
		segment.Alias{MessageId: ids[5], UserId: "user-42", PreviousId: "anon-7", Timestamp: at(5)},
	}
	for _, m := range msgs {
		if err := client.Enqueue(m); err != nil {
			t.Fatalf("enqueue %T: %v", m, err)
		}
	}
	if err := client.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	cb.mu.Lock()
	if len(cb.failures) > 0 || cb.ok != len(msgs) {
		t.Errorf("SDK callbacks: %d succeeded, failures %v; want %d successes", cb.ok, cb.failures, len(msgs))
	}
	cb.mu.Unlock()
	ct.mu.Lock()
	for i, st := range ct.statuses {
		if st != 200 {
			t.Errorf("request %d: status %d", i, st)
		}
	}
	t.Logf("analytics-go sent %d requests", len(ct.statuses))
	ct.mu.Unlock()

	sent, sentAt, batches := sentEvents(t, ct)
	if len(sent) != len(msgs) {
		t.Fatalf("captured %d events, want %d", len(sent), len(msgs))
	}
	got := s.waitEvents(ids, 30*time.Second)

	var noLibrary []string
	for i, id := range ids {
		g, sm := got[id], sent[id]
		checkCommon(t, id, g, sm, srcID)
		if str(g, "receivedAt") == "" {
			t.Errorf("%s: no receivedAt", id)
			continue
		}
		recv := timeField(t, g, "receivedAt")
		ts := timeField(t, g, "timestamp")
		ots := timeField(t, g, "originalTimestamp")
		sat := timeField(t, g, "sentAt")
		// What the client said: its Timestamp, and the batch's sentAt.
		clientTS := at(i)
		clientSentAt, err := time.Parse(time.RFC3339Nano, sentAt[id])
		if err != nil {
			t.Fatalf("%s: SDK sent sentAt %q: %v", id, sentAt[id], err)
		}
		if !ots.Equal(clientTS) {
			t.Errorf("%s: originalTimestamp = %s, client sent %s", id, ots, clientTS.UTC())
		}
		if d := clientSentAt.Sub(sat); d < 0 || d >= µs {
			t.Errorf("%s: sentAt = %s, client sent %s", id, sat, clientSentAt.UTC())
		}
		// The server's correction, exactly (up to the store's µs).
		want := recv.Add(-clientSentAt.Sub(clientTS))
		if d := ts.Sub(want); d < -2*µs || d > 2*µs {
			t.Errorf("%s: timestamp = %s, want receivedAt - (sentAt - originalTimestamp) = %s", id, ts, want)
		}
		// Same clock on both sides: the corrected time is the client's
		// time plus the request's transit, which is small.
		if d := ts.Sub(clientTS); d < -time.Millisecond || d > 3*time.Second {
			t.Errorf("%s: timestamp %s is %s from the client's %s", id, ts, d, clientTS.UTC())
		}
		// analytics-go puts the library only in the batch's context.
		if lib, _ := dig(g, "context", "library", "name").(string); lib != "analytics-go" {
			noLibrary = append(noLibrary, id)
		}
	}
	if len(noLibrary) > 0 {
		t.Errorf("%d of %d events lack context.library.name \"analytics-go\", which analytics-go sends only in the "+
			"batch-level context %v (Segment applies a batch's context to every event in it): %v",
			len(noLibrary), len(ids), batches[0].Context, noLibrary)
	}
	if t.Failed() {
		return
	}

	// Spot checks of the decoded values.
	if e := dig(got[ids[0]], "traits", "email"); e != "ada@example.com" {
		t.Errorf("identify traits.email = %v", e)
	}
	if e := dig(got[ids[1]], "properties", "revenue"); e != 42.5 {
		t.Errorf("track properties.revenue = %v", e)
	}
	if e := str(got[ids[1]], "event"); e != "Order Completed" {
		t.Errorf("track event = %q", e)
	}
	if e := str(got[ids[2]], "name"); e != "Pricing" {
		t.Errorf("page name = %q", e)
	}
}

// dig walks nested JSON objects.
func dig(m map[string]any, path ...string) any {
	var v any = m
	for _, k := range path {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = mm[k]
	}
	return v
}

// testClockSkew sends as a client whose clock is an hour ahead.
func testClockSkew(t *testing.T, s *server) {
	run := fmt.Sprintf("skew-%d", time.Now().UnixNano())
	clientNow := time.Now().Add(time.Hour).UTC().Truncate(time.Millisecond)
	slowClock := time.Now().Add(-2 * time.Hour).UTC().Truncate(time.Millisecond)
	body, _ := json.Marshal(map[string]any{
		"sentAt": clientNow.Format(time.RFC3339Nano),
		"batch": []map[string]any{
			{"type": "track", "event": "Skewed", "userId": "u-skew", "messageId": run + "-a",
				"timestamp": clientNow.Add(-5 * time.Second).Format(time.RFC3339Nano)},
			// No timestamp at all: the event happened when it was received.
			{"type": "track", "event": "Untimed", "userId": "u-skew", "messageId": run + "-b"},
			// An event-level sentAt wins over the batch's.
			{"type": "track", "event": "OwnSentAt", "userId": "u-skew", "messageId": run + "-c",
				"sentAt":    slowClock.Format(time.RFC3339Nano),
				"timestamp": slowClock.Add(-10 * time.Second).Format(time.RFC3339Nano)},
		},
	})
	before := time.Now()
	status, reply, err := postBatch(context.Background(), apiClient, s.url, s.writeKey, body)
	after := time.Now()
	if err != nil || status != 200 {
		t.Fatalf("POST /v1/batch: %d %s %v", status, reply, err)
	}
	got := s.waitEvents([]string{run + "-a", run + "-b", run + "-c"}, 30*time.Second)

	a := got[run+"-a"]
	recv := timeField(t, a, "receivedAt")
	if recv.Before(before.Truncate(µs)) || recv.After(after) {
		t.Errorf("receivedAt %s not within the request [%s, %s]", recv, before.UTC(), after.UTC())
	}
	if ts := timeField(t, a, "timestamp"); ts.Sub(recv.Add(-5*time.Second)).Abs() > 2*µs {
		t.Errorf("skewed: timestamp = %s, want receivedAt - 5s = %s", ts, recv.Add(-5*time.Second))
	}
	if ots := timeField(t, a, "originalTimestamp"); !ots.Equal(clientNow.Add(-5 * time.Second)) {
		t.Errorf("skewed: originalTimestamp = %s, want the client's %s", ots, clientNow.Add(-5*time.Second))
	}
	if sat := timeField(t, a, "sentAt"); !sat.Equal(clientNow) {
		t.Errorf("skewed: sentAt = %s, want %s", sat, clientNow)
	}

	b := got[run+"-b"]
	if ts, rb := timeField(t, b, "timestamp"), timeField(t, b, "receivedAt"); !ts.Equal(rb) {
		t.Errorf("untimed: timestamp = %s, want receivedAt %s", ts, rb)
	}

	c := got[run+"-c"]
	if ts, rc := timeField(t, c, "timestamp"), timeField(t, c, "receivedAt"); ts.Sub(rc.Add(-10*time.Second)).Abs() > 2*µs {
		t.Errorf("event-level sentAt: timestamp = %s, want receivedAt - 10s = %s", ts, rc.Add(-10*time.Second))
	}
}
