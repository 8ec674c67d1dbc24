package clickhouse

import (
	"fmt"
	"testing"

	"tandem/eventstore/storetest"
	"tandem/testserver"
)

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
			storetest.BenchAppend(b, s, size)
			b.ReportMetric(0, "ns/op")
		})
	}
	b.Run("batch=10000/duplicates", func(b *testing.B) {
		s := open(b, testserver.ClickHouse(b))
		defer s.Close()
		storetest.BenchRedelivery(b, s)
	})
}
