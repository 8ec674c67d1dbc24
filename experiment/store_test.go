package experiment_test

import (
	"testing"

	"tandem/experiment/experimenttest"
	"tandem/statestore/statetest"
	"tandem/testserver"
)

// TestMain stops the test servers TestStore started.
func TestMain(m *testing.M) { testserver.Main(m) }

// TestStore runs the store's suite on every state store backend.
func TestStore(t *testing.T) { statetest.Each(t, experimenttest.Run) }
