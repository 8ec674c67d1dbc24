package testserver

import "testing"

// TestMain stops the servers this package's own tests start.
func TestMain(m *testing.M) { Main(m) }
