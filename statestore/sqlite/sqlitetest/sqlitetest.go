// Package sqlitetest opens throwaway SQLite state stores for tests.
package sqlitetest

import (
	"path/filepath"
	"testing"

	"tandem/statestore"
	"tandem/statestore/sqlite"
)

// Open returns a new SQLite state store in a temporary directory, closed
// when the test ends.
func Open(t *testing.T) *statestore.DB {
	t.Helper()
	db, err := sqlite.Open(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatalf("sqlite.Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}
