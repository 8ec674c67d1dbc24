package clickhouse

import "github.com/ClickHouse/clickhouse-go/v2/lib/driver"

// Conn is the store's connection pool, for read-only queries of other
// packages over its tables (analytics/clickhouse). Writes go through the
// Store's methods, which keep its dedup and locking rules.
func (s *Store) Conn() driver.Conn { return s.conn }

// Table returns the qualified name of one of the store's tables
// ("events", "profile_links"), ready to put in a query.
func (s *Store) Table(name string) string { return s.table(name) }

// Quote returns s as a ClickHouse string literal that survives any bytes
// exactly (ClickHouse 18.16 has no query parameters).
func Quote(s string) string { return quote(s) }
