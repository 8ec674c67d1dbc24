package duckdb_test

import (
	"context"
	"flag"
	"path/filepath"
	"testing"

	"tandem/attribution"
	"tandem/attribution/attributiontest"
	atdb "tandem/attribution/duckdb"
	"tandem/event"
	"tandem/eventstore/duckdb"
)

var update = flag.Bool("update", false, "rewrite the expected answers in ../testdata/*.txt")

// refilled is an event store whose events lose their touch columns after
// each Append and get them back from FillTouches: the path of events
// stored before the columns existed, or written by SQL.
type refilled struct {
	*duckdb.Store
	t *testing.T
}

func (r refilled) Append(ctx context.Context, events []event.Event) (int, error) {
	n, err := r.Store.Append(ctx, events)
	if err != nil {
		return n, err
	}
	if _, err := r.DB().ExecContext(ctx, `UPDATE events SET touch = NULL, touch_medium = NULL, touch_source = NULL, touch_campaign = NULL,
		touch_channel = NULL, touch_referrer = NULL, touch_page = NULL`); err != nil {
		r.t.Fatal(err)
	}
	filled, err := r.FillTouches(ctx)
	if err != nil {
		r.t.Fatal(err)
	}
	var total int64
	if err := r.DB().QueryRowContext(ctx, `SELECT count(*) FROM events`).Scan(&total); err != nil {
		r.t.Fatal(err)
	}
	if filled != total {
		r.t.Fatalf("FillTouches filled %d rows of %d", filled, total)
	}
	return n, nil
}

// TestScripts runs the scripts in attribution/testdata (format: package
// attributiontest) twice: with the touch columns written by Append, and
// with them written by FillTouches from the stored JSON; both must give
// the hand-computed answers, read with the touch facts hashed (as
// always) and as strings (as when two sets of facts hash alike).
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
			attributiontest.Run(t, f, store, []attribution.Source{store.Attribution(), atdb.ByFacts(store.Attribution())}, *update)
		})
		t.Run(filepath.Base(f)+"/filled", func(t *testing.T) {
			store, err := duckdb.Open(":memory:")
			if err != nil {
				t.Fatal(err)
			}
			defer store.Close()
			attributiontest.Run(t, f, refilled{store, t}, []attribution.Source{store.Attribution()}, false)
		})
	}
}
