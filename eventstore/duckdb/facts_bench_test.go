package duckdb

import (
	"testing"
	"time"

	"tandem/event"
)

// BenchmarkFacts measures reading the touch and value columns of events of
// the e2e load's shape from their JSON, as the append does for each row:
// readers is touchOf then valuesOf, one is factsOf, oracle factsOf as it
// was before it skipped reading JSON without a touch field's key
// (prepare_oracle_test.go). cpu-ns/event is the
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
		{"oracle", func(e *event.Event) { oracleFactsOf(e, vals) }}, // factsOf before 2026-12-04
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

// BenchmarkPrepare measures prepare, what Store.Prepare does for a
// pipeline chunk (20,000 events of the e2e load's shape: key cleaning,
// repeats, fingerprints, facts), against the code before it was made
// cheaper (oracle, prepare_oracle_test.go), alternately. cpu-ns/event is
// the process's CPU per event.
//
//	go test ./eventstore/duckdb -run '^$' -bench Prepare -count 4
func BenchmarkPrepare(b *testing.B) {
	evs := e2eEvents("p", 20_000, time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC))
	for _, c := range []struct {
		name string
		fn   func([]event.Event) []*pending
	}{{"oracle", oraclePrepare}, {"new", prepare}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			c0 := cpuTime()
			for i := 0; i < b.N; i++ {
				c.fn(evs)
			}
			b.ReportMetric(float64((cpuTime()-c0).Nanoseconds())/float64(b.N*len(evs)), "cpu-ns/event")
		})
	}
}
