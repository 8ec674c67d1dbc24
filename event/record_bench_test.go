package event

import (
	"bytes"
	"fmt"
	"testing"
	"time"
)

// benchRecord is a record of 200 events shaped like the drain benchmark's
// (page views, an identify, tracks).
func benchRecord(b *testing.B) []byte {
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	ts := now.Format(time.RFC3339Nano)
	uactx := `"context":{"library":{"name":"tandem-bench","version":"1"},"userAgent":"Mozilla/5.0 (X11; Linux x86_64) tandem-bench"}`
	var body bytes.Buffer
	body.WriteString(`{"batch":[`)
	for e := range 200 {
		if e > 0 {
			body.WriteByte(',')
		}
		person, pos := e/10, e%10
		anon, user := fmt.Sprintf("anon-%08d", person), fmt.Sprintf("user-%08d", person)
		msg := fmt.Sprintf(`"messageId":"m-%09d","timestamp":%q`, e, ts)
		switch {
		case pos < 5:
			fmt.Fprintf(&body, `{"type":"page","name":"Home","anonymousId":%q,%s,"properties":{"path":"/%d","title":"Home"},%s}`, anon, msg, pos, uactx)
		case pos == 5:
			fmt.Fprintf(&body, `{"type":"identify","anonymousId":%q,"userId":%q,%s,"traits":{"email":"%s@example.com","plan":"pro"},%s}`, anon, user, msg, user, uactx)
		default:
			fmt.Fprintf(&body, `{"type":"track","event":"Order Completed","anonymousId":%q,"userId":%q,%s,"properties":{"orderId":"o-%d","revenue":%d.5,"currency":"EUR"},%s}`, anon, user, msg, e, 10+e%90, uactx)
		}
	}
	body.WriteString(`]}`)
	req, err := ParseBatch(body.Bytes(), now)
	if err != nil || len(req.Problems) > 0 {
		b.Fatal(err, req.Problems)
	}
	return EncodeRecord("src-1", req.Events, nil)
}

// BenchmarkAppendRecord decodes a record of 200 events into a reused
// buffer, as the pipeline's decode stage does.
func BenchmarkAppendRecord(b *testing.B) {
	rec := benchRecord(b)
	buf := make([]Event, 0, 256)
	b.SetBytes(int64(len(rec)))
	b.ReportAllocs()
	for b.Loop() {
		var err error
		clear(buf)
		buf, _, _, err = AppendRecord(buf[:0], nil, rec)
		if err != nil || len(buf) != 200 {
			b.Fatal(err, len(buf))
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*200), "ns/event")
}
