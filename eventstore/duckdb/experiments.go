package duckdb

import (
	"tandem/experiment"
	edb "tandem/experiment/duckdb"
)

// Experiments returns the store's experiment aggregator (experiment/duckdb)
// over its events and profile_links tables: results for a million exposed
// profiles are summed in one DuckDB query. It makes the Store an
// experiment.Provider.
func (s *Store) Experiments() experiment.Aggregator {
	return edb.New(s.db, edb.Tables{Events: "events", Links: "profile_links"})
}

var _ experiment.Provider = (*Store)(nil)
