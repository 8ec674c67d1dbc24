//go:build unix

package audience_test

import (
	"context"
	"fmt"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"tandem/audience"
	"tandem/event"
	"tandem/statestore/sqlite"
)

// BenchmarkRecordTraits records the events of the drain benchmark's shape
// (people of 10 events: page views, an identify, tracks "Product
// Viewed", "Product Added", "Order Completed"; every person new) into
// four computed traits (orders in 30 days, revenue, the last product
// view, the most frequent currency added) in an embedded (SQLite) state
// store, in chunks of 14,000 events as the pipeline's state stage takes
// them, each in its own transaction. path=multirow is [audience.Store.Record];
// path=rowbyrow the statement-per-event way it replaced (the tests'
// oracle). It reports the CPU of the whole process per event.
//
//	go test -run '^$' -bench RecordTraits -benchtime 1x -count 4 ./audience/
func BenchmarkRecordTraits(b *testing.B) {
	for _, path := range []string{"multirow", "rowbyrow"} {
		b.Run("path="+path, func(b *testing.B) {
			const people, perChunk = 10_000, 14_000
			var cpu int64
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				ctx := context.Background()
				db, err := sqlite.Open(filepath.Join(b.TempDir(), fmt.Sprintf("state-%d.db", i)))
				if err != nil {
					b.Fatal(err)
				}
				if err := db.Migrate(ctx, audience.Migrations()...); err != nil {
					b.Fatal(err)
				}
				s := audience.NewStore(db, nil, nil)
				for _, t := range []audience.Trait{
					{Name: "orders_30d", Kind: audience.Count, Event: "Order Completed", Window: "30d"},
					{Name: "revenue", Kind: audience.Sum, Event: "Order Completed", Property: "revenue"},
					{Name: "last_viewed", Kind: audience.Last, Event: "Product Viewed"},
					{Name: "currency", Kind: audience.MostFrequent, Event: "Product Added", Property: "currency"},
				} {
					if _, err := s.Create(ctx, t); err != nil {
						b.Fatal(err)
					}
				}
				ts := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC).Format(time.RFC3339Nano)
				tracks := []string{"Product Viewed", "Product Added", "Order Completed"}
				events := make([]event.Event, 0, 10*people)
				for e := range 10 * people {
					person, pos := e/10, e%10
					anon, user := fmt.Sprintf("anon-%d-%08d", i, person), fmt.Sprintf("user-%d-%08d", i, person)
					var raw string
					switch {
					case pos < 5:
						raw = fmt.Sprintf(`{"type":"page","name":"Home","anonymousId":%q,"timestamp":%q,"properties":{"path":"/%d"}}`, anon, ts, pos)
					case pos == 5:
						raw = fmt.Sprintf(`{"type":"identify","anonymousId":%q,"userId":%q,"timestamp":%q,"traits":{"email":"%s@example.com","plan":"pro"}}`, anon, user, ts, user)
					default:
						raw = fmt.Sprintf(`{"type":"track","event":%q,"anonymousId":%q,"userId":%q,"timestamp":%q,"properties":{"orderId":"o-%d","revenue":%d.5,"currency":"EUR"}}`,
							tracks[pos%len(tracks)], anon, user, ts, e, 10+e%90)
					}
					ev, prob := event.ParseEvent("", []byte(raw), time.Now(), fmt.Sprintf("m-%d-%09d", i, e))
					if prob != nil {
						b.Fatalf("%s: %+v", raw, prob)
					}
					ev.SourceID = "src"
					events = append(events, ev)
				}
				record := s.Record
				if path == "rowbyrow" {
					record = s.RecordRowByRow
				}
				b.StartTimer()
				for start := 0; start < len(events); start += perChunk {
					chunk := events[start:min(start+perChunk, len(events))]
					cpu0 := processCPU()
					if err := record(ctx, chunk); err != nil {
						b.Fatal(err)
					}
					cpu += processCPU() - cpu0
				}
				b.StopTimer()
				if err := db.Close(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(cpu)/1e3/float64(b.N*10*people), "cpu-µs/event")
		})
	}
}

// processCPU is the process's CPU time so far, in nanoseconds.
func processCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
