package event

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// encodeRecordV1 is a record as written before version 2.
func encodeRecordV1(sourceID string, events []Event, problems []Problem) []byte {
	buf := append([]byte(nil), recordHeaderV1...)
	for i := range events {
		buf = appendEventV1(buf, sourceID, &events[i])
	}
	// Problem entries are the same in both versions.
	return AppendEntries(buf, sourceID, nil, problems)
}

// TestRecordV1: records written before the compact entries still decode,
// to the same events and problems as the same request written now, and a
// rewrite keeps their version; a version 1 record holds no version 2
// entry.
func TestRecordV1(t *testing.T) {
	req, err := ParseBatchContext([]byte(`{"sentAt":"2026-03-01T12:00:01Z","batch":[
		{"type":"track","event":"A","userId":"u-1","anonymousId":"a-1","timestamp":"2026-03-01T12:00:00.123456789Z","messageId":"m-1"},
		{"type":"alias","userId":"u-22","previousId":"p-22","messageId":"m-2"},
		{"type":"group","userId":"u-333","groupId":"g-333"},
		{"type":"track","event":"x"}]}`), recv, []byte(`{"ip":"192.0.2.1"}`), "")
	if err != nil {
		t.Fatal(err)
	}
	v1 := encodeRecordV1("src", req.Events, req.Problems)
	v2 := EncodeRecord("src", req.Events, req.Problems)
	old, oldProbs, err := DecodeRecord(v1)
	if err != nil {
		t.Fatal(err)
	}
	now, nowProbs, err := DecodeRecord(v2)
	if err != nil {
		t.Fatal(err)
	}
	if len(old) != 3 || len(now) != 3 || len(oldProbs) != 1 || len(nowProbs) != 1 {
		t.Fatalf("v1 %d events %d problems, v2 %d events %d problems", len(old), len(oldProbs), len(now), len(nowProbs))
	}
	for i := range old {
		want := req.Events[i]
		want.SourceID = "src"
		if !equalEvent(old[i], want) || !equalEvent(now[i], want) {
			t.Errorf("event %d: v1 %+v, v2 %+v, want %+v", i, old[i], now[i], want)
		}
	}
	if oldProbs[0].Field != nowProbs[0].Field || oldProbs[0].SourceID != "src" {
		t.Errorf("problems: v1 %+v, v2 %+v", oldProbs[0], nowProbs[0])
	}
	out, n, err := Redact(v1, func(e Entry) bool { return e.UserID == "u-22" }, []string{"pipeline"})
	if err != nil || n != 1 || !bytes.HasPrefix(out, recordHeaderV1) {
		t.Fatalf("redact of a v1 record: %d, %v, %q", n, err, out[:4])
	}
	if evs, _, done, err := DecodeRecordDone(out); err != nil || len(evs) != 2 || evs[1].UserID != "u-333" || len(done) != 1 {
		t.Fatalf("rewritten v1 record: %+v %v %v", evs, done, err)
	}
	// Version 2 entries under a version 1 header are not read.
	for _, kind := range []byte{kindSource, kindCompact} {
		bad := append(append([]byte(nil), recordHeaderV1...), kind, 1, 's')
		if _, _, err := DecodeRecord(bad); err == nil {
			t.Errorf("kind %d decoded in a v1 record", kind)
		}
	}
}

// TestCompactEntries: the entries EncodeBatch makes refer into the
// event's JSON for the fields it holds as they are (also when the context
// defaults went in before them), copy the others (escaped in the JSON,
// absent from it, too short to refer to), and decode to the events
// ParseBatchContext lists; they are smaller than version 1's.
func TestCompactEntries(t *testing.T) {
	body := []byte(`{"sentAt":"2026-03-01T12:00:01Z","batch":[
		{"context":{"library":{"name":"l"}},"type":"track","event":"Order Completed","userId":"user-0001","messageId":"msg-0000000001"},
		{"type":"identify","anonymousId":"anon-\u00e9-1","messageId":"msg-0000000002","timestamp":"2026-03-01T12:00:00Z","context":{"ip":"198.51.100.7"}},
		{"type":"page","name":"Home","userId":"u","anonymousId":"anon-0003","messageId":"msg-0000000003"},
		{"type":"track","event":"Signed Up","userId":"user-0004","context":null},
		{"type":"alias","userId":"user-0005","previousId":"prev-0005","messageId":"msg-0000000005","timestamp":"1950-01-01T00:00:00Z"},
		{"type":"group","userId":"user-0006","groupId":"group-0006","messageId":"msg-0000000006","context":{"userAgent":"x"}}]}`)
	defaults := []byte(`{"ip":"192.0.2.1","userAgent":"agent/1.0"}`)
	at := time.Date(2026, 3, 1, 12, 0, 2, 123, time.UTC)
	parsed, err := ParseBatchContext(body, at, defaults, "")
	if err != nil || len(parsed.Events) != 6 {
		t.Fatalf("%v, %+v", err, parsed)
	}
	req, chunk, err := EncodeBatch(nil, "src-compact", body, at, defaults, "")
	if err != nil || req.Encoded != 6 {
		t.Fatalf("%v, %+v", err, req)
	}
	got, _, err := DecodeRecord(append(append([]byte(nil), RecordHeader...), chunk...))
	if err != nil || len(got) != 6 {
		t.Fatalf("%v, %d events", err, len(got))
	}
	var v1 []byte
	for i, want := range parsed.Events {
		if len(want.MessageID) == 36 && len(got[i].MessageID) == 36 {
			want.MessageID = got[i].MessageID // generated: one each time
		}
		want.SourceID = "src-compact"
		if !equalEvent(got[i], want) {
			t.Errorf("event %d: encoded %+v\nparsed %+v", i, got[i], want)
		}
		v1 = appendEventV1(v1, "src-compact", &want)
	}
	if strings.Contains(string(chunk), "msg-0000000001") && strings.Count(string(chunk), "msg-0000000001") != 1 {
		t.Errorf("messageId written twice: %q", chunk)
	}
	if len(chunk) > len(v1)-6*30 {
		t.Errorf("compact entries %d bytes, version 1's %d", len(chunk), len(v1))
	}
}

// TestCompactTimes: the times of a compact entry round-trip whichever are
// set, however far apart.
func TestCompactTimes(t *testing.T) {
	far := time.Date(1700, 1, 1, 0, 0, 0, 1, time.UTC)
	late := time.Date(2250, 12, 31, 23, 59, 59, 999999999, time.UTC)
	recv := time.Date(2026, 12, 4, 10, 0, 0, 5, time.UTC)
	for _, ts := range [][4]time.Time{
		{},
		{recv, {}, {}, recv},
		{{}, late, far, late},
		{recv, far, late, far},
		{late, far, far, late},
	} {
		e := Event{MessageID: "m", Type: "track", UserID: "u", ReceivedAt: ts[0], SentAt: ts[1], OriginalTimestamp: ts[2], Timestamp: ts[3], Raw: []byte(`{}`)}
		got, _, err := DecodeRecord(EncodeRecord("s", []Event{e}, nil))
		if err != nil || len(got) != 1 {
			t.Fatalf("%v: %v", ts, err)
		}
		g := got[0]
		for i, pair := range [][2]time.Time{{g.ReceivedAt, e.ReceivedAt}, {g.SentAt, e.SentAt}, {g.OriginalTimestamp, e.OriginalTimestamp}, {g.Timestamp, e.Timestamp}} {
			if !pair[0].Equal(pair[1]) || pair[0].IsZero() != pair[1].IsZero() {
				t.Errorf("time %d: got %v want %v", i, pair[0], pair[1])
			}
		}
	}
}

// TestRedactSources: a rewritten record of two sources' chunks keeps each
// kept event's source, also when every event of the first chunk left.
func TestRedactSources(t *testing.T) {
	ev := func(id, user string) Event {
		return Event{MessageID: id, Type: "track", UserID: user, Raw: []byte(`{"userId":"` + user + `"}`)}
	}
	rec := EncodeRecord("src-a", []Event{ev("m1", "ann"), ev("m2", "bob")}, nil)
	rec = AppendEntries(rec, "src-b", []Event{ev("m3", "ann"), ev("m4", "cy")}, nil)
	out, n, err := Redact(rec, func(e Entry) bool { return e.UserID == "ann" || e.MessageID == "m2" }, nil)
	if err != nil || n != 3 {
		t.Fatalf("Redact = %d, %v", n, err)
	}
	got, _, err := DecodeRecord(out)
	if err != nil || len(got) != 1 || got[0].MessageID != "m4" || got[0].SourceID != "src-b" {
		t.Fatalf("kept %+v, %v", got, err)
	}
	// A compact event with no source entry before it is corrupt.
	bad := append(append([]byte(nil), RecordHeader...), rec[len(RecordHeader)+2+len("src-a"):]...)
	if _, _, err := DecodeRecord(bad); err == nil {
		t.Error("an event without its source decoded")
	}
}
