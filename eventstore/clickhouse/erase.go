package clickhouse

import (
	"context"
	"strconv"
	"strings"
	"time"
)

// Erase deletes the events of keys, their dedup keys and their profile
// links with ALTER TABLE … DELETE mutations (ClickHouse 18.16 has no
// lightweight delete), and waits until the mutations are done: a mutation
// rewrites the parts holding the rows, so the deleted rows are gone from
// the data files, not only hidden. See [eventstore.Store.Erase].
func (s *Store) Erase(ctx context.Context, keys []string) (int64, error) {
	if len(keys) == 0 {
		return 0, nil
	}
	if s.closed.Load() {
		return 0, ErrClosed
	}
	quoted := make([]string, len(keys))
	for i, k := range keys {
		quoted[i] = quote(k)
	}
	in := "(" + strings.Join(quoted, ", ") + ")"
	var n uint64
	if err := s.conn.QueryRow(ctx, `SELECT count() FROM `+s.table("events")+` WHERE profile_key IN `+in).Scan(&n); err != nil {
		return 0, s.wrap("erase", err)
	}
	if err := s.acquire(ctx); err != nil {
		return 0, s.wrap("erase", err)
	}
	defer s.release()
	for _, m := range []struct{ table, column string }{{"events", "profile_key"}, {"event_keys", "profile_key"}, {"profile_links", "key"}} {
		if err := s.conn.Exec(ctx, `ALTER TABLE `+s.table(m.table)+` DELETE WHERE `+m.column+` IN `+in); err != nil {
			return 0, s.wrap("erase", err)
		}
	}
	if err := s.waitMutations(ctx); err != nil {
		return 0, s.wrap("erase: wait for the mutations", err)
	}
	return int64(n), nil
}

// waitMutations waits until the mutations of this database's tables are
// done.
func (s *Store) waitMutations(ctx context.Context) error {
	for {
		var pending uint64
		if err := s.conn.QueryRow(ctx, `SELECT count() FROM system.mutations WHERE database = ? AND is_done = 0`, s.dbName).Scan(&pending); err != nil {
			return err
		}
		if pending == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Expire deletes the events of sourceID before before and their dedup
// keys with mutations, and waits until they are done, like [Store.Erase];
// see [eventstore.Store.Expire].
func (s *Store) Expire(ctx context.Context, sourceID string, before time.Time) (int64, error) {
	if s.closed.Load() {
		return 0, ErrClosed
	}
	where := `source_id = ` + quote(sourceID) + ` AND timestamp < ` + strconv.FormatInt(before.UnixMicro(), 10)
	var n uint64
	if err := s.conn.QueryRow(ctx, `SELECT count() FROM `+s.table("events")+` WHERE `+where).Scan(&n); err != nil {
		return 0, s.wrap("expire", err)
	}
	if n == 0 {
		return 0, nil
	}
	if err := s.acquire(ctx); err != nil {
		return 0, s.wrap("expire", err)
	}
	defer s.release()
	for _, t := range []string{"events", "event_keys"} {
		if err := s.conn.Exec(ctx, `ALTER TABLE `+s.table(t)+` DELETE WHERE `+where); err != nil {
			return 0, s.wrap("expire", err)
		}
	}
	if err := s.waitMutations(ctx); err != nil {
		return 0, s.wrap("expire: wait for the mutations", err)
	}
	return int64(n), nil
}
