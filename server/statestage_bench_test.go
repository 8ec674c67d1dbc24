//go:build unix

package server

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"tandem/event"
)

// BenchmarkStateStage measures the pipeline's state-store stage alone, as
// `tandem serve` wires it: identity resolution (with its profile links in
// the event store), consent, computed traits and audiences, over the
// events of [BenchmarkPipelineDrain] (read back from a filled log and
// decoded, untimed), in chunks as the pipeline's batches hold them. The
// identity observation belongs to the decode stage and is made untimed.
//
//	go test -run '^$' -bench StateStage -benchtime 3x ./server/
//
// It reports the CPU the whole process used per event during the stage
// (SQLite's and DuckDB's threads included), the figure to compare.
// TANDEM_BENCH_DRAIN_EVENTS changes the number of events (default 200,000).
func BenchmarkStateStage(b *testing.B) {
	n := 200_000
	if v := os.Getenv("TANDEM_BENCH_DRAIN_EVENTS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n <= 0 {
			b.Fatalf("TANDEM_BENCH_DRAIN_EVENTS=%q: want a positive number", v)
		}
	}
	const chunkEvents = 14_000 // about what 8 MiB of these records hold
	b.Setenv("TANDEM_ADMIN_TOKEN", testAdminToken)
	var total, cpu time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		s, cancel := openDrainNode(b, i)
		fillDrainLog(b, s, n, i)
		ctx := context.Background()
		c, err := s.Log.Consumer(ctx, "statestage")
		if err != nil {
			b.Fatal(err)
		}
		var all []event.Event
		for len(all) < n {
			msgs, err := c.Fetch(ctx, 256, time.Second)
			if err != nil {
				b.Fatal(err)
			}
			for _, m := range msgs {
				evs, _, err := event.DecodeRecord(m.Data)
				if err != nil {
					b.Fatal(err)
				}
				all = append(all, evs...)
			}
		}
		c.Close()
		b.StartTimer()
		for start := 0; start < len(all); start += chunkEvents {
			chunk := all[start:min(start+chunkEvents, len(all))]
			b.StopTimer()
			ob := s.Identity.Observe(chunk)
			b.StartTimer()
			t0, cpu0 := time.Now(), processCPU()
			// As the pipeline runs them (pipeline.Options.StateBatch):
			// one state-store transaction, then the audiences.
			if err := s.State.Batch(ctx, func(ctx context.Context) error {
				if err := s.Identity.ResolveObserved(ctx, ob); err != nil {
					return err
				}
				if err := s.Consent.Record(ctx, chunk); err != nil {
					return err
				}
				return s.Traits.Record(ctx, chunk)
			}); err != nil {
				b.Fatal(err)
			}
			if err := s.Audiences.Record(ctx, chunk); err != nil {
				b.Fatal(err)
			}
			total += time.Since(t0)
			cpu += processCPU() - cpu0
		}
		b.StopTimer()
		cancel()
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n*b.N)/total.Seconds(), "events/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(n*b.N), "cpu-µs/event")
}
