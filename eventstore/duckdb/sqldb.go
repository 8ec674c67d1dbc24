package duckdb

import "database/sql"

// DB is the store's database handle, for read-only queries over the
// events and profile_links tables (see schema.go) by packages that compute
// answers in SQL, such as analytics/duckdb. Writers must go through the
// Store's methods: they keep the dedup fingerprints in step.
func (s *Store) DB() *sql.DB { return s.db }
