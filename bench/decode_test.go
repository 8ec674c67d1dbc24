package bench

import (
	"encoding/json"
	"testing"
	"time"

	"tandem/event"
)

// The collection API's decoder against encoding/json, on the bodies the
// benchmarks send: bench ingest's 100 track events, and bench e2e's web
// visitors (page views, an identify, tracks). Each reports CPU time per
// event (the process's, garbage collection included) beside the wall
// time, because on a shared machine wall time mostly measures the others.
//
//	go test -run '^$' -bench Decode -benchmem ./bench/
//
// "scanner" is event.ParseBatchContext with the context defaults the
// server adds (ip, userAgent): everything collection does to a body before
// it encodes the log entries. "encoding-json" is less work: it only
// decodes each event's top-level fields into a struct (keeping properties,
// traits, context and integrations raw), as a decoder-based parser would
// start. goccy/go-json and bytedance/sonic were measured the same way
// before choosing (docs/dependencies.md).
func BenchmarkDecode(b *testing.B) {
	now := time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)
	defaults := []byte(`{"ip":"127.0.0.1","userAgent":"Go-http-client/1.1"}`)
	bodies := []struct {
		name string
		body []byte
	}{
		{"ingest", newTemplate("1a2b3c4d", 1, 100, now).next()},
		{"e2e", newE2ETemplate("1a2b3c4d", 1, 100, 10, 3, now).next()},
	}
	for _, bd := range bodies {
		body := bd.body
		b.Run(bd.name+"/scanner", func(b *testing.B) {
			perEventCPU(b, body, func() int {
				req, err := event.ParseBatchContext(body, now, defaults, "")
				if err != nil || len(req.Problems) > 0 {
					b.Fatal(err, req.Problems)
				}
				return len(req.Events)
			})
		})
		b.Run(bd.name+"/encoding-json", func(b *testing.B) {
			perEventCPU(b, body, func() int {
				var wb struct {
					Batch    []json.RawMessage `json:"batch"`
					WriteKey *string           `json:"writeKey"`
					SentAt   *string           `json:"sentAt"`
					Context  json.RawMessage   `json:"context"`
				}
				if err := json.Unmarshal(body, &wb); err != nil {
					b.Fatal(err)
				}
				for _, raw := range wb.Batch {
					var w struct {
						Type, UserID, AnonymousID, Event, Name, MessageID         *string
						Timestamp, OriginalTimestamp, SentAt, GroupID, PreviousID *string
						WriteKey                                                  *string
						Properties, Traits, Context, Integrations                 json.RawMessage
					}
					if err := json.Unmarshal(raw, &w); err != nil {
						b.Fatal(err)
					}
				}
				return len(wb.Batch)
			})
		})
	}
}

// perEventCPU runs f (which decodes body and returns its event count) in
// b's loop and reports events/s and CPU nanoseconds per event.
func perEventCPU(b *testing.B, body []byte, f func() int) {
	b.SetBytes(int64(len(body)))
	c0, err := selfCPU()
	events := 0
	for b.Loop() {
		events += f()
	}
	c1, err1 := selfCPU()
	b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
	if err == nil && err1 == nil && events > 0 {
		b.ReportMetric(float64((c1-c0).Nanoseconds())/float64(events), "cpu-ns/event")
	}
}
