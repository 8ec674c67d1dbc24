package identity_test

import (
	"testing"

	"tandem/identity/identitytest"
	"tandem/statestore/sqlite/sqlitetest"
)

// TestStore runs the package's suite on SQLite (statetest runs it on every
// backend).
func TestStore(t *testing.T) {
	identitytest.Run(t, sqlitetest.Open)
}
