package quarantine_test

import (
	"path/filepath"
	"testing"

	"tandem/quarantine/quarantinetest"
	"tandem/statestore"
	"tandem/statestore/sqlite"
)

func open(t *testing.T) *statestore.DB {
	t.Helper()
	db, err := sqlite.Open(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// TestStore runs the package's suite on SQLite (statetest runs it on every
// backend).
func TestStore(t *testing.T) {
	quarantinetest.Run(t, open)
}
