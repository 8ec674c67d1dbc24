package clickhouse_test

import (
	"context"
	"path/filepath"
	"testing"

	"tandem/attribution"
	"tandem/attribution/attributiontest"
	"tandem/eventstore/clickhouse"
	"tandem/testserver"
)

func TestMain(m *testing.M) { testserver.Main(m) }

// TestScripts runs the attribution scripts (attribution/testdata) against
// the ClickHouse event store, each script in a fresh database: the same
// hand-computed answers as on DuckDB.
func TestScripts(t *testing.T) {
	files, _ := filepath.Glob("../testdata/*.txt")
	if len(files) == 0 {
		t.Fatal("no scripts in ../testdata")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			s, err := clickhouse.Open(context.Background(), testserver.ClickHouse(t))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			attributiontest.Run(t, f, s, []attribution.Source{s.Attribution()}, false)
		})
	}
}
