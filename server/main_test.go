package server

import (
	"testing"

	"tandem/testserver"
)

// TestMain stops the servers (PostgreSQL, ClickHouse, …) that tests
// started through testserver once every test has run.
func TestMain(m *testing.M) { testserver.Main(m) }
