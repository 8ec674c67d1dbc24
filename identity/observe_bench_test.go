//go:build unix

package identity

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"tandem/event"
)

// BenchmarkObserve reads a pipeline chunk of events of the drain
// benchmark's shape (server.BenchmarkPipelineDrain): people of 10 events,
// page views with an anonymous id, an identify with an e-mail address,
// then tracks with both ids.
func BenchmarkObserve(b *testing.B) {
	c, err := compile(DefaultRules())
	if err != nil {
		b.Fatal(err)
	}
	s := &Store{}
	s.rules.Store(c)
	const n = 20000
	ts := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC).Format(time.RFC3339Nano)
	uactx := `"context":{"library":{"name":"tandem-bench","version":"1"},"userAgent":"Mozilla/5.0 (X11; Linux x86_64) tandem-bench"}`
	events := make([]event.Event, 0, n)
	for i := range n {
		person, pos := i/10, i%10
		anon, user := fmt.Sprintf("anon-%08d", person), fmt.Sprintf("user-%08d", person)
		var raw string
		switch {
		case pos < 5:
			raw = fmt.Sprintf(`{"type":"page","name":"Home","anonymousId":%q,"timestamp":%q,"properties":{"path":"/%d"},%s}`, anon, ts, pos, uactx)
		case pos == 5:
			raw = fmt.Sprintf(`{"type":"identify","anonymousId":%q,"userId":%q,"timestamp":%q,"traits":{"email":"%s@example.com","plan":"pro"},%s}`, anon, user, ts, user, uactx)
		default:
			raw = fmt.Sprintf(`{"type":"track","event":"Order Completed","anonymousId":%q,"userId":%q,"timestamp":%q,"properties":{"revenue":%d.5},%s}`, anon, user, ts, i%90, uactx)
		}
		e, prob := event.ParseEvent("", []byte(raw), time.Now(), fmt.Sprintf("m-%09d", i))
		if prob != nil {
			b.Fatalf("%s: %+v", raw, prob)
		}
		events = append(events, e)
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := threadCPU()
	for range b.N {
		s.Observe(events)
	}
	// CPU time rather than elapsed: steadier on a shared machine.
	b.ReportMetric(float64(threadCPU()-cpu0)/float64(b.N*n), "cpu-ns/event")
}

// threadCPU is the process's CPU time so far, in nanoseconds.
func threadCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
