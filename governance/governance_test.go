package governance_test

import (
	"strings"
	"testing"

	"tandem/governance"
	"tandem/governance/governancetest"
	"tandem/statestore/sqlite/sqlitetest"
)

// TestStore runs the package's suite on SQLite (statetest runs it on every
// backend).
func TestStore(t *testing.T) {
	governancetest.Run(t, sqlitetest.Open)
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
