//go:build unix

package collect

import (
	"bytes"
	"context"
	"fmt"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"
)

type benchSources struct{}

func (benchSources) LookupWriteKey(context.Context, string) (Source, error) {
	return Source{ID: "src_bench", Name: "bench", Approval: "approved"}, nil
}

// discardLog takes a chunk as the committer does (a copy) and keeps
// nothing, so the benchmark measures the handler alone.
type discardLog struct{ buf []byte }

func (d *discardLog) Append(_ context.Context, entries []byte) error {
	d.buf = append(d.buf[:0], entries...)
	return nil
}

// BenchmarkHandle is the collection handler's own work on a bench-ingest
// body of 100 track events (read, parse, validate, context defaults, IP
// minimisation, encoding the log entries), without the network and the
// event log: the part of collect-only's CPU per event that is collection's.
//
//	go test -run '^$' -bench Handle -benchmem ./collect/
//
// cpu-ns/event is the process's CPU time per event, the figure to compare.
func BenchmarkHandle(b *testing.B) {
	ts := time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC).Format(time.RFC3339Nano)
	var body bytes.Buffer
	body.WriteString(`{"batch":[`)
	for e := range 100 {
		if e > 0 {
			body.WriteByte(',')
		}
		fmt.Fprintf(&body, `{"type":"track","event":"Order Completed","userId":"user-%02d-%06d","messageId":"1a2b3c4d-01-%012d-%06d","timestamp":%q,`+
			`"properties":{"orderId":"o-%d","revenue":%d.5,"currency":"EUR","plan":"pro"},"context":{"library":{"name":"tandem-bench","version":"1"}}}`,
			1, e, 1, e, ts, e, 10+e%90)
	}
	fmt.Fprintf(&body, `],"sentAt":%q}`, ts)
	h := New(Options{Sources: benchSources{}, Log: &discardLog{}})
	b.SetBytes(int64(body.Len()))
	cpu0 := processCPU()
	for b.Loop() {
		r := httptest.NewRequest("POST", "/v1/batch", bytes.NewReader(body.Bytes()))
		r.SetBasicAuth("key", "")
		r.RemoteAddr = "192.0.2.10:4000"
		r.Header.Set("User-Agent", "tandem-bench/1")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != 200 || w.Body.String() != `{"success":true}` {
			b.Fatalf("%d %s", w.Code, w.Body)
		}
	}
	// CPU per event (every thread: garbage collection included) is the
	// figure to compare on a shared machine, where wall time mostly says
	// what the other processes took.
	b.ReportMetric(float64((processCPU()-cpu0).Nanoseconds())/float64(b.N*100), "cpu-ns/event")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*100), "ns/event")
}

// processCPU is the CPU time this process used so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
