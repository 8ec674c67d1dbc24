package clickhouse

import (
	"context"
	"crypto/rand"
	"strconv"
	"strings"
	"time"
)

// Erase deletes the events of keys, their dedup keys and their profile
// links with ALTER TABLE … DELETE mutations (ClickHouse 18.16 has no
// lightweight delete), and waits until the mutations are done: a mutation
// rewrites the parts holding the rows, so the deleted rows are gone from
// the new parts, not only hidden. See [eventstore.Store.Erase].
//
// The mutations name the keys by a salted hash, never as they are: the
// server keeps a mutation's text (its mutation_*.txt file, and
// system.mutations, up to finished_mutations_to_keep of them; its query
// log if on). The old parts are removed by the server old_parts_lifetime
// after the mutation: Erase waits for that when the setting is short
// (docs/privacy.md asks for a few seconds).
func (s *Store) Erase(ctx context.Context, keys []string) (int64, error) {
	if len(keys) == 0 {
		return 0, nil
	}
	if s.closed.Load() {
		return 0, ErrClosed
	}
	salt := rand.Text()
	hashes := make([]string, len(keys))
	for i, k := range keys {
		hashes[i] = strconv.FormatUint(saltedHash(salt, k), 10)
	}
	in := " IN (" + strings.Join(hashes, ", ") + ")"
	match := func(column string) string { return `sipHash64(concat(` + quote(salt) + `, ` + column + `))` + in }
	var n uint64
	if err := s.conn.QueryRow(ctx, `SELECT count() FROM `+s.table("events")+` WHERE `+match("profile_key")).Scan(&n); err != nil {
		return 0, s.wrap("erase", err)
	}
	if err := s.acquire(ctx); err != nil {
		return 0, s.wrap("erase", err)
	}
	defer s.release()
	for _, m := range []struct{ table, column string }{{"events", "profile_key"}, {"event_keys", "profile_key"}, {"profile_links", "key"}} {
		if err := s.conn.Exec(ctx, `ALTER TABLE `+s.table(m.table)+` DELETE WHERE `+match(m.column)); err != nil {
			return 0, s.wrap("erase", err)
		}
	}
	if err := s.waitMutations(ctx); err != nil {
		return 0, s.wrap("erase: wait for the mutations", err)
	}
	if err := s.waitOldParts(ctx); err != nil {
		return 0, s.wrap("erase: wait for the old parts' removal", err)
	}
	return int64(n), nil
}

// saltedHash is ClickHouse's sipHash64(concat(salt, key)).
func saltedHash(salt, key string) uint64 {
	return siphash64([]byte(salt + key))
}

// maxOldPartsWait is the longest old_parts_lifetime Erase and Expire wait
// out; with a longer one the server removes the old parts later.
const maxOldPartsWait = time.Minute

// waitOldParts waits until the server has removed the parts of this
// database that mutations or merges replaced (they hold the deleted rows),
// when the server's old_parts_lifetime is at most maxOldPartsWait, and at
// most that long plus the server's clean-up delay.
func (s *Store) waitOldParts(ctx context.Context) error {
	var lifetime string
	if err := s.conn.QueryRow(ctx, `SELECT value FROM system.merge_tree_settings WHERE name = 'old_parts_lifetime'`).Scan(&lifetime); err != nil {
		return err
	}
	secs, err := strconv.ParseUint(lifetime, 10, 64)
	if err != nil || time.Duration(secs)*time.Second > maxOldPartsWait {
		return nil
	}
	deadline := time.Now().Add(time.Duration(secs)*time.Second + 30*time.Second)
	for {
		var old uint64
		if err := s.conn.QueryRow(ctx, `SELECT count() FROM system.parts WHERE database = ? AND active = 0`, s.dbName).Scan(&old); err != nil {
			return err
		}
		if old == 0 || time.Now().After(deadline) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
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
// keys with mutations, and waits until they are done and the old parts
// removed, like [Store.Erase];
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
	if err := s.waitOldParts(ctx); err != nil {
		return 0, s.wrap("expire: wait for the old parts' removal", err)
	}
	return int64(n), nil
}
