package privacy_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"tandem/governance"
	"tandem/privacy"
	"tandem/statestore"
	"tandem/statestore/statetest"
)

// expirer removes n rows on each call.
type expirer struct{ n int64 }

func (e *expirer) Expire(context.Context, time.Time) (int64, error) { return e.n, nil }

// A run compacts after the deletions of the stores a compaction follows,
// not otherwise; a compaction that fails fails the run and runs again at
// the next run even when that one removes nothing.
func TestRetentionCompacts(t *testing.T) {
	statetest.Each(t, func(t *testing.T, open func(t *testing.T) *statestore.DB) {
		ctx := context.Background()
		db := open(t)
		if err := db.Migrate(ctx, governance.Migrations()...); err != nil {
			t.Fatal(err)
		}
		traits := &expirer{n: 2}
		var ran []string
		stateErr := errors.New("checkpoint refused")
		r := privacy.NewRetainer(privacy.Retention{Default: time.Hour}, governance.NewStore(db), privacy.RetentionStores{
			ByDefault: []privacy.NamedExpirer{{Name: "computed_traits", Store: traits}},
			Compact: []privacy.Compacter{
				{Name: "state", After: []string{"computed_traits"}, Run: func(context.Context) error { ran = append(ran, "state"); return stateErr }},
				{Name: "events", After: []string{"events"}, Run: func(context.Context) error { ran = append(ran, "events"); return nil }},
			},
		}, nil, nil)
		run, err := r.RunOnce(ctx)
		if err == nil || !slices.Equal(ran, []string{"state"}) || len(run.Compacted) != 0 {
			t.Fatalf("first run: %v, ran %v, compacted %v", err, ran, run.Compacted)
		}
		// Nothing removed now, but the state compaction is owed.
		traits.n, ran, stateErr = 0, nil, nil
		run, err = r.RunOnce(ctx)
		if err != nil || !slices.Equal(ran, []string{"state"}) || !slices.Equal(run.Compacted, []string{"state"}) {
			t.Fatalf("second run: %v, ran %v, compacted %v", err, ran, run.Compacted)
		}
		ran = nil
		if run, err = r.RunOnce(ctx); err != nil || len(ran) != 0 || len(run.Compacted) != 0 {
			t.Fatalf("third run: %v, ran %v, compacted %v", err, ran, run.Compacted)
		}
	})
}
