package policy

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"tandem/statestore"
)

// SettingKinds are the kinds of change whose subject is one of the
// node's settings rather than a tool: the approved value is kept in the
// state store ([Store.PutSetting]) and overrides the config file's on
// every node.
var SettingKinds = []Kind{IdentityRules, LifecycleStages, Retention, ConsentDefaults}

// Setting is the approved value of one setting kind.
type Setting struct {
	Kind  Kind            `json:"kind"`
	Value json.RawMessage `json:"value"`
	// Version counts the values put, from 1: a node that applied version
	// n has nothing to do until it reads a higher one.
	Version   int64     `json:"version"`
	Change    string    `json:"change"` // the change request that approved it; "" for a direct write
	UpdatedBy string    `json:"updatedBy"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// PutSetting keeps value (JSON) as the approved value of setting kind k,
// put by user id by, through change (its id, "" for a direct write).
func (s *Store) PutSetting(ctx context.Context, k Kind, value json.RawMessage, by, change string) (Setting, error) {
	now := time.Now().UTC().Round(0)
	var set Setting
	err := s.db.Tx(ctx, func(tx *statestore.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO policy_settings (kind, value, version, change_id, updated_by, updated_at)
			VALUES (?, ?, 1, ?, ?, ?)
			ON CONFLICT (kind) DO UPDATE SET value = excluded.value, version = policy_settings.version + 1,
				change_id = excluded.change_id, updated_by = excluded.updated_by, updated_at = excluded.updated_at`,
			string(k), string(value), change, by, statestore.TimeToDB(now)); err != nil {
			return err
		}
		var err error
		set, err = scanSetting(tx.QueryRow(ctx, `SELECT `+settingColumns+` FROM policy_settings WHERE kind = ?`, string(k)))
		return err
	})
	if err != nil {
		return Setting{}, fmt.Errorf("policy: put setting %s: %w", k, err)
	}
	return set, nil
}

// Settings returns every setting kind's approved value, none for a kind
// never changed through the API.
func (s *Store) Settings(ctx context.Context) (map[Kind]Setting, error) {
	rows, err := s.db.Query(ctx, `SELECT `+settingColumns+` FROM policy_settings`)
	if err != nil {
		return nil, fmt.Errorf("policy: settings: %w", err)
	}
	defer rows.Close()
	out := map[Kind]Setting{}
	for rows.Next() {
		set, err := scanSetting(rows)
		if err != nil {
			return nil, fmt.Errorf("policy: settings: %w", err)
		}
		out[set.Kind] = set
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("policy: settings: %w", err)
	}
	return out, nil
}

const settingColumns = `kind, value, version, change_id, updated_by, updated_at`

func scanSetting(r scanner) (Setting, error) {
	var set Setting
	var kind, value string
	var at int64
	if err := r.Scan(&kind, &value, &set.Version, &set.Change, &set.UpdatedBy, &at); err != nil {
		return Setting{}, err
	}
	set.Kind, set.Value, set.UpdatedAt = Kind(kind), json.RawMessage(value), statestore.TimeFromDB(at)
	return set, nil
}
