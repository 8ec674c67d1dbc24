//go:build unix

package identity_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"tandem/event"
	"tandem/identity"
	"tandem/statestore/sqlite"
)

// BenchmarkResolveChunks resolves pipeline chunks of 14,000 events of the
// drain benchmark's shape (people of 10 events: page views with an
// anonymous id, an identify with an e-mail address and traits, tracks
// with both ids; every person new) into an embedded (SQLite) state store,
// each chunk in its own transaction, as the pipeline's state stage does;
// observing is untimed (the decode stage does it). traits=2 is the drain's
// identify (email, plan); traits=8 one closer to what sites send. It
// reports the CPU of the whole process (SQLite's checkpoints included)
// per event. The replay case resolves the same chunks a second time
// through a new Store (cold caches), as a restart or --replay-last does:
// everything is stored already; only the second pass is timed.
//
//	go test -run '^$' -bench ResolveChunks -benchtime 1x ./identity/
func BenchmarkResolveChunks(b *testing.B) {
	for _, c := range []struct {
		name   string
		traits int
		replay bool
	}{{"traits=2", 2, false}, {"traits=8", 8, false}, {"replay", 2, true}} {
		traits := c.traits
		b.Run(c.name, func(b *testing.B) {
			const people, perChunk = 20_000, 14_000
			ts := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC).Format(time.RFC3339Nano)
			var extra strings.Builder
			for k := 2; k < traits; k++ {
				fmt.Fprintf(&extra, `,"trait_%d":"value %d"`, k, k)
			}
			var cpu int64
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				ctx := context.Background()
				db, err := sqlite.Open(filepath.Join(b.TempDir(), fmt.Sprintf("state-%d.db", i)))
				if err != nil {
					b.Fatal(err)
				}
				if err := db.Migrate(ctx, identity.Migrations()...); err != nil {
					b.Fatal(err)
				}
				s, err := identity.NewStore(ctx, db, identity.Options{Rules: identity.DefaultRules()})
				if err != nil {
					b.Fatal(err)
				}
				events := make([]event.Event, 0, 10*people)
				for e := range 10 * people {
					person, pos := e/10, e%10
					anon, user := fmt.Sprintf("anon-%d-%08d", i, person), fmt.Sprintf("user-%d-%08d", i, person)
					var raw string
					switch {
					case pos < 5:
						raw = fmt.Sprintf(`{"type":"page","name":"Home","anonymousId":%q,"timestamp":%q,"properties":{"path":"/%d"}}`, anon, ts, pos)
					case pos == 5:
						raw = fmt.Sprintf(`{"type":"identify","anonymousId":%q,"userId":%q,"timestamp":%q,"traits":{"email":"%s@example.com","plan":"pro"%s}}`, anon, user, ts, user, extra.String())
					default:
						raw = fmt.Sprintf(`{"type":"track","event":"Order Completed","anonymousId":%q,"userId":%q,"timestamp":%q,"properties":{"revenue":%d.5}}`, anon, user, ts, e%90)
					}
					ev, prob := event.ParseEvent("src", []byte(raw), time.Now(), fmt.Sprintf("m-%d-%09d", i, e))
					if prob != nil {
						b.Fatalf("%s: %+v", raw, prob)
					}
					events = append(events, ev)
				}
				for pass := 0; pass < 2; pass++ {
					timed := (pass == 1) == c.replay
					if pass == 1 {
						if !c.replay {
							break
						}
						if s, err = identity.NewStore(ctx, db, identity.Options{Rules: identity.DefaultRules()}); err != nil {
							b.Fatal(err)
						}
					}
					for start := 0; start < len(events); start += perChunk {
						chunk := events[start:min(start+perChunk, len(events))]
						ob := s.Observe(chunk)
						cpu0 := processCPU()
						if timed {
							b.StartTimer()
						}
						if err := s.ResolveObserved(ctx, ob); err != nil {
							b.Fatal(err)
						}
						if timed {
							b.StopTimer()
							cpu += processCPU() - cpu0
						}
					}
				}
				if err := db.Close(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(cpu)/1e3/float64(b.N*10*people), "cpu-µs/event")
		})
	}
}

// processCPU is the process's CPU time so far, in nanoseconds.
func processCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
