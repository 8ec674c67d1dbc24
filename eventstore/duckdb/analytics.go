package duckdb

import (
	"database/sql"

	"tandem/analytics"
	adb "tandem/analytics/duckdb"
)

// Analytics returns the store's analytics backend (analytics/duckdb) over
// its events and profile_links tables (see schema.go): the store says
// which tables the backend reads, so the two change together, and
// schedules its queries' threads (threads.go). It makes the Store an
// analytics.Provider.
func (s *Store) Analytics() analytics.Backend {
	return adb.New(s.db, adb.Tables{Events: "events", Links: "profile_links"}, s)
}

var _ analytics.Provider = (*Store)(nil)

// DB is the store's database handle, for read-only queries over its
// tables (the benchmarks' plain-SQL baselines). Writers must go through
// the Store's methods: they keep the dedup fingerprints in step.
func (s *Store) DB() *sql.DB { return s.db }
