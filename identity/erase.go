package identity

import (
	"context"
	"errors"
	"fmt"

	"tandem/statestore"
)

// ErrShared is returned by Erase when the profile's identity graph
// component also holds other profiles (kept apart by a rule or an
// unmerge): erasing it would need the graph's links rewritten, which
// Erase does not do yet.
var ErrShared = errors.New("identity: the profile shares its identity graph component with other profiles")

// Erase deletes profile id (following a merge) from the identity graph,
// for a data subject's erasure (GDPR Art. 17): its component (identifiers
// and links), its identifiers' seen times and traits, the decisions
// (unmerges) naming them and its profile ids. It returns the profile's
// event keys (see [Store.EventKeys]) as they were, for the event store's
// erasure. The in-memory caches are cleared, so later events of the same
// identifiers are resolved anew. A profile that does not exist is
// [ErrNotFound].
func (s *Store) Erase(ctx context.Context, id string) (keys []string, err error) {
	err = s.tx(ctx, func(tx *statestore.Tx) error {
		keys = nil
		cur, comp, g, err := s.locate(ctx, tx, id, true)
		if err != nil {
			return err
		}
		if len(g.pids) > 1 {
			return ErrShared
		}
		ids := s.c().sortIdents(g.members(cur))
		var anon []string
		for _, ident := range ids {
			switch typ, _ := splitIdent(ident); typ {
			case UserID:
				keys = append(keys, ident)
			case AnonymousID:
				anon = append(anon, ident)
			}
		}
		keys = append(keys, anon...)
		all := g.idents
		for _, q := range []string{
			`DELETE FROM identity_components WHERE component = ?`,
			`DELETE FROM identity_idents WHERE component = ?`,
		} {
			if _, err := tx.Exec(ctx, q, comp); err != nil {
				return fmt.Errorf("identity: erase: %w", err)
			}
		}
		for start := 0; start < len(all); start += chunk {
			part := all[start:min(start+chunk, len(all))]
			in := inList(len(part))
			for _, q := range []string{
				`DELETE FROM identity_traits WHERE ekey IN ` + in,
				`DELETE FROM identity_decisions WHERE a IN ` + in,
				`DELETE FROM identity_decisions WHERE b IN ` + in,
				`DELETE FROM identity_profile_ids WHERE anchor IN ` + in,
			} {
				if _, err := tx.Exec(ctx, q, anys(part)...); err != nil {
					return fmt.Errorf("identity: erase: %w", err)
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.cache.clear()
	s.seen.clear()
	return keys, nil
}
