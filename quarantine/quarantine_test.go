package quarantine_test

import (
	"testing"

	"tandem/quarantine/quarantinetest"
	"tandem/statestore/statetest"
	"tandem/testserver"
)

// TestMain stops the test servers TestStore started.
func TestMain(m *testing.M) { testserver.Main(m) }

// TestStore runs the package's suite on every state store backend.
func TestStore(t *testing.T) {
	statetest.Each(t, quarantinetest.Run)
}
