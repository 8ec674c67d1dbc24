//go:build unix

package event

import (
	"bytes"
	"fmt"
	"syscall"
	"testing"
	"time"
)

// BenchmarkEncodeBatch is EncodeBatch on a bench-ingest request body of
// 100 track events with the server's context defaults: the parse and the
// log entries of collection, without HTTP. B/entries is the entries'
// size per request.
//
//	go test -run '^$' -bench EncodeBatch -benchmem ./event/
func BenchmarkEncodeBatch(b *testing.B) {
	var body bytes.Buffer
	body.WriteString(`{"batch":[`)
	for e := range 100 {
		if e > 0 {
			body.WriteByte(',')
		}
		fmt.Fprintf(&body, `{"type":"track","event":"Order Completed","userId":"user-01-%06d","messageId":"9ce8753b-01-000000000001-%06d","timestamp":"2026-12-03T08:00:00Z",`+
			`"properties":{"orderId":"o-%d","revenue":%d.5,"currency":"EUR","plan":"pro"},"context":{"library":{"name":"tandem-bench","version":"1"}}}`, e, e, e, 10+e%90)
	}
	body.WriteString(`],"sentAt":"2026-12-03T08:00:00Z"}`)
	defaults := []byte(`{"ip":"127.0.0.1","userAgent":"Go-http-client/1.1"}`)
	at := time.Now()
	dst := make([]byte, 0, 64<<10)
	var n int
	b.SetBytes(int64(body.Len()))
	cpu0 := processCPU()
	for b.Loop() {
		_, out, err := EncodeBatch(dst[:0], "src_0123456789abcdef", body.Bytes(), at, defaults, IPKeep)
		if err != nil {
			b.Fatal(err)
		}
		n = len(out)
	}
	// CPU per event is the figure to compare on a shared machine.
	b.ReportMetric(float64((processCPU()-cpu0).Nanoseconds())/float64(b.N*100), "cpu-ns/event")
	b.ReportMetric(float64(n), "B/entries")
}

// BenchmarkDecodeRecord decodes a record of a bench-ingest request's 100
// events (the pipeline's read of the log) in each version.
//
//	go test -run '^$' -bench DecodeRecord -benchmem ./event/
func BenchmarkDecodeRecord(b *testing.B) {
	var body bytes.Buffer
	body.WriteString(`{"batch":[`)
	for e := range 100 {
		if e > 0 {
			body.WriteByte(',')
		}
		fmt.Fprintf(&body, `{"type":"track","event":"Order Completed","userId":"user-01-%06d","messageId":"9ce8753b-01-000000000001-%06d","timestamp":"2026-12-03T08:00:00Z",`+
			`"properties":{"orderId":"o-%d","revenue":%d.5,"currency":"EUR","plan":"pro"},"context":{"library":{"name":"tandem-bench","version":"1"}}}`, e, e, e, 10+e%90)
	}
	body.WriteString(`],"sentAt":"2026-12-03T08:00:00Z"}`)
	_, chunk, err := EncodeBatch(nil, "src_0123456789abcdef", body.Bytes(), time.Now(), []byte(`{"ip":"127.0.0.1","userAgent":"Go-http-client/1.1"}`), "")
	if err != nil {
		b.Fatal(err)
	}
	v2 := append(append([]byte(nil), RecordHeader...), chunk...)
	evs, _, _ := DecodeRecord(v2)
	v1 := encodeRecordV1("src_0123456789abcdef", evs, nil)
	for _, c := range []struct {
		name string
		rec  []byte
	}{{"v1", v1}, {"v2", v2}} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(c.rec)))
			var evs []Event
			cpu0 := processCPU()
			for b.Loop() {
				var err error
				if evs, _, _, err = AppendRecord(evs[:0], nil, c.rec); err != nil || len(evs) != 100 {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64((processCPU()-cpu0).Nanoseconds())/float64(b.N*100), "cpu-ns/event")
		})
	}
}

// processCPU is the CPU time this process used so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
