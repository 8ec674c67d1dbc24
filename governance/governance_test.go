package governance_test

import (
	"path/filepath"
	"strings"
	"testing"

	"tandem/governance"
	"tandem/governance/governancetest"
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
	governancetest.Run(t, open)
}

func TestNewWriteKey(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		k, err := governance.NewWriteKey()
		if err != nil {
			t.Fatal(err)
		}
		body, ok := strings.CutPrefix(k, governance.WriteKeyPrefix)
		if !ok || len(body) != 52 || strings.Trim(body, "abcdefghijklmnopqrstuvwxyz234567") != "" {
			t.Fatalf("NewWriteKey = %q", k)
		}
		if seen[k] {
			t.Fatalf("NewWriteKey repeated %q", k)
		}
		seen[k] = true
	}
}
