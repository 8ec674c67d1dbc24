package pipeline

import (
	"context"
	"errors"
	"testing"

	"tandem/event"
	"tandem/statestore"
)

// stepFunc is any of the state-store steps (Resolver, ConsentRecorder,
// TraitRecorder).
type stepFunc func(ctx context.Context, events []event.Event) error

func (f stepFunc) Resolve(ctx context.Context, events []event.Event) error { return f(ctx, events) }
func (f stepFunc) Record(ctx context.Context, events []event.Event) error  { return f(ctx, events) }

// TestStateBatchJoinsSteps checks Options.StateBatch: identity, consent
// and computed traits commit together (a failing step leaves nothing of
// the steps before it) and the audiences run after that commit, seeing
// what the steps wrote.
func TestStateBatchJoinsSteps(t *testing.T) {
	ctx := context.Background()
	r := newRig(t, t.TempDir())
	if _, err := r.db.Exec(ctx, `CREATE TABLE step_rows (id TEXT PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	write := func(id string) stepFunc {
		return func(ctx context.Context, _ []event.Event) error {
			return r.db.Tx(ctx, func(tx *statestore.Tx) error {
				_, err := tx.Exec(ctx, `INSERT INTO step_rows (id) VALUES (?) ON CONFLICT (id) DO NOTHING`, id)
				return err
			})
		}
	}
	rows := func() int {
		var n int
		if err := r.db.QueryRow(context.Background(), `SELECT COUNT(*) FROM step_rows`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	errBoom := errors.New("boom")
	failTraits := true
	var audiencesSaw []int
	p, err := New(ctx, Options{Log: r.log, Events: r.ev, Quarantine: r.q, StateBatch: r.db.Batch,
		Identity: write("identity"),
		Consent:  write("consent"),
		Traits: stepFunc(func(ctx context.Context, events []event.Event) error {
			if err := write("traits")(ctx, events); err != nil {
				return err
			}
			if failTraits {
				return errBoom
			}
			return nil
		}),
		Audiences: stepFunc(func(context.Context, []event.Event) error {
			audiencesSaw = append(audiencesSaw, rows())
			return nil
		}),
	})
	if err != nil {
		t.Fatal(err)
	}
	batch := []event.Event{track(1)}
	if err := p.store(ctx, [][]event.Event{batch}, nil); !errors.Is(err, errBoom) {
		t.Fatalf("store with failing traits: %v, want boom", err)
	}
	if n := rows(); n != 0 {
		t.Errorf("a failed step left %d rows of the batch's steps, want none", n)
	}
	if len(audiencesSaw) != 0 {
		t.Errorf("audiences ran for a batch whose steps failed")
	}
	failTraits = false
	if err := p.store(ctx, [][]event.Event{batch}, nil); err != nil {
		t.Fatal(err)
	}
	if n := rows(); n != 3 {
		t.Errorf("%d rows after the batch, want 3 (identity, consent, traits)", n)
	}
	if len(audiencesSaw) != 1 || audiencesSaw[0] != 3 {
		t.Errorf("audiences saw %v committed rows, want one call after all 3", audiencesSaw)
	}
}
