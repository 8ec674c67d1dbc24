//go:build unix

package server

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"tandem/config"
	"tandem/event"
)

// BenchmarkPipelineDrain measures how fast a node's pipeline, wired as
// `tandem serve` wires it (tracking plans, identity resolution, consent,
// computed traits, audiences, the embedded event store), drains a backlog:
// each iteration opens a fresh node, fills its log with the events (timer
// stopped), then times [pipeline.Pipeline.Run] until every event is stored.
//
// The events have the shape of `tandem bench e2e`'s load: people of 10
// events each, the first half anonymous page views, then an identify that
// joins the anonymousId to a userId and an e-mail address, then tracks
// with both ids; every person and messageId new. Records hold
// drainRecordEvents events, as the committer groups requests under load.
//
//	go test -run '^$' -bench PipelineDrain -benchtime 3x ./server/
//
// TANDEM_BENCH_DRAIN_EVENTS changes the backlog's size (default 200,000);
// TANDEM_BENCH_DRAIN_CPUPROFILE=file writes a CPU profile of the drain
// alone (every goroutine's, the collector's and the embedded log's too),
// without the filling and closing that -test.cpuprofile also holds; later
// iterations write file.2, file.3 and so on (`go tool pprof` takes them
// together); TANDEM_BENCH_DRAIN_HEAPPROFILE=file writes a heap profile
// at the end of the first drain.
// The figure to read is events/s; compare runs made back to back.
func BenchmarkPipelineDrain(b *testing.B) {
	n := 200_000
	if v := os.Getenv("TANDEM_BENCH_DRAIN_EVENTS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n <= 0 {
			b.Fatalf("TANDEM_BENCH_DRAIN_EVENTS=%q: want a positive number", v)
		}
	}
	b.Setenv("TANDEM_ADMIN_TOKEN", testAdminToken)
	var total, cpu, closeCPU time.Duration
	var allocs uint64
	var ms runtime.MemStats
	profiling := os.Getenv("TANDEM_BENCH_DRAIN_CPUPROFILE")
	var stageSeconds map[string]float64
	var heap, rss uint64
	// The live heap (what the last collection kept), read while the drain
	// runs: its largest value is what the drain holds at once.
	live := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		s, cancel := openDrainNode(b, i)
		fillDrainLog(b, s, n, i)
		ctx, stop := context.WithCancel(context.Background())
		done := make(chan error, 1)
		runtime.ReadMemStats(&ms)
		mallocs := ms.Mallocs
		var profile *os.File
		if profiling != "" {
			name := profiling
			if i > 0 {
				name += "." + strconv.Itoa(i+1)
			}
			var err error
			if profile, err = os.Create(name); err != nil {
				b.Fatal(err)
			}
			if err := pprof.StartCPUProfile(profile); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		start, cpu0 := time.Now(), processCPU()
		// Labelled, so that a CPU profile of the benchmark can be narrowed
		// to the drain (pprof -tagfocus phase=drain), without the filling.
		go pprof.Do(ctx, pprof.Labels("phase", "drain"), func(ctx context.Context) { done <- s.Pipeline.Run(ctx) })
		// The pipeline's own count of stored events: polling the event
		// store would take CPU from the drain it measures.
		for storedCount(b, s) < float64(n) {
			time.Sleep(20 * time.Millisecond)
			metrics.Read(live)
			heap = max(heap, live[0].Value.Uint64())
		}
		total += time.Since(start)
		cpu += processCPU() - cpu0
		b.StopTimer()
		stageSeconds = stageSecondsOf(b, s)
		if profile != nil {
			pprof.StopCPUProfile()
			if err := profile.Close(); err != nil {
				b.Fatal(err)
			}
		}
		runtime.ReadMemStats(&ms)
		allocs += ms.Mallocs - mallocs
		rss = max(rss, residentBytes())
		if name := os.Getenv("TANDEM_BENCH_DRAIN_HEAPPROFILE"); name != "" && i == 0 {
			writeHeapProfile(b, name)
		}
		stop()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		if c, _ := s.Events.Count(context.Background()); c != int64(n) {
			b.Fatalf("stored %d events, want %d", c, n)
		}
		cancel()
		cpu0 = processCPU()
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
		closeCPU += processCPU() - cpu0
	}
	b.ReportMetric(float64(n*b.N)/total.Seconds(), "events/s")
	// CPU per event says what the work costs whatever else the machine
	// runs; events/s also says how well the stages overlap.
	b.ReportMetric(float64(cpu.Microseconds())/float64(n*b.N), "cpu-µs/event")
	b.ReportMetric(cpu.Seconds()/total.Seconds(), "cores")
	// Go heap allocations per event during the drain (every goroutine's:
	// the embedded log's too), a driver of the GC's share of the CPU.
	b.ReportMetric(float64(allocs)/float64(n*b.N), "allocs/event")
	// Closing the node: mostly DuckDB's checkpoint of what its WAL holds,
	// work the drain left for later.
	b.ReportMetric(float64(closeCPU.Microseconds())/float64(n*b.N), "close-cpu-µs/event")
	// Memory: the largest live Go heap during a drain, and the process's
	// resident set at the end of one (DuckDB's and SQLite's caches
	// included; the largest of the iterations).
	b.ReportMetric(float64(heap)/(1<<20), "live-heap-MiB")
	b.ReportMetric(float64(rss)/(1<<20), "rss-MiB")
	// Where the wall time went, stage by stage (the last node's
	// tandem_pipeline_stage_seconds, per event): the stage with the most
	// is the one the others wait for.
	for stage, secs := range stageSeconds {
		b.ReportMetric(secs*1e6/float64(n), stage+"-µs/event")
	}
}

// residentBytes is the process's resident set size now (0 where /proc
// does not say).
func residentBytes() uint64 {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(status)) {
		if kb, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(kb), " kB"), 10, 64)
			return n << 10
		}
	}
	return 0
}

// writeHeapProfile writes the heap profile as it is at the end of a drain
// (TANDEM_BENCH_DRAIN_HEAPPROFILE): what the node holds, not what the
// filling allocated.
func writeHeapProfile(b *testing.B, name string) {
	f, err := os.Create(name)
	if err != nil {
		b.Fatal(err)
	}
	runtime.GC()
	if err := pprof.WriteHeapProfile(f); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
}

// stageSecondsOf reads the sums of tandem_pipeline_stage_seconds by stage
// (none on a build without it).
func stageSecondsOf(b *testing.B, s *Server) map[string]float64 {
	fams, err := s.Metrics.Gather()
	if err != nil {
		b.Fatal(err)
	}
	secs := map[string]float64{}
	for _, f := range fams {
		if f.GetName() != "tandem_pipeline_stage_seconds" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "stage" {
					secs[l.GetValue()] = m.GetHistogram().GetSampleSum()
				}
			}
		}
	}
	return secs
}

// storedCount reads tandem_pipeline_events_stored_total.
func storedCount(b *testing.B, s *Server) float64 {
	fams, err := s.Metrics.Gather()
	if err != nil {
		b.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == "tandem_pipeline_events_stored_total" {
			return f.GetMetric()[0].GetCounter().GetValue()
		}
	}
	b.Fatal("no tandem_pipeline_events_stored_total")
	return 0
}

// processCPU is the CPU time this process used so far (user and system,
// every thread: DuckDB's and SQLite's work included).
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

const drainRecordEvents = 200

func openDrainNode(b *testing.B, i int) (*Server, context.CancelFunc) {
	b.Helper()
	cfg := config.Default()
	cfg.DataDir = filepath.Join(b.TempDir(), strconv.Itoa(i))
	cfg.Addr = "127.0.0.1:0"
	ctx, cancel := context.WithCancel(context.Background())
	s, err := open(ctx, cfg, slog.New(slog.NewJSONHandler(io.Discard, nil)), hooks{})
	if err != nil {
		cancel()
		b.Fatalf("open: %v", err)
	}
	return s, cancel
}

// fillDrainLog appends n events of the e2e load's shape to s's log.
func fillDrainLog(b *testing.B, s *Server, n, run int) {
	b.Helper()
	ctx := context.Background()
	key, err := os.ReadFile(filepath.Join(s.cfg.DataDir, "default.writekey"))
	if err != nil {
		b.Fatal(err)
	}
	src, err := s.Governance.LookupWriteKey(ctx, strings.TrimSpace(string(key)))
	if err != nil {
		b.Fatal(err)
	}
	const perProfile = 10
	now := time.Now().UTC()
	ts := now.Format(time.RFC3339Nano)
	pages := []string{"Home", "Pricing", "Product", "Docs", "Checkout"}
	tracks := []string{"Product Viewed", "Product Added", "Order Completed"}
	uactx := `"context":{"library":{"name":"tandem-bench","version":"1"},"userAgent":"Mozilla/5.0 (X11; Linux x86_64) tandem-bench"}`
	var body bytes.Buffer
	for first := 0; first < n; first += drainRecordEvents {
		body.Reset()
		body.WriteString(`{"batch":[`)
		for e := first; e < min(n, first+drainRecordEvents); e++ {
			if e > first {
				body.WriteByte(',')
			}
			person, pos := e/perProfile, e%perProfile
			anon := fmt.Sprintf("anon-%d-%08d", run, person)
			user := fmt.Sprintf("user-%d-%08d", run, person)
			msg := fmt.Sprintf(`"messageId":"m-%d-%09d","timestamp":%q`, run, e, ts)
			switch {
			case pos < perProfile/2:
				page := pages[pos%len(pages)]
				fmt.Fprintf(&body, `{"type":"page","name":%q,"anonymousId":%q,%s,"properties":{"path":"/%d","title":%q},%s}`, page, anon, msg, pos, page, uactx)
			case pos == perProfile/2:
				fmt.Fprintf(&body, `{"type":"identify","anonymousId":%q,"userId":%q,%s,"traits":{"email":"%s@example.com","plan":"pro"},%s}`, anon, user, msg, user, uactx)
			default:
				fmt.Fprintf(&body, `{"type":"track","event":%q,"anonymousId":%q,"userId":%q,%s,"properties":{"orderId":"o-%d","revenue":%d.5,"currency":"EUR"},%s}`,
					tracks[pos%len(tracks)], anon, user, msg, e, 10+e%90, uactx)
			}
		}
		body.WriteString(`]}`)
		req, err := event.ParseBatch(body.Bytes(), now)
		if err != nil {
			b.Fatal(err)
		}
		if len(req.Problems) > 0 {
			b.Fatalf("generated events failed validation: %+v", req.Problems[0])
		}
		rec := event.EncodeRecord(src.ID, req.Events, nil)
		if _, err := s.Log.Append(ctx, rec); err != nil {
			b.Fatal(err)
		}
	}
}
