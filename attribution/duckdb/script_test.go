package duckdb_test

import (
	"flag"
	"path/filepath"
	"testing"

	"tandem/attribution"
	"tandem/attribution/attributiontest"
	atdb "tandem/attribution/duckdb"
	"tandem/eventstore/duckdb"
)

var update = flag.Bool("update", false, "rewrite the expected answers in ../testdata/*.txt")

// TestScripts runs the scripts in attribution/testdata (format: package
// attributiontest) twice per query: with the touch fields extracted in
// DuckDB SQL and read in Go from each event's JSON; both must give the
// hand-computed answers.
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
			sqlFields := store.Attribution().(*atdb.Source)
			goFields := store.Attribution().(*atdb.Source)
			goFields.GoFields = true
			attributiontest.Run(t, f, store, []attribution.Source{sqlFields, goFields}, *update)
		})
	}
}
