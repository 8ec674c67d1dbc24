package quarantine_test

import (
	"testing"

	"tandem/quarantine/quarantinetest"
	"tandem/statestore/sqlite/sqlitetest"
)

// TestStore runs the package's suite on SQLite (statetest runs it on every
// backend).
func TestStore(t *testing.T) {
	quarantinetest.Run(t, sqlitetest.Open)
}
