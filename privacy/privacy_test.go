package privacy_test

import (
	"testing"

	"tandem/privacy/privacytest"
	"tandem/statestore/statetest"
	"tandem/testserver"
)

// TestMain stops the test servers TestScripts started.
func TestMain(m *testing.M) { testserver.Main(m) }

// TestScripts runs the scripts in testdata (events in, consent out) on
// every state store backend.
func TestScripts(t *testing.T) {
	statetest.Each(t, privacytest.Scripts("testdata"))
}
