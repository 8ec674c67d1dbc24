package server

import (
	"testing"

	"tandem/testserver"
)

// TestMain stops the database servers some tests start (PostgreSQL for
// the state store) when the tests end.
func TestMain(m *testing.M) { testserver.Main(m) }
