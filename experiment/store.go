package experiment

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"tandem/statestore"
)

// ErrNotFound matches (errors.Is) a lookup of an experiment that does not
// exist; it also matches statestore.ErrNotFound (the API answers 404).
var ErrNotFound = fmt.Errorf("experiment: not found: %w", statestore.ErrNotFound)

// Migrations returns the package's schema migrations, for
// [statestore.DB.Migrate]: one row per experiment, its definition as
// JSON (the columns looked up by are columns of their own).
func Migrations() []statestore.Migration {
	return []statestore.Migration{{
		Package: "experiment",
		Version: 1,
		SQL: `
CREATE TABLE experiments (
	id TEXT PRIMARY KEY,
	exp_key TEXT NOT NULL UNIQUE,
	definition TEXT NOT NULL,
	created_at BIGINT NOT NULL
)`,
	}}
}

// Store keeps experiment definitions in the state store, whose
// [Migrations] must be applied.
type Store struct {
	db  *statestore.DB
	now func() time.Time
}

// NewStore returns a Store over db.
func NewStore(db *statestore.DB) *Store { return &Store{db: db, now: time.Now} }

// Create validates e (see [Experiment.Normalize]), gives it an id and
// stores it. A key that is taken gives an error matching
// statestore.ErrConflict.
func (s *Store) Create(ctx context.Context, e Experiment, createdBy string) (Experiment, error) {
	now := s.now().UTC()
	if err := e.Normalize(now); err != nil {
		return Experiment{}, err
	}
	e.ID = statestore.NewID("exp")
	e.CreatedBy = createdBy
	e.CreatedAt = now.Truncate(time.Microsecond)
	def, err := json.Marshal(e)
	if err != nil {
		return Experiment{}, fmt.Errorf("experiment: encode: %w", err)
	}
	if _, err := s.db.Exec(ctx, `INSERT INTO experiments (id, exp_key, definition, created_at) VALUES (?, ?, ?, ?)`,
		e.ID, e.Key, string(def), statestore.TimeToDB(e.CreatedAt)); err != nil {
		if errors.Is(err, statestore.ErrConflict) {
			return Experiment{}, fmt.Errorf("experiment: key %q is taken: %w", e.Key, err)
		}
		return Experiment{}, fmt.Errorf("experiment: create: %w", err)
	}
	return e, nil
}

// Get returns the experiment with id.
func (s *Store) Get(ctx context.Context, id string) (Experiment, error) {
	return s.one(ctx, `SELECT definition FROM experiments WHERE id = ?`, id)
}

// ByKey returns the experiment with key.
func (s *Store) ByKey(ctx context.Context, key string) (Experiment, error) {
	return s.one(ctx, `SELECT definition FROM experiments WHERE exp_key = ?`, key)
}

func (s *Store) one(ctx context.Context, q, arg string) (Experiment, error) {
	var def string
	if err := s.db.QueryRow(ctx, q, arg).Scan(&def); err != nil {
		if errors.Is(err, statestore.ErrNotFound) {
			return Experiment{}, ErrNotFound
		}
		return Experiment{}, fmt.Errorf("experiment: get: %w", err)
	}
	return decodeDef(def)
}

func decodeDef(def string) (Experiment, error) {
	var e Experiment
	if err := json.Unmarshal([]byte(def), &e); err != nil {
		return Experiment{}, fmt.Errorf("experiment: decode stored definition: %w", err)
	}
	return e, nil
}

// List returns up to limit experiments (see statestore.Limit) in creation
// order after cursor, and the next page's cursor ("" after the last).
func (s *Store) List(ctx context.Context, limit int, cursor string) ([]Experiment, string, error) {
	limit = statestore.Limit(limit)
	after, err := statestore.DecodeCursor(cursor, 1)
	if err != nil {
		return nil, "", err
	}
	q, args := `SELECT id, definition FROM experiments`, []any{}
	if after != nil {
		q += ` WHERE id > ?`
		args = append(args, after[0])
	}
	q += ` ORDER BY id LIMIT ?`
	args = append(args, limit+1)
	rows, err := s.db.Query(ctx, q, args...)
	if err != nil {
		return nil, "", fmt.Errorf("experiment: list: %w", err)
	}
	defer rows.Close()
	out := []Experiment{}
	for rows.Next() {
		var id, def string
		if err := rows.Scan(&id, &def); err != nil {
			return nil, "", fmt.Errorf("experiment: list: %w", err)
		}
		e, err := decodeDef(def)
		if err != nil {
			return nil, "", err
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("experiment: list: %w", err)
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		next = statestore.EncodeCursor(out[limit-1].ID)
	}
	return out, next, nil
}
