package quarantine

import (
	"context"
	"fmt"
	"time"

	"tandem/statestore"
)

// Erase deletes the entries whose raw payload match reports as a data
// subject's (an erasure, GDPR Art. 17), and returns how many. It reads
// every entry's payload once.
func (s *Store) Erase(ctx context.Context, match func(raw []byte) bool) (int, error) {
	rows, err := s.db.Query(ctx, `SELECT id, raw FROM quarantine_entries`)
	if err != nil {
		return 0, fmt.Errorf("quarantine: erase: %w", err)
	}
	var ids []string
	for rows.Next() {
		var id string
		var raw []byte
		if err := rows.Scan(&id, &raw); err != nil {
			rows.Close()
			return 0, fmt.Errorf("quarantine: erase: %w", err)
		}
		if match(raw) {
			ids = append(ids, id)
		}
	}
	err = rows.Err()
	rows.Close()
	if err != nil {
		return 0, fmt.Errorf("quarantine: erase: %w", err)
	}
	for _, id := range ids {
		if _, err := s.db.Exec(ctx, `DELETE FROM quarantine_entries WHERE id = ?`, id); err != nil {
			return 0, fmt.Errorf("quarantine: erase: %w", err)
		}
	}
	return len(ids), nil
}

// Expire deletes the entries of source sourceID received before before
// (retention, docs/privacy.md) and returns how many.
func (s *Store) Expire(ctx context.Context, sourceID string, before time.Time) (int64, error) {
	res, err := s.db.Exec(ctx, `DELETE FROM quarantine_entries WHERE source_id = ? AND received_at < ?`, sourceID, statestore.TimeToDB(before))
	if err != nil {
		return 0, fmt.Errorf("quarantine: expire: %w", err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}
