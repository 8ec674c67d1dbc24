package governance_test

import (
	"strings"
	"testing"

	"tandem/governance"
	"tandem/governance/governancetest"
	"tandem/statestore/statetest"
	"tandem/testserver"
)

// TestMain stops the test servers TestStore started.
func TestMain(m *testing.M) { testserver.Main(m) }

// TestStore runs the package's suite on every state store backend.
func TestStore(t *testing.T) {
	statetest.Each(t, governancetest.Run)
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
