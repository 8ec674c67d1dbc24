package duckdb

import (
	"context"
	"fmt"
	"strings"
)

// Erase deletes the events of keys and their profile links in one
// transaction, then checkpoints, so the rows leave the write-ahead log;
// see [eventstore.Store.Erase]. DuckDB has no secure delete: the freed
// blocks are reused, not wiped (docs/privacy.md).
func (s *Store) Erase(ctx context.Context, keys []string) (int64, error) {
	if len(keys) == 0 {
		return 0, nil
	}
	users, anons, all := []string{}, []string{}, make([]string, 0, len(keys))
	for _, k := range keys {
		k = validUTF8(k)
		all = append(all, k)
		if v, ok := strings.CutPrefix(k, "user_id:"); ok {
			users = append(users, v)
		} else if v, ok := strings.CutPrefix(k, "anonymous_id:"); ok {
			anons = append(anons, v)
		}
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.lmu.Lock()
	defer s.lmu.Unlock()
	if s.closed.Load() {
		return 0, ErrClosed
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("eventstore/duckdb: erase: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	var n int64
	for _, q := range []struct {
		sql  string
		vals []string
	}{
		{`DELETE FROM events WHERE user_id IN (SELECT unnest(?::VARCHAR[]))`, users},
		{`DELETE FROM events WHERE user_id IS NULL AND anonymous_id IN (SELECT unnest(?::VARCHAR[]))`, anons},
	} {
		if len(q.vals) == 0 {
			continue
		}
		res, err := tx.ExecContext(ctx, q.sql, q.vals)
		if err != nil {
			return 0, fmt.Errorf("eventstore/duckdb: erase: %w", err)
		}
		d, _ := res.RowsAffected()
		n += d
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM profile_links WHERE key IN (SELECT unnest(?::VARCHAR[]))`, all); err != nil {
		return 0, fmt.Errorf("eventstore/duckdb: erase: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("eventstore/duckdb: erase: %w", err)
	}
	if _, err := s.db.ExecContext(ctx, `CHECKPOINT`); err != nil {
		return n, fmt.Errorf("eventstore/duckdb: erase: checkpoint: %w", err)
	}
	return n, nil
}
