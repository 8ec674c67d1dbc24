// Package pgtest opens throwaway PostgreSQL state stores for tests, each
// on a fresh database of the test server (testserver.Postgres: skipped
// when PostgreSQL is not installed, a failure with
// TANDEM_TEST_SERVERS=require). A test binary that uses it stops the
// server with testserver.Main in its TestMain.
package pgtest

import (
	"context"
	"testing"

	"tandem/statestore"
	"tandem/statestore/postgres"
	"tandem/testserver"
)

// Open returns a new PostgreSQL state store on a fresh database, closed
// when the test ends.
func Open(t *testing.T) *statestore.DB {
	t.Helper()
	db, err := postgres.Open(context.Background(), testserver.Postgres(t))
	if err != nil {
		t.Fatalf("postgres.Open: %v", err)
	}
	// Registered after the database's drop, so it runs before it.
	t.Cleanup(func() { db.Close() })
	return db
}
