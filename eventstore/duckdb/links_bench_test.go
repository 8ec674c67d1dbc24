package duckdb

import (
	"context"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"tandem/eventstore"
)

// BenchmarkLinkProfilesNew measures the links of new visitors, as identity
// resolution writes them for a batch of new people (New set): batches of
// 28,000 keys never linked before, on a table of 1,000,000 links. It
// reports the CPU the process used per link (DuckDB's threads included).
func BenchmarkLinkProfilesNew(b *testing.B) {
	s, err := Open(filepath.Join(b.TempDir(), "events.duckdb"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if _, err := s.db.ExecContext(ctx, `INSERT INTO profile_links SELECT 'user_id:before-' || i, 'prf_' || i FROM range(1000000) t(i)`); err != nil {
		b.Fatal(err)
	}
	const size = 28_000
	cpu := func() int64 {
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return ru.Utime.Nano() + ru.Stime.Nano()
	}
	var used int64
	i := 0
	for b.Loop() {
		links := make([]eventstore.ProfileLink, 0, size)
		for j := range size {
			k := strconv.Itoa(i*size + j)
			links = append(links, eventstore.ProfileLink{Key: "anonymous_id:a" + k, ProfileID: "prf_" + k, New: true})
		}
		i++
		c0 := cpu()
		if err := s.LinkProfiles(ctx, links); err != nil {
			b.Fatal(err)
		}
		used += cpu() - c0
	}
	b.ReportMetric(float64(i*size)/b.Elapsed().Seconds(), "links/s")
	b.ReportMetric(float64(used)/1e3/float64(i*size), "cpu-µs/link")
}
