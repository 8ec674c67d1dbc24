package duckdb

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"

	"tandem/eventstore"
)

// LinkProfiles records links from profile keys to profiles in one
// transaction; see [eventstore.Store.LinkProfiles]. When a key appears
// more than once in links, the last one wins.
//
// Keys marked New (identity resolution meets them for the first time: in
// a load of new visitors, nearly all) go through DuckDB's Appender: no old
// link to look for, one insert each. The others are replaced in two
// statements whose keys and profile ids are bound as list parameters: a
// DELETE of the keys and an INSERT of those that get a profile (DuckDB
// spends little on the rows and much on binding and planning many
// parameters, so lists beat a placeholder per value 3-4x). Should a New
// key have a link after all (the primary key refuses the append), the
// whole batch is written again the second way. The appends go through
// the chunk writer (chunk.go), as the events' do. Measured with
// BenchmarkLinkProfilesNew (28,000 new keys a batch on 1M links), the
// Appender costs about 3.8 µs of CPU a link against 8.7 for the DELETE +
// INSERT (whose DELETE scans the table), most of it DuckDB's index insert.
func (s *Store) LinkProfiles(ctx context.Context, links []eventstore.ProfileLink) error {
	if len(links) == 0 {
		return nil
	}
	type target struct {
		profile string
		isNew   bool
	}
	last := make(map[string]target, len(links))
	order := make([]string, 0, len(links))
	for _, l := range links {
		k := validUTF8(l.Key)
		t, seen := last[k]
		if !seen {
			order = append(order, k)
			t.isNew = true
		}
		last[k] = target{validUTF8(l.ProfileID), t.isNew && l.New}
	}
	var w linkWrite
	for _, k := range order {
		t := last[k]
		if t.isNew && t.profile != "" {
			w.newKeys = append(w.newKeys, k)
			w.newProfiles = append(w.newProfiles, t.profile)
			continue
		}
		w.replace = append(w.replace, k)
		if t.profile != "" {
			w.keys = append(w.keys, k)
			w.profiles = append(w.profiles, t.profile)
		}
	}
	s.lmu.Lock() // not wmu: links need not wait for an Append (see lmu)
	defer s.lmu.Unlock()
	if s.closed.Load() {
		return ErrClosed
	}
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("eventstore/duckdb: link profiles: %w", err)
	}
	defer conn.Close()
	err = conn.Raw(func(dc any) error { return w.write(ctx, dc.(driver.Conn)) })
	if err != nil && len(w.newKeys) > 0 && ctx.Err() == nil {
		// A key thought new has a link already: replace them all.
		w.replace = append(w.replace, w.newKeys...)
		w.keys = append(w.keys, w.newKeys...)
		w.profiles = append(w.profiles, w.newProfiles...)
		w.newKeys, w.newProfiles = nil, nil
		err = conn.Raw(func(dc any) error { return w.write(ctx, dc.(driver.Conn)) })
	}
	if err != nil {
		return fmt.Errorf("eventstore/duckdb: link profiles: %w", err)
	}
	return nil
}

// linkWrite is one transaction of LinkProfiles: the links of replace are
// deleted, then keys are linked to profiles and newKeys (appended) to
// newProfiles.
type linkWrite struct {
	replace, keys, profiles []string
	newKeys, newProfiles    []string
}

func (w *linkWrite) write(ctx context.Context, dc driver.Conn) (err error) {
	// BEGIN without ctx, as in insert.
	tx, err := dc.(driver.ConnBeginTx).BeginTx(context.Background(), driver.TxOptions{})
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer func() {
		if err != nil {
			if rbErr := tx.Rollback(); rbErr != nil {
				err = errors.Join(err, fmt.Errorf("rollback: %w", rbErr))
			}
		}
	}()
	exec := dc.(driver.ExecerContext)
	if len(w.replace) > 0 {
		if _, err := exec.ExecContext(ctx, `DELETE FROM profile_links WHERE key IN (SELECT unnest(?::VARCHAR[]))`,
			[]driver.NamedValue{{Ordinal: 1, Value: w.replace}}); err != nil {
			return err
		}
	}
	if len(w.keys) > 0 {
		if _, err := exec.ExecContext(ctx, `INSERT INTO profile_links (key, profile_id) SELECT unnest(?::VARCHAR[]), unnest(?::VARCHAR[])`,
			[]driver.NamedValue{{Ordinal: 1, Value: w.keys}, {Ordinal: 2, Value: w.profiles}}); err != nil {
			return err
		}
	}
	if len(w.newKeys) > 0 {
		if err := appendLinks(ctx, dc, w.newKeys, w.newProfiles); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// linkColumns are the columns appendLinks writes, and their kinds.
var (
	linkColumns = []string{"key", "profile_id"}
	linkKinds   = []colKind{colVarchar, colVarchar}
)

// appendLinks appends the links of keys to profiles (UTF-8-clean), through
// data chunks (chunk.go), in dc's open transaction.
func appendLinks(ctx context.Context, dc driver.Conn, keys, profiles []string) error {
	a := arenas.Get().(*arena)
	defer arenas.Put(a)
	cw, err := newChunkWriter(dc, "profile_links", linkColumns, linkKinds, a)
	if err != nil {
		return fmt.Errorf("appender: %w", err)
	}
	defer cw.close()
	for i, k := range keys {
		cw.str(0, k)
		cw.str(1, profiles[i])
		if err := cw.endRow(); err != nil {
			return fmt.Errorf("append links: %w", err)
		}
	}
	if err := cw.flush(ctx); err != nil {
		return fmt.Errorf("flush links: %w", err)
	}
	return ctx.Err()
}

// ProfileLinks returns the keys linked to profileID, sorted.
func (s *Store) ProfileLinks(ctx context.Context, profileID string) ([]string, error) {
	s.swap.RLock()
	defer s.swap.RUnlock()
	if s.closed.Load() {
		return nil, ErrClosed
	}
	rows, err := s.db.QueryContext(ctx, `SELECT key FROM profile_links WHERE profile_id = ? ORDER BY key`, validUTF8(profileID))
	if err != nil {
		return nil, fmt.Errorf("eventstore/duckdb: profile links: %w", err)
	}
	defer rows.Close()
	var keys []string
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			return nil, fmt.Errorf("eventstore/duckdb: profile links: %w", err)
		}
		keys = append(keys, k)
	}
	return keys, rows.Err()
}
