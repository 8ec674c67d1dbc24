package duckdb

import (
	"testing"
	"time"

	"tandem/event"
)

// BenchmarkFacts measures reading the touch and value columns of events of
// the e2e load's shape from their JSON, as the append does for each row:
// readers is touchOf then valuesOf, one is factsOf. cpu-ns/event is the
// process's CPU per event.
//
//	go test ./eventstore/duckdb -run '^$' -bench Facts
func BenchmarkFacts(b *testing.B) {
	evs := e2eEvents("f", 10_000, time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC))
	vals := make([]optString, len(valueColumns))
	for _, c := range []struct {
		name string
		fn   func(e *event.Event)
	}{
		{"readers", func(e *event.Event) { touchOf(e); valuesOf(vals, e.Raw) }},
		{"one", func(e *event.Event) { factsOf(e, vals) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			c0 := cpuTime()
			for i := 0; i < b.N; i++ {
				c.fn(&evs[i%len(evs)])
			}
			b.ReportMetric(float64((cpuTime()-c0).Nanoseconds())/float64(b.N), "cpu-ns/event")
		})
	}
}
