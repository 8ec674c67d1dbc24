package delivery

import (
	"context"
	"fmt"
	"time"

	"tandem/statestore"
)

// Migrations returns the delivery package's schema migrations (the
// dead-letter store), for [statestore.DB.Migrate].
func Migrations() []statestore.Migration {
	return []statestore.Migration{{
		Package: "delivery",
		Version: 1,
		SQL: `
CREATE TABLE delivery_dead_letters (
	id TEXT PRIMARY KEY,
	destination_id TEXT NOT NULL,
	message_id TEXT NOT NULL,
	lane_key TEXT NOT NULL,
	body TEXT NOT NULL,
	attempts BIGINT NOT NULL,
	last_error TEXT NOT NULL,
	failed_at BIGINT NOT NULL
);
CREATE INDEX delivery_dead_letters_destination ON delivery_dead_letters (destination_id, id);
`,
	}, flowMigration, {
		Package: "delivery",
		Version: 3,
		SQL: `ALTER TABLE delivery_dead_letters ADD COLUMN source_id TEXT NOT NULL DEFAULT '';
ALTER TABLE delivery_dead_letters ADD COLUMN received_at BIGINT NOT NULL DEFAULT 0;`,
	}}
}

// DeadLetter is an event a destination did not take within the retry
// budget, kept with the last error until it is replayed.
type DeadLetter struct {
	ID            string    `json:"id"`
	DestinationID string    `json:"destinationId"`
	MessageID     string    `json:"messageId"`
	Attempts      int       `json:"attempts"`
	LastError     string    `json:"lastError"`
	FailedAt      time.Time `json:"failedAt"`
	laneKey       string
	body          string
	sourceID      string    // the event's source, for retention ("" before it was kept)
	received      time.Time // when the collection API received the event
}

type deadLetters struct{ db *statestore.DB }

// add stores dead letters (id set by the caller to keep replays in
// order).
func (s deadLetters) add(ctx context.Context, dls []DeadLetter) error {
	return s.db.Tx(ctx, func(tx *statestore.Tx) error {
		for _, d := range dls {
			if _, err := tx.Exec(ctx, `INSERT INTO delivery_dead_letters
				(id, destination_id, message_id, lane_key, body, attempts, last_error, failed_at, source_id, received_at)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
				d.ID, d.DestinationID, d.MessageID, d.laneKey, d.body, d.Attempts, d.LastError, statestore.TimeToDB(d.FailedAt),
				d.sourceID, statestore.TimeToDB(d.received)); err != nil {
				return err
			}
		}
		return nil
	})
}

// update records a failed replay of dead letter id.
func (s deadLetters) update(ctx context.Context, id string, attempts int, lastErr string, at time.Time) error {
	_, err := s.db.Exec(ctx, `UPDATE delivery_dead_letters SET attempts = ?, last_error = ?, failed_at = ? WHERE id = ?`,
		attempts, lastErr, statestore.TimeToDB(at), id)
	return err
}

func (s deadLetters) remove(ctx context.Context, ids []string) error {
	return s.db.Tx(ctx, func(tx *statestore.Tx) error {
		for _, id := range ids {
			if _, err := tx.Exec(ctx, `DELETE FROM delivery_dead_letters WHERE id = ?`, id); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s deadLetters) removeDestination(ctx context.Context, destID string) error {
	if _, err := s.db.Exec(ctx, `DELETE FROM delivery_dead_letters WHERE destination_id = ?`, destID); err != nil {
		return err
	}
	_, err := s.db.Exec(ctx, `DELETE FROM delivery_flows WHERE destination_id = ?`, destID)
	return err
}

// list returns up to limit dead letters of a destination after cursor, in
// the order they failed, with their bodies.
func (s deadLetters) list(ctx context.Context, destID string, limit int, after string) ([]DeadLetter, error) {
	rows, err := s.db.Query(ctx, `SELECT id, destination_id, message_id, lane_key, body, attempts, last_error, failed_at
		FROM delivery_dead_letters WHERE destination_id = ? AND id > ? ORDER BY id LIMIT ?`, destID, after, limit)
	if err != nil {
		return nil, fmt.Errorf("delivery: dead letters of %s: %w", destID, err)
	}
	defer rows.Close()
	var out []DeadLetter
	for rows.Next() {
		var d DeadLetter
		var at int64
		if err := rows.Scan(&d.ID, &d.DestinationID, &d.MessageID, &d.laneKey, &d.body, &d.Attempts, &d.LastError, &at); err != nil {
			return nil, fmt.Errorf("delivery: dead letters of %s: %w", destID, err)
		}
		d.FailedAt = statestore.TimeFromDB(at)
		out = append(out, d)
	}
	return out, rows.Err()
}

func (s deadLetters) count(ctx context.Context, destID string) (int, error) {
	var n int
	err := s.db.QueryRow(ctx, `SELECT COUNT(*) FROM delivery_dead_letters WHERE destination_id = ?`, destID).Scan(&n)
	return n, err
}

// expire deletes the dead letters of events of source sourceID received
// before before; those stored before the source was kept (source "") go
// by when they failed, under the default age (sourceID "").
func (s deadLetters) expire(ctx context.Context, sourceID string, before time.Time) (int64, error) {
	b := statestore.TimeToDB(before)
	res, err := s.db.Exec(ctx, `DELETE FROM delivery_dead_letters WHERE source_id = ? AND
		((received_at > 0 AND received_at < ?) OR (received_at = 0 AND failed_at < ?))`, sourceID, b, b)
	if err != nil {
		return 0, err
	}
	n, _ := res.RowsAffected()
	return n, nil
}

// EraseDeadLetters deletes the dead letters whose body match picks (a data
// subject's events, for an erasure), of every destination, and returns
// how many.
func (m *Manager) EraseDeadLetters(ctx context.Context, match func(body []byte) bool) (int, error) {
	rows, err := m.dead.db.Query(ctx, `SELECT id, body FROM delivery_dead_letters`)
	if err != nil {
		return 0, fmt.Errorf("delivery: erase dead letters: %w", err)
	}
	var ids []string
	for rows.Next() {
		var id, body string
		if err := rows.Scan(&id, &body); err != nil {
			rows.Close()
			return 0, fmt.Errorf("delivery: erase dead letters: %w", err)
		}
		if match([]byte(body)) {
			ids = append(ids, id)
		}
	}
	err = rows.Err()
	rows.Close()
	if err != nil {
		return 0, fmt.Errorf("delivery: erase dead letters: %w", err)
	}
	if err := m.dead.remove(ctx, ids); err != nil {
		return 0, fmt.Errorf("delivery: erase dead letters: %w", err)
	}
	return len(ids), nil
}
