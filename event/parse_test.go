package event

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

var recv = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func TestSkewCorrection(t *testing.T) {
	// The client's clock is 1 hour fast: it says it sent at 13:00:05 an
	// event from 13:00:00; the server received it at 12:00:00.
	body := `{"batch":[{"type":"track","event":"A","userId":"u","timestamp":"2026-03-01T13:00:00Z","sentAt":"2026-03-01T13:00:05Z"}]}`
	req, err := ParseBatch([]byte(body), recv)
	if err != nil {
		t.Fatal(err)
	}
	e := req.Events[0]
	if want := recv.Add(-5 * time.Second); !e.Timestamp.Equal(want) {
		t.Errorf("timestamp %v, want %v", e.Timestamp, want)
	}
	if want := time.Date(2026, 3, 1, 13, 0, 0, 0, time.UTC); !e.OriginalTimestamp.Equal(want) {
		t.Errorf("originalTimestamp %v, want %v", e.OriginalTimestamp, want)
	}
	if !e.ReceivedAt.Equal(recv) {
		t.Errorf("receivedAt %v", e.ReceivedAt)
	}
}

func TestBatchLevelSentAtAndDefaults(t *testing.T) {
	body := `{"sentAt":"2026-03-01T12:00:10Z","batch":[
		{"type":"page","name":"Home","anonymousId":"a","timestamp":"2026-03-01T12:00:00Z"},
		{"type":"identify","userId":"u"},
		{"type":"track","event":"B","userId":"u","originalTimestamp":"2026-03-01T11:00:00Z"}]}`
	req, err := ParseBatch([]byte(body), recv)
	if err != nil {
		t.Fatal(err)
	}
	if len(req.Events) != 3 || len(req.Problems) != 0 {
		t.Fatalf("events %d problems %+v", len(req.Events), req.Problems)
	}
	if want := recv.Add(-10 * time.Second); !req.Events[0].Timestamp.Equal(want) {
		t.Errorf("batch sentAt not used: %v want %v", req.Events[0].Timestamp, want)
	}
	if req.Events[0].Name != "Home" {
		t.Errorf("page name %q", req.Events[0].Name)
	}
	if !req.Events[1].Timestamp.Equal(recv) || !req.Events[1].OriginalTimestamp.IsZero() {
		t.Errorf("no timestamp should mean receivedAt: %+v", req.Events[1])
	}
	if want := recv.Add(-(time.Hour + 10*time.Second)); !req.Events[2].Timestamp.Equal(want) {
		t.Errorf("originalTimestamp should stand in for timestamp: %v want %v", req.Events[2].Timestamp, want)
	}
	seen := map[string]bool{}
	for _, e := range req.Events {
		if len(e.MessageID) != 36 || seen[e.MessageID] {
			t.Errorf("generated messageId %q not a fresh UUID", e.MessageID)
		}
		seen[e.MessageID] = true
	}
}

func TestProblems(t *testing.T) {
	big := `{"type":"track","event":"x","userId":"u","properties":{"p":"` + strings.Repeat("x", MaxEventBytes) + `"}}`
	cases := []struct {
		event string
		code  string
		field string
	}{
		{`{"type":"track","event":"x"}`, "missing_field", "batch[0].userId"},
		{`{"type":"track","userId":"u"}`, "missing_field", "batch[0].event"},
		{`{"type":"track","userId":"u","event":""}`, "missing_field", "batch[0].event"},
		{`{"type":"bogus","userId":"u"}`, "unknown_type", "batch[0].type"},
		{`{"userId":"u"}`, "missing_field", "batch[0].type"},
		{`{"type":"track","event":"x","userId":"u","timestamp":"yesterday"}`, "invalid_timestamp", "batch[0].timestamp"},
		{`{"type":"track","event":"x","userId":"u","sentAt":12}`, "invalid_type", "batch[0].sentAt"},
		{`{"type":"track","event":"x","userId":42}`, "invalid_type", "batch[0].userId"},
		{`{"type":"track","event":["x"],"userId":"u"}`, "invalid_type", "batch[0].event"},
		{`{"type":"track","event":"x","userId":"u","properties":[1]}`, "invalid_type", "batch[0].properties"},
		{`{"type":"identify","userId":"u","traits":"vip"}`, "invalid_type", "batch[0].traits"},
		{`{"type":"identify","userId":"u","context":1}`, "invalid_type", "batch[0].context"},
		{`{"type":"identify","userId":"u","integrations":[]}`, "invalid_type", "batch[0].integrations"},
		{`{"type":"track","event":"x","userId":"u","timestamp":1}`, "invalid_type", "batch[0].timestamp"},
		{`{"type":"track","event":"x","userId":"u","originalTimestamp":{}}`, "invalid_type", "batch[0].originalTimestamp"},
		// With several fields wrong, the first in the order the checks
		// have always run is the one named.
		{`{"type":"identify","userId":"u","integrations":1,"context":1,"traits":1,"properties":1}`, "invalid_type", "batch[0].properties"},
		{`{"type":"identify","userId":"u","integrations":1,"context":1,"traits":1}`, "invalid_type", "batch[0].traits"},
		{`{"type":"identify","userId":"u","integrations":1,"context":1}`, "invalid_type", "batch[0].context"},
		{`{"type":"identify","userId":"u","sentAt":1,"originalTimestamp":1,"timestamp":1,"integrations":1}`, "invalid_type", "batch[0].integrations"},
		{`{"type":"identify","userId":"u","sentAt":1,"originalTimestamp":1,"timestamp":1}`, "invalid_type", "batch[0].timestamp"},
		{`{"type":"identify","userId":"u","sentAt":1,"originalTimestamp":1}`, "invalid_type", "batch[0].originalTimestamp"},
		{`{"type":"identify","userId":"u","messageId":"` + strings.Repeat("m", 257) + `","timestamp":1}`, "invalid_field", "batch[0].messageId"},
		{`{"type":"identify","userId":"u","anonymousId":1,"messageId":1}`, "invalid_type", "batch[0].anonymousId"},
		{`{"type":"identify","userId":"u","writeKey":1,"previousId":1,"groupId":1,"messageId":1}`, "invalid_type", "batch[0].messageId"},
		{`{"type":"identify","userId":"u","writeKey":1,"previousId":1,"groupId":1}`, "invalid_type", "batch[0].groupId"},
		{`{"type":"identify","userId":"u","writeKey":1,"previousId":1}`, "invalid_type", "batch[0].previousId"},
		{`{"type":"identify","userId":"u","writeKey":1}`, "invalid_type", "batch[0].writeKey"},
		{`{"type":"page","userId":"u","name":1}`, "invalid_type", "batch[0].name"},
		{`{"type":"group","userId":"u"}`, "missing_field", "batch[0].groupId"},
		{`{"type":"alias","userId":"u"}`, "missing_field", "batch[0].previousId"},
		{`"just a string"`, "invalid_type", "batch[0]"},
		{`17`, "invalid_type", "batch[0]"},
		{big, "too_large", "batch[0]"},
	}
	for _, c := range cases {
		body := `{"batch":[` + c.event + `,{"type":"track","event":"ok","userId":"u"}]}`
		req, err := ParseBatch([]byte(body), recv)
		if err != nil {
			t.Errorf("%.60s: request refused: %v", c.event, err)
			continue
		}
		if len(req.Events) != 1 || req.Events[0].Name != "ok" {
			t.Errorf("%.60s: the good neighbour was not kept: %+v", c.event, req.Events)
		}
		if len(req.Problems) != 1 {
			t.Errorf("%.60s: problems %+v", c.event, req.Problems)
			continue
		}
		p := req.Problems[0]
		if p.Code != c.code || p.Field != c.field || p.Index != 0 || p.Message == "" {
			t.Errorf("%.60s: got %s %s %q, want %s %s", c.event, p.Code, p.Field, p.Message, c.code, c.field)
		}
		if !bytes.Equal(p.Raw, []byte(c.event)) {
			t.Errorf("%.60s: raw bytes not kept", c.event)
		}
	}
}

func TestRequestErrors(t *testing.T) {
	many := `{"batch":[` + strings.TrimSuffix(strings.Repeat(`{},`, MaxBatchEvents+1), ",") + `]}`
	cases := []struct {
		body   string
		status int
		field  string
	}{
		{``, 400, ""},
		{`not json`, 400, ""},
		{`{"batch":[{"type":"track"`, 400, ""},
		{`[1,2]`, 400, ""},
		{`{}`, 400, "batch"},
		{`{"batch":{}}`, 400, "batch"},
		{`{"batch":"x"}`, 400, "batch"},
		{`{"batch":[],"writeKey":5}`, 400, "writeKey"},
		{`{"batch":[],"sentAt":"later"}`, 400, "sentAt"},
		{many, 413, "batch"},
	}
	for _, c := range cases {
		_, err := ParseBatch([]byte(c.body), recv)
		re, ok := err.(*RequestError)
		if !ok {
			t.Errorf("%.40q: want RequestError, got %v", c.body, err)
			continue
		}
		if re.Status != c.status || re.Field != c.field {
			t.Errorf("%.40q: got %d %q, want %d %q", c.body, re.Status, re.Field, c.status, c.field)
		}
	}
}

func TestSingle(t *testing.T) {
	req, err := ParseSingle("track", []byte(`{"type":"identify","writeKey":"wk","userId":"u","event":"Bought","messageId":"m1"}`), recv)
	if err != nil {
		t.Fatal(err)
	}
	if req.WriteKey != "wk" || len(req.Events) != 1 || req.Events[0].Type != "track" || req.Events[0].MessageID != "m1" {
		t.Fatalf("%+v", req)
	}
	req, err = ParseSingle("track", []byte(`{"userId":"u"}`), recv)
	if err != nil || len(req.Problems) != 1 || req.Problems[0].Field != "event" {
		t.Fatalf("%+v %v", req, err)
	}
}

func TestRecordRoundTrip(t *testing.T) {
	req, err := ParseBatch([]byte(`{"sentAt":"2026-03-01T12:00:01Z","batch":[
		{"type":"track","event":"A","userId":"u","anonymousId":"a","timestamp":"2026-03-01T12:00:00.123456789Z","messageId":"m"},
		{"type":"alias","userId":"u","previousId":"p"},
		{"type":"group","userId":"u","groupId":"g"},
		{"type":"track","event":"x"}]}`), recv)
	if err != nil {
		t.Fatal(err)
	}
	rec := append(EncodeRecord("src1", req.Events[:1], nil), AppendEntries(nil, "src2", req.Events[1:], req.Problems)...)
	events, problems, err := DecodeRecord(rec)
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 3 || len(problems) != 1 {
		t.Fatalf("got %d events %d problems", len(events), len(problems))
	}
	for i, e := range events {
		want := req.Events[i]
		want.SourceID = "src1"
		if i > 0 {
			want.SourceID = "src2"
		}
		if !equalEvent(e, want) {
			t.Errorf("event %d: got %+v want %+v", i, e, want)
		}
	}
	if p := problems[0]; p.SourceID != "src2" || p.Code != "missing_field" || p.Field != "batch[3].userId" || p.Index != 3 || string(p.Raw) != `{"type":"track","event":"x"}` {
		t.Errorf("problem %+v", p)
	}
	for _, bad := range [][]byte{nil, []byte("XXXX"), rec[:len(rec)-3], append(append([]byte{}, RecordHeader...), 9)} {
		if _, _, err := DecodeRecord(bad); err == nil {
			t.Errorf("corrupt record %q decoded", bad)
		}
	}
}

// TestAppendRecord: a record decoded onto events and problems a reader
// holds already adds its own after them, equal to a decoding on its own;
// a corrupt record leaves the slices as given.
func TestAppendRecord(t *testing.T) {
	req, err := ParseBatch([]byte(`{"batch":[
		{"type":"track","event":"A","userId":"u","messageId":"m1"},
		{"type":"identify","anonymousId":"a","messageId":"m2","traits":{"email":"x@y.z"}},
		{"type":"track","userId":"u"}]}`), recv)
	if err != nil {
		t.Fatal(err)
	}
	rec := EncodeRecord("src1", req.Events, req.Problems)
	alone, aloneProblems, err := DecodeRecord(rec)
	if err != nil {
		t.Fatal(err)
	}
	held := []Event{{MessageID: "held", Type: "page", AnonymousID: "h"}}
	heldProblems := []Problem{{Code: "held"}}
	events, problems, done, err := AppendRecord(held, heldProblems, rec)
	if err != nil || done != nil {
		t.Fatal(err, done)
	}
	if len(events) != 3 || events[0].MessageID != "held" || len(problems) != 2 || problems[0].Code != "held" {
		t.Fatalf("appended %d events, %d problems: %+v", len(events), len(problems), events)
	}
	for i, e := range events[1:] {
		if !equalEvent(e, alone[i]) {
			t.Errorf("event %d: appended %+v, alone %+v", i, e, alone[i])
		}
		if e.SourceID != "src1" || e.MessageID != req.Events[i].MessageID || e.Type != req.Events[i].Type {
			t.Errorf("event %d: %+v", i, e)
		}
	}
	if problems[1].Field != aloneProblems[0].Field || problems[1].SourceID != "src1" {
		t.Errorf("problem %+v, alone %+v", problems[1], aloneProblems[0])
	}
	events, problems, _, err = AppendRecord(held, heldProblems, rec[:len(rec)-2])
	if err == nil || len(events) != 1 || len(problems) != 1 {
		t.Fatalf("corrupt record: %v, %d events, %d problems", err, len(events), len(problems))
	}
}

func equalEvent(a, b Event) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}

// TestParseEventTrailingData: an event on its own (an imported line) with
// anything but white space after the object is refused, not stored with
// the extra bytes as its raw JSON.
func TestParseEventTrailingData(t *testing.T) {
	at := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, raw := range []string{`{"type":"track","event":"x","userId":"u"}00`, `{"type":"track","event":"x","userId":"u"} {}`} {
		if _, p := ParseEvent("", []byte(raw), at, "m1"); p == nil || p.Code != "invalid_json" {
			t.Errorf("%s: problem %+v, want invalid_json", raw, p)
		}
	}
	if _, p := ParseEvent("", []byte(`{"type":"track","event":"x","userId":"u"}`+" \n"), at, "m1"); p != nil {
		t.Errorf("trailing white space refused: %+v", p)
	}
}
