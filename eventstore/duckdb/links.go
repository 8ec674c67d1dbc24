package duckdb

import (
	"context"
	"fmt"
	"strings"

	"tandem/eventstore"
)

// linkChunk is the most links written by one statement.
const linkChunk = 500

// LinkProfiles records links from profile keys to profiles in one
// transaction; see [eventstore.Store.LinkProfiles]. When a key appears
// more than once in links, the last one wins.
func (s *Store) LinkProfiles(ctx context.Context, links []eventstore.ProfileLink) error {
	if len(links) == 0 {
		return nil
	}
	last := make(map[string]string, len(links))
	order := make([]string, 0, len(links))
	for _, l := range links {
		k := validUTF8(l.Key)
		if _, seen := last[k]; !seen {
			order = append(order, k)
		}
		last[k] = validUTF8(l.ProfileID)
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.closed.Load() {
		return ErrClosed
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("eventstore/duckdb: link profiles: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	for start := 0; start < len(order); start += linkChunk {
		keys := order[start:min(start+linkChunk, len(order))]
		args := make([]any, len(keys))
		for i, k := range keys {
			args[i] = k
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM profile_links WHERE key IN (?`+strings.Repeat(", ?", len(keys)-1)+`)`, args...); err != nil {
			return fmt.Errorf("eventstore/duckdb: link profiles: %w", err)
		}
		var vals []string
		args = args[:0]
		for _, k := range keys {
			if p := last[k]; p != "" {
				vals = append(vals, "(?, ?)")
				args = append(args, k, p)
			}
		}
		if len(vals) == 0 {
			continue
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO profile_links (key, profile_id) VALUES `+strings.Join(vals, ", "), args...); err != nil {
			return fmt.Errorf("eventstore/duckdb: link profiles: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("eventstore/duckdb: link profiles: %w", err)
	}
	return nil
}

// ProfileLinks returns the keys linked to profileID, sorted.
func (s *Store) ProfileLinks(ctx context.Context, profileID string) ([]string, error) {
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
