package identity

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"tandem/statestore"
	"tandem/statestore/sqlite/sqlitetest"
)

// TestTxRetries: a transaction is run again when its error matches
// statestore.ErrBusy (or ErrConflict, or a component that changed), however
// it is worded, and not for other errors, whatever their text says.
func TestTxRetries(t *testing.T) {
	s := &Store{db: sqlitetest.Open(t)}
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		err   error
		calls int // attempts before tx gives up or succeeds
		ok    bool
	}{
		{"busy, then passes", fmt.Errorf("resolve: %w", statestore.ErrBusy), 3, true},
		{"conflict, then passes", fmt.Errorf("insert: %w", statestore.ErrConflict), 3, true},
		{"component changed, then passes", errRetry, 3, true},
		{"busy every time", fmt.Errorf("resolve: %w", statestore.ErrBusy), txAttempts, false},
		{"a message that only reads like one", errors.New("pq: could not serialize access due to concurrent update"), 1, false},
		{"other", errors.New("disk I/O error"), 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			err := s.tx(ctx, func(*statestore.Tx) error {
				calls++
				if tc.ok && calls == 3 {
					return nil
				}
				return tc.err
			})
			if calls != tc.calls {
				t.Errorf("%d attempts, want %d", calls, tc.calls)
			}
			if tc.ok != (err == nil) {
				t.Errorf("tx: %v", err)
			}
		})
	}
}
