package clickhouse

import (
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"tandem/analytics"
	ach "tandem/analytics/clickhouse"
)

// Analytics returns the store's analytics backend (analytics/clickhouse)
// over its events and profile_links tables (see schema.go), with the
// store's connections and literal quoting: the store says what the backend
// reads, so the two change together. It makes the Store an
// analytics.Provider. The result is an *ach.Backend, whose BucketRows a
// caller may set.
func (s *Store) Analytics() analytics.Backend {
	return ach.New(ach.Tables{Conn: s.conn, Events: s.table("events"), Links: s.table("profile_links"), Quote: quote})
}

var _ analytics.Provider = (*Store)(nil)

// Conn is the store's connection pool, for read-only queries of other
// packages over its tables (the benchmarks' windowFunnel baseline).
// Writes go through the Store's methods, which keep its dedup and locking
// rules.
func (s *Store) Conn() driver.Conn { return s.conn }

// Table returns the qualified name of one of the store's tables
// ("events", "profile_links"), ready to put in a query.
func (s *Store) Table(name string) string { return s.table(name) }

// Quote returns s as a ClickHouse string literal that survives any bytes
// exactly (ClickHouse 18.16 has no query parameters).
func Quote(s string) string { return quote(s) }
