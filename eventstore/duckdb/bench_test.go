package duckdb

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"tandem/event"
	"tandem/eventstore"
	"tandem/eventstore/storetest"
)

// The benchmarks need a database with many rows; building it takes a while
// (about 20 s for 3M rows), so it is built once per process, at this size,
// and copied for each benchmark that writes.
const benchPreload = 3_000_000

var (
	templateOnce sync.Once
	templateDir  string
	templateErr  error
)

// templateDB returns the path of a closed database holding benchPreload
// events, built with SQL (key_hash computed as documented in schema.go).
func templateDB(b testing.TB) string {
	b.Helper()
	templateOnce.Do(func() {
		templateDir, templateErr = os.MkdirTemp("", "eventstore-bench-")
		if templateErr != nil {
			return
		}
		path := filepath.Join(templateDir, "events.duckdb")
		var s *Store
		if s, templateErr = Open(path); templateErr != nil {
			return
		}
		_, templateErr = s.db.Exec(`
			INSERT INTO events (source_id, message_id, type, name, user_id, anonymous_id, group_id, previous_id,
				timestamp, original_timestamp, sent_at, received_at, raw, key_hash)
			SELECT src, mid, 'track', 'Order Completed', uid, aid, NULL, NULL, ts, ts, ts, ts,
				'{"type":"track","event":"Order Completed","messageId":"' || mid || '","userId":"' || uid ||
				'","anonymousId":"' || aid || '","properties":{"order_id":"' || i || '","revenue":' || (i % 500) ||
				'.99,"currency":"USD","products":[{"sku":"sku-' || (i % 1000) || '","name":"Widget","price":19.99,"quantity":2}]},' ||
				'"context":{"ip":"10.0.1.' || (i % 256) || '","library":{"name":"analytics.js","version":"4.1.0"},' ||
				'"userAgent":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",' ||
				'"page":{"path":"/checkout","url":"https://shop.example.com/checkout"}}}',
				('0x' || left(sha256(strlen(src)::VARCHAR || ':' || src || mid), 16))::UBIGINT
			FROM (SELECT i, 'src-' || (i % 4) AS src, uuid()::VARCHAR AS mid,
				'user-' || (i % 200000) AS uid, 'anon-' || ((i * 7919) % 1000003) AS aid,
				TIMESTAMPTZ '2024-01-01 00:00:00+00' + to_microseconds(i * 10000) AS ts
				FROM range(?) r(i))`, benchPreload)
		if templateErr == nil {
			_, templateErr = s.db.Exec(`CHECKPOINT`)
		}
		if err := s.Close(); templateErr == nil {
			templateErr = err
		}
	})
	if templateErr != nil {
		b.Fatalf("build template database: %v", templateErr)
	}
	return filepath.Join(templateDir, "events.duckdb")
}

// cpuTime is the process's user+system CPU time so far: with other work on
// the machine it is a steadier measure than wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func TestMain(m *testing.M) {
	code := m.Run()
	if templateDir != "" {
		os.RemoveAll(templateDir)
	}
	os.Exit(code)
}

// copyTemplate copies the template database into a fresh directory.
func copyTemplate(b testing.TB) string {
	b.Helper()
	src := templateDB(b)
	dst := filepath.Join(b.TempDir(), "events.duckdb")
	in, err := os.Open(src)
	if err != nil {
		b.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		b.Fatal(err)
	}
	if err := out.Close(); err != nil {
		b.Fatal(err)
	}
	return dst
}

// BenchmarkAppend appends batches of new events to a file database that
// starts empty or with benchPreload rows. Checkpoints are included (use a
// -benchtime of at least 50x to see several). Metrics: events/s overall,
// and the slowest batch.
//
//	go test ./eventstore/duckdb -run '^$' -bench Append -benchtime 60x
func BenchmarkAppend(b *testing.B) {
	for _, rows := range []int{0, benchPreload} {
		for _, size := range []int{5_000, 10_000, 20_000} {
			if rows > 0 && size != 10_000 {
				continue
			}
			b.Run(fmt.Sprintf("rows=%d/batch=%d", rows, size), func(b *testing.B) {
				path := filepath.Join(b.TempDir(), "events.duckdb")
				if rows > 0 {
					path = copyTemplate(b)
				}
				s, err := Open(path)
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				cpu0 := cpuTime()
				batches := storetest.BenchAppend(b, s, size)
				b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/1e3/float64(batches*size), "cpu-µs/event")
				b.ReportMetric(0, "ns/op")
			})
		}
	}
	// A redelivered batch (all duplicates) on a large table: the
	// verification path.
	b.Run(fmt.Sprintf("rows=%d/batch=10000/duplicates", benchPreload), func(b *testing.B) {
		s, err := Open(copyTemplate(b))
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		storetest.BenchRedelivery(b, s)
	})
}

// BenchmarkOpen measures opening a database of benchPreload rows (loading
// the dedup fingerprints) and the heap the fingerprints take.
func BenchmarkOpen(b *testing.B) {
	path := templateDB(b)
	for b.Loop() {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		s, err := Open(path)
		if err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "heap-MB")
		s.Close()
	}
}

// BenchmarkQuery measures reads on a database of benchPreload rows.
func BenchmarkQuery(b *testing.B) {
	s, err := Open(templateDB(b))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	var src, msg, uid string
	var ts time.Time
	if err := s.db.QueryRow(`SELECT source_id, message_id, user_id, timestamp FROM events LIMIT 1 OFFSET 1234567`).Scan(&src, &msg, &uid, &ts); err != nil {
		b.Fatal(err)
	}
	mid, err := s.List(ctx, eventstore.Query{From: ts, Limit: 1})
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		fn   func() error
	}{
		{"Get/source", func() error { _, err := s.Get(ctx, src, msg); return err }},
		{"Get/any-source", func() error { _, err := s.Get(ctx, "", msg); return err }},
		{"Count", func() error { _, err := s.Count(ctx); return err }},
		{"List/first-page", func() error { _, err := s.List(ctx, eventstore.Query{}); return err }},
		{"List/cursor-mid-table", func() error { _, err := s.List(ctx, eventstore.Query{Cursor: mid.Next}); return err }},
		{"List/1h-range", func() error {
			_, err := s.List(ctx, eventstore.Query{From: ts, To: ts.Add(time.Hour)})
			return err
		}},
		{"List/profile", func() error { _, err := s.List(ctx, eventstore.Query{Profile: uid}); return err }},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				if err := c.fn(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkLinkProfiles measures identity's link writes: batches of 5,000
// links, half of them keys linked before (a merge moving them), on a table
// that grows by the other half each batch.
func BenchmarkLinkProfiles(b *testing.B) {
	s, err := Open(filepath.Join(b.TempDir(), "events.duckdb"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	const size = 5_000
	i := 0
	for b.Loop() {
		links := make([]eventstore.ProfileLink, 0, size)
		for j := range size {
			k := i*size/2 + j
			links = append(links, eventstore.ProfileLink{Key: "anonymous_id:a" + strconv.Itoa(k), ProfileID: "prf_" + strconv.Itoa(i)})
		}
		i++
		if err := s.LinkProfiles(ctx, links); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(i*size)/b.Elapsed().Seconds(), "links/s")
}

// BenchmarkStageVsAppend appends four row groups' worth of new events
// (491,520, in batches of 20,480) to an empty file database with Append
// (a commit per batch: the rows go to the WAL and again, compressed, into
// the file at the checkpoint) or with Stage (a commit per row group,
// written straight to the file), then checkpoints. Each iteration is the
// whole run; cpu-µs/event counts the appends, commits and checkpoint
// (every thread of the process), checkpoint-cpu-µs/event the checkpoint
// alone.
//
//	go test ./eventstore/duckdb -run '^$' -bench StageVsAppend -benchtime 1x
func BenchmarkStageVsAppend(b *testing.B) {
	const batch, batches = 20_480, 24
	at := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	for _, mode := range []string{"append", "stage"} {
		b.Run(mode, func(b *testing.B) {
			var cpu, ckpt time.Duration
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				s, err := Open(filepath.Join(b.TempDir(), "events.duckdb"))
				if err != nil {
					b.Fatal(err)
				}
				all := make([][]event.Event, batches)
				for j := range all {
					all[j] = storetest.BenchEvents(fmt.Sprintf("r%d-%d", i, j), batch, at.Add(time.Duration(j)*time.Minute))
				}
				ctx := context.Background()
				b.StartTimer()
				cpu0 := cpuTime()
				for _, evs := range all {
					var n int
					if mode == "append" {
						n, err = s.Append(ctx, evs)
					} else {
						n, _, err = s.Stage(ctx, evs)
					}
					if err != nil || n != batch {
						b.Fatalf("%s = %d, %v", mode, n, err)
					}
				}
				if mode == "stage" {
					if err := s.Commit(ctx); err != nil {
						b.Fatal(err)
					}
				}
				cpu1 := cpuTime()
				if _, err := s.db.ExecContext(ctx, "CHECKPOINT"); err != nil {
					b.Fatal(err)
				}
				cpu += cpuTime() - cpu0
				ckpt += cpuTime() - cpu1
				b.StopTimer()
				s.Close()
			}
			n := float64(b.N * batch * batches)
			b.ReportMetric(float64(cpu.Microseconds())/n, "cpu-µs/event")
			b.ReportMetric(float64(ckpt.Microseconds())/n, "checkpoint-cpu-µs/event")
			b.ReportMetric(n/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(0, "ns/op")
		})
	}
}
