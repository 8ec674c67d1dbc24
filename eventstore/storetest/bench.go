package storetest

import (
	"context"
	"strconv"
	"testing"
	"time"

	"tandem/event"
	"tandem/eventstore"
)

// BenchEvents returns n events shaped like real track calls (about 700
// bytes of JSON each), with messageIds unique per (prefix, i) and times a
// millisecond apart from at: the batches every store's benchmarks append.
func BenchEvents(prefix string, n int, at time.Time) []event.Event {
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

// BenchAppend appends a new batch of size BenchEvents to s per iteration
// (made outside the timer) and reports events/s and the slowest batch. It
// returns the batches appended, for metrics of the caller's own.
func BenchAppend(b *testing.B, s eventstore.Store, size int) int {
	ctx := context.Background()
	at := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	var slowest time.Duration
	i := 0
	for b.Loop() {
		b.StopTimer()
		evs := BenchEvents("b"+strconv.Itoa(i), size, at.Add(time.Duration(i)*time.Minute))
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
	return i
}

// BenchRedelivery appends one batch of 10,000 BenchEvents to s, then times
// appending it again (all duplicates: the redelivery path) and reports
// events/s.
func BenchRedelivery(b *testing.B, s eventstore.Store) {
	ctx := context.Background()
	evs := BenchEvents("dup", 10_000, time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC))
	if _, err := s.Append(ctx, evs); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if n, err := s.Append(ctx, evs); err != nil || n != 0 {
			b.Fatalf("Append = %d, %v", n, err)
		}
	}
	b.ReportMetric(float64(b.N*len(evs))/b.Elapsed().Seconds(), "events/s")
}
