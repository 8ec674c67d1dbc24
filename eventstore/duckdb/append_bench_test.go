package duckdb

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"testing"
	"time"

	"tandem/event"
)

// e2eEvents returns n new events of the shape of `tandem bench e2e`'s load
// (and of server.BenchmarkPipelineDrain's): people of 10 events each, the
// first half anonymous page views, then an identify joining the
// anonymousId to a userId, then tracks with both ids and a revenue.
// run makes the keys unique across calls.
func e2eEvents(run string, n int, at time.Time) []event.Event {
	const perProfile = 10
	pages := []string{"Home", "Pricing", "Product", "Docs", "Checkout"}
	tracks := []string{"Product Viewed", "Product Added", "Order Completed"}
	const uactx = `"context":{"library":{"name":"tandem-bench","version":"1"},"userAgent":"Mozilla/5.0 (X11; Linux x86_64) tandem-bench"}`
	ts := at.Format(time.RFC3339Nano)
	evs := make([]event.Event, n)
	for i := range evs {
		person, pos := i/perProfile, i%perProfile
		anon := fmt.Sprintf("anon-%s-%08d", run, person)
		user := fmt.Sprintf("user-%s-%08d", run, person)
		mid := fmt.Sprintf("m-%s-%09d", run, i)
		msg := fmt.Sprintf(`"messageId":%q,"timestamp":%q`, mid, ts)
		e := event.Event{SourceID: "src_bench0000000000000000", MessageID: mid, AnonymousID: anon,
			Timestamp: at, OriginalTimestamp: at, ReceivedAt: at.Add(time.Millisecond)}
		switch {
		case pos < perProfile/2:
			page := pages[pos%len(pages)]
			e.Type, e.Name = "page", page
			e.Raw = fmt.Appendf(nil, `{"type":"page","name":%q,"anonymousId":%q,%s,"properties":{"path":"/%d","title":%q},%s}`, page, anon, msg, pos, page, uactx)
		case pos == perProfile/2:
			e.Type, e.UserID = "identify", user
			e.Raw = fmt.Appendf(nil, `{"type":"identify","anonymousId":%q,"userId":%q,%s,"traits":{"email":"%s@example.com","plan":"pro"},%s}`, anon, user, msg, user, uactx)
		default:
			e.Type, e.Name, e.UserID = "track", tracks[pos%len(tracks)], user
			e.Raw = fmt.Appendf(nil, `{"type":"track","event":%q,"anonymousId":%q,"userId":%q,%s,"properties":{"orderId":"o-%d","revenue":%d.5,"currency":"EUR"},%s}`,
				e.Name, anon, user, msg, i, 10+i%90, uactx)
		}
		evs[i] = e
	}
	return evs
}

// BenchmarkStageE2E stages two row groups' worth of new events of the e2e
// load's shape (245,760, in the pipeline's chunks of 20,000) into an
// empty file database, then commits: the event store's part of the
// pipeline drain. Each iteration is the whole run; cpu-µs/event is the
// CPU of every thread of the process (DuckDB's commits, which compress
// the row groups, included) per event. TANDEM_BENCH_STAGE_PROFILE names
// a file for a CPU profile of the timed part; TANDEM_BENCH_STAGE_SQL a
// statement run after opening (a setting to try).
//
//	go test ./eventstore/duckdb -run '^$' -bench StageE2E -benchtime 3x
func BenchmarkStageE2E(b *testing.B) {
	const chunk, total = 20_000, 2 * rowGroupSize
	at := time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)
	var cpu time.Duration
	// The CPU of the Stage calls that committed (and of Commit), and of
	// the others, with their events: commit-cpu-µs/event is the first
	// less what appending their events cost in the others, an estimate
	// of DuckDB's row group commits alone.
	var commitCalls, stageCalls time.Duration
	var commitEvents, stageEvents int
	if p := os.Getenv("TANDEM_BENCH_STAGE_PROFILE"); p != "" {
		f, err := os.Create(p)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		b.StopTimer()
		if err := pprof.StartCPUProfile(f); err != nil {
			b.Fatal(err)
		}
		defer pprof.StopCPUProfile()
		b.StartTimer()
	}
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		s, err := Open(filepath.Join(b.TempDir(), "events.duckdb"))
		if err != nil {
			b.Fatal(err)
		}
		all := e2eEvents("r"+strconv.Itoa(i), total, at)
		ctx := context.Background()
		if q := os.Getenv("TANDEM_BENCH_STAGE_SQL"); q != "" {
			if _, err := s.db.ExecContext(ctx, q); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		cpu0 := cpuTime()
		for lo := 0; lo < total; lo += chunk {
			evs := all[lo:min(total, lo+chunk)]
			c0 := cpuTime()
			n, left, err := s.Stage(ctx, evs)
			if err != nil || n != len(evs) {
				b.Fatalf("Stage = %d, %v", n, err)
			}
			if left < len(evs) {
				// This call committed a row group.
				commitCalls += cpuTime() - c0
				commitEvents += len(evs)
			} else {
				stageCalls += cpuTime() - c0
				stageEvents += len(evs)
			}
		}
		c0 := cpuTime()
		if err := s.Commit(ctx); err != nil {
			b.Fatal(err)
		}
		commitCalls += cpuTime() - c0
		cpu += cpuTime() - cpu0
		b.StopTimer()
		if n, err := s.Count(ctx); err != nil || n != total {
			b.Fatalf("Count = %d, %v", n, err)
		}
		s.Close()
		if fi, err := os.Stat(s.file); err == nil {
			b.ReportMetric(float64(fi.Size())/float64(total), "file-bytes/event")
		}
	}
	n := float64(b.N * total)
	b.ReportMetric(float64(cpu.Microseconds())/n, "cpu-µs/event")
	if stageEvents > 0 {
		perEvent := float64(stageCalls.Microseconds()) / float64(stageEvents)
		b.ReportMetric(perEvent, "stage-cpu-µs/event")
		b.ReportMetric((float64(commitCalls.Microseconds())-perEvent*float64(commitEvents))/n, "commit-cpu-µs/event")
	}
	b.ReportMetric(n/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(0, "ns/op")
}
