package audience

import (
	"context"
	"fmt"

	"tandem/statestore"
)

// Erase deletes what the computed traits, the lifecycle stages and the
// audience memberships keep of a data subject, for an erasure: the rows
// of the event keys keys (their user ids and anonymous ids, see
// eventstore.ProfileKey) and the memberships of profile (when not ""). It
// returns how many rows it deleted.
func (s *Store) Erase(ctx context.Context, keys []string, profile string) (int64, error) {
	var n int64
	err := s.db.Tx(ctx, func(tx *statestore.Tx) error {
		n = 0
		del := func(q string, arg string) error {
			res, err := tx.Exec(ctx, q, arg)
			if err != nil {
				return err
			}
			d, _ := res.RowsAffected()
			n += d
			return nil
		}
		for _, k := range keys {
			for _, t := range []string{"audience_trait_bucket", "audience_trait_seen", "audience_trait_point", "audience_stage"} {
				if err := del(`DELETE FROM `+t+` WHERE ekey = ?`, k); err != nil {
					return err
				}
			}
		}
		if profile != "" {
			return del(`DELETE FROM audience_member WHERE profile_id = ?`, profile)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("audience: erase: %w", err)
	}
	return n, nil
}
