package identity_test

import (
	"testing"

	"tandem/identity/identitytest"
	"tandem/statestore/statetest"
	"tandem/testserver"
)

// TestMain stops the test servers TestStore started.
func TestMain(m *testing.M) { testserver.Main(m) }

// TestStore runs the package's suite on every state store backend.
func TestStore(t *testing.T) {
	statetest.Each(t, identitytest.Run)
}
