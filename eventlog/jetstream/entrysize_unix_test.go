//go:build unix

package jetstream_test

import (
	"bytes"
	"context"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"tandem/eventlog"
	"tandem/eventlog/jetstream"
)

// BenchmarkCommitterEntrySize is BenchmarkCommitter (16 appenders, group
// commit, one fsync a record) with chunks the size of one `tandem bench
// ingest` request's log entries in each record version: 46,790 bytes in
// version 1, 37,912 in version 2 (100 events with the server's context
// defaults). cpu-ns/event is the process's CPU per event, the cost of the
// append that the entries' size decides.
//
//	go test -run '^$' -bench CommitterEntrySize ./eventlog/jetstream/
func BenchmarkCommitterEntrySize(b *testing.B) {
	for _, c := range []struct {
		name  string
		bytes int
	}{{"v1", 46790}, {"v2", 37912}} {
		b.Run(c.name, func(b *testing.B) {
			const writers, perChunk = 16, 100
			l := openEmbedded(b, jetstream.EmbeddedOptions{Dir: b.TempDir()})
			defer l.Close()
			cm := eventlog.NewCommitter(l, eventlog.CommitterOptions{})
			defer cm.Close()
			chunk := bytes.Repeat([]byte("x"), c.bytes)
			b.SetBytes(int64(len(chunk)))
			var left atomic.Int64
			left.Store(int64(b.N))
			var wg sync.WaitGroup
			b.ResetTimer()
			cpu0 := processCPU()
			for range writers {
				wg.Go(func() {
					for left.Add(-1) >= 0 {
						if err := cm.Append(context.Background(), chunk); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64((processCPU()-cpu0).Nanoseconds())/float64(b.N*perChunk), "cpu-ns/event")
			b.ReportMetric(float64(b.N*perChunk)/b.Elapsed().Seconds(), "events/s")
			st := cm.Stats()
			b.ReportMetric(float64(st.Chunks)/float64(max(st.Records, 1)), "chunks/record")
		})
	}
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
