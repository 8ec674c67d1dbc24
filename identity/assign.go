package identity

import (
	"context"
	"errors"
	"fmt"
)

// ProfileFor returns the id of the profile that holds the identifier
// typ:value (value as sent) with known true; when no profile holds it yet,
// the id that the profile an event with this identifier alone starts will
// get, with known false. Experiments assign variations by it, so a
// visitor assigned before their first event is stored keeps the
// variation once it is.
func (s *Store) ProfileFor(ctx context.Context, typ, value string) (id string, known bool, err error) {
	if _, ok := s.c().rank[typ]; !ok {
		return "", false, &FieldError{Field: "identifier", Message: fmt.Sprintf("unknown identifier type %q; the configured types are %s", typ, s.typeNames())}
	}
	v, ok := s.c().normalize(typ, value)
	if !ok || s.c().isBlocked(value, v) {
		return "", false, &FieldError{Field: typ, Message: "not an identifier this node resolves (invalid or blocked)"}
	}
	pid, err := s.profileOf(ctx, Ident(typ, v))
	switch {
	case err == nil:
		return pid, true, nil
	case errors.Is(err, ErrNotFound):
		return s.pid(Ident(typ, v)), false, nil
	}
	return "", false, err
}
