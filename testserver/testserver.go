// Package testserver starts real database and messaging servers on
// loopback for tests: PostgreSQL, ClickHouse and a NATS cluster, each with
// its data in a temporary directory that is removed when the test ends.
//
// When a server's software is not installed a test is skipped with a
// message saying what is missing and how to install it, unless the
// environment says servers are required (TANDEM_TEST_SERVERS=require, as
// .ci/run sets it): then the test fails, so a CI run can never pass by
// skipping the server backends.
package testserver

import (
	"os"
	"sync"
	"testing"
)

// Required reports whether tests must fail, rather than skip, when a server
// cannot be started.
func Required() bool { return os.Getenv("TANDEM_TEST_SERVERS") == "require" }

// Unavailable ends t because the server named what cannot run here: a
// skip with why (and how to install it), or a failure when servers are
// required.
func Unavailable(t testing.TB, what, why string) {
	t.Helper()
	if Required() {
		t.Fatalf("%s is required (TANDEM_TEST_SERVERS=require) but unavailable: %s", what, why)
	}
	t.Skipf("skipping: %s is not available: %s (set TANDEM_TEST_SERVERS=require to make this a failure)", what, why)
}

var (
	stopMu sync.Mutex
	stops  []func()
)

// atExit registers stop to run when [Main] ends the test binary. Servers
// are shared by the tests of one binary (each test gets its own database
// or stream) because starting one costs seconds.
func atExit(stop func()) {
	stopMu.Lock()
	defer stopMu.Unlock()
	stops = append(stops, stop)
}

// Main runs the tests of a package that uses this package's servers and
// stops the servers afterwards. Call it from TestMain:
//
//	func TestMain(m *testing.M) { testserver.Main(m) }
func Main(m *testing.M) { os.Exit(Run(m)) }

// Run is [Main] for a TestMain that has more to do after the tests (such
// as removing files it made): it runs the tests, stops the servers and
// returns the exit code instead of exiting.
func Run(m *testing.M) int {
	mainRunning.Store(true)
	code := m.Run()
	stopMu.Lock()
	for i := len(stops) - 1; i >= 0; i-- {
		stops[i]()
	}
	stops = nil
	stopMu.Unlock()
	return code
}
