package duckdb_test

import (
	"flag"
	"path/filepath"
	"testing"

	adb "tandem/analytics/duckdb"
	"tandem/analytics/scripttest"
	"tandem/eventstore/duckdb"
)

var update = flag.Bool("update", false, "rewrite the expected answers in testdata/*.txt")

// TestScripts runs the scripts in analytics/testdata (format: package
// scripttest). Every query runs twice: through the DuckDB backend (SQL
// where it has a fast path) and through the Go engine over the backend's
// Scan; both must give the expected answer.
func TestScripts(t *testing.T) {
	files, _ := filepath.Glob("../testdata/*.txt")
	if len(files) == 0 {
		t.Fatal("no scripts in ../testdata")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			store, err := duckdb.Open(":memory:")
			if err != nil {
				t.Fatal(err)
			}
			defer store.Close()
			backend := store.Analytics().(*adb.Backend)
			scripttest.Run(t, f, store, backend, backend, *update)
		})
	}
}
