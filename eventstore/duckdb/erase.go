package duckdb

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Erase deletes the events of keys and their profile links in one
// transaction, then replaces the database file by a compacted copy
// without them (compact.go): DuckDB has no secure delete, its freed
// blocks are reused, not wiped (docs/privacy.md). Erasures that run at
// the same time share one compaction. See [eventstore.Store.Erase].
func (s *Store) Erase(ctx context.Context, keys []string) (int64, error) {
	n, err := s.delete(ctx, keys)
	if err != nil || len(keys) == 0 {
		return n, err
	}
	// Compacted even when nothing was deleted now: an erasure filed again
	// because the first one was cut short after its delete must still
	// wipe the freed blocks.
	if err := s.Compact(ctx); err != nil {
		return n, fmt.Errorf("eventstore/duckdb: erase: %w", err)
	}
	return n, nil
}

// delete deletes the events of keys and their profile links.
func (s *Store) delete(ctx context.Context, keys []string) (n int64, err error) {
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
	s.flushStaged()
	defer s.countRows(context.WithoutCancel(ctx)) //nolint:errcheck // only a hint for Stage
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("eventstore/duckdb: erase: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
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
	return n, nil
}

// Expire deletes the events of sourceID before before; see
// [eventstore.Store.Expire]. Like an erasure's DELETE it leaves the rows'
// bytes in freed blocks of the file: retention runs [Store.Compact] after
// its deletions (privacy.Retainer), once for all sources.
func (s *Store) Expire(ctx context.Context, sourceID string, before time.Time) (int64, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.closed.Load() {
		return 0, ErrClosed
	}
	s.flushStaged()
	defer s.countRows(context.WithoutCancel(ctx)) //nolint:errcheck // only a hint for Stage
	res, err := s.db.ExecContext(ctx, `DELETE FROM events WHERE source_id = ? AND timestamp < ?`, validUTF8(sourceID), before.UTC())
	if err != nil {
		return 0, fmt.Errorf("eventstore/duckdb: expire: %w", err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}
