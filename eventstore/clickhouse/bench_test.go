package clickhouse

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"tandem/event"
	"tandem/testserver"
)

// benchEvents returns n track events of about 700 bytes of JSON each, the
// same shape as the DuckDB store's benchmark, with messageIds unique per
// (prefix, i) and times within one month.
func benchEvents(prefix string, n int, at time.Time) []event.Event {
	evs := make([]event.Event, n)
	for i := range evs {
		mid := prefix + "-" + strconv.Itoa(i)
		uid := "user-" + strconv.Itoa(i*7919%200000)
		aid := "anon-" + strconv.Itoa(i*104729%1000003)
		ts := at.Add(time.Duration(i) * time.Millisecond)
		evs[i] = event.Event{
			SourceID: "src-" + strconv.Itoa(i%4), MessageID: mid, Type: "track", Name: "Order Completed",
			UserID: uid, AnonymousID: aid, Timestamp: ts, OriginalTimestamp: ts, SentAt: ts.Add(time.Second),
			ReceivedAt: ts.Add(time.Second),
			Raw: []byte(`{"type":"track","event":"Order Completed","messageId":"` + mid + `","userId":"` + uid +
				`","anonymousId":"` + aid + `","timestamp":"` + ts.Format(time.RFC3339Nano) +
				`","properties":{"order_id":"` + strconv.Itoa(i) + `","revenue":129.99,"currency":"USD","products":[{"sku":"sku-` +
				strconv.Itoa(i%1000) + `","name":"Widget","price":19.99,"quantity":2}]},"context":{"ip":"10.0.1.` + strconv.Itoa(i%256) +
				`","library":{"name":"analytics.js","version":"4.1.0"},"userAgent":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36","page":{"path":"/checkout","url":"https://shop.example.com/checkout"}}}`),
		}
	}
	return evs
}

// BenchmarkAppend appends batches of new events to a fresh database on the
// test server (on this machine: client and server share its cores), then
// re-appends one batch of duplicates (the redelivery path). Metrics:
// events/s and the slowest batch.
//
//	go test ./eventstore/clickhouse -run '^$' -bench Append -benchtime 20x
func BenchmarkAppend(b *testing.B) {
	for _, size := range []int{1_000, 10_000} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			s := open(b, testserver.ClickHouse(b))
			defer s.Close()
			ctx := context.Background()
			at := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
			var slowest time.Duration
			i := 0
			for b.Loop() {
				b.StopTimer()
				evs := benchEvents(fmt.Sprintf("b%d", i), size, at.Add(time.Duration(i)*time.Minute))
				i++
				b.StartTimer()
				t0 := time.Now()
				if n, err := s.Append(ctx, evs); err != nil || n != size {
					b.Fatalf("Append = %d, %v", n, err)
				}
				slowest = max(slowest, time.Since(t0))
			}
			b.ReportMetric(float64(i*size)/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(float64(slowest.Milliseconds()), "max-batch-ms")
			b.ReportMetric(0, "ns/op")
		})
	}
	b.Run("batch=10000/duplicates", func(b *testing.B) {
		s := open(b, testserver.ClickHouse(b))
		defer s.Close()
		ctx := context.Background()
		evs := benchEvents("dup", 10_000, time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC))
		if _, err := s.Append(ctx, evs); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if n, err := s.Append(ctx, evs); err != nil || n != 0 {
				b.Fatalf("Append = %d, %v", n, err)
			}
		}
		b.ReportMetric(float64(b.N*len(evs))/b.Elapsed().Seconds(), "events/s")
	})
}
