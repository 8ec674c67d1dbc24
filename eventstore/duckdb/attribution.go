package duckdb

import (
	"tandem/attribution"
	atdb "tandem/attribution/duckdb"
)

// Attribution returns the store's attribution source (attribution/duckdb)
// over its events and profile_links tables. It makes the Store an
// attribution.Provider.
func (s *Store) Attribution() attribution.Source {
	return atdb.New(s.db, atdb.Tables{Events: "events", Links: "profile_links", ValueColumn: ValueColumn})
}

var _ attribution.Provider = (*Store)(nil)
