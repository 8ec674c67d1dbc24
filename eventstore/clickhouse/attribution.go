package clickhouse

import (
	"tandem/attribution"
	atch "tandem/attribution/clickhouse"
)

// Attribution returns the store's attribution source
// (attribution/clickhouse) over its events and profile_links tables. It
// makes the Store an attribution.Provider.
func (s *Store) Attribution() attribution.Source {
	return atch.New(atch.Tables{Conn: s.conn, Events: s.table("events"), Links: s.table("profile_links"), Quote: quote})
}

var _ attribution.Provider = (*Store)(nil)
