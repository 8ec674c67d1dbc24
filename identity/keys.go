package identity

import "context"

// EventKeys returns the id profile id is known under now (following a
// merge) and the event store keys of its events: one per user_id and
// anonymous_id identifier, as [eventstore.ProfileKey] makes them, user ids
// first. It is lighter than [Store.Profile] (no traits are read); the
// consent store (package privacy) combines per-key state with it. It fails
// with [ErrNotFound].
func (s *Store) EventKeys(ctx context.Context, id string) (current string, keys []string, err error) {
	cur, _, g, err := s.locate(ctx, s.db, id, false)
	if err != nil {
		return "", nil, err
	}
	ids := s.c().sortIdents(g.members(cur))
	if len(ids) == 0 {
		return "", nil, ErrNotFound
	}
	var anon []string
	for _, ident := range ids {
		// The identifier is the key, as for traits (see Profile).
		switch typ, _ := splitIdent(ident); typ {
		case UserID:
			keys = append(keys, ident)
		case AnonymousID:
			anon = append(anon, ident)
		}
	}
	return cur, append(keys, anon...), nil
}
