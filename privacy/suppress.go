package privacy

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"strings"
	"sync"
	"time"

	"tandem/event"
	"tandem/statestore"
)

// Suppression after an erasure
//
// An erasure removes the person's data, but their device or their account
// may go on sending events. So that these do not build the person up again
// under the same identifiers, the erasure keeps a keyed hash of each of
// their identifiers (HMAC-SHA256 of "type:value" with the installation
// secret "suppression", 32 random bytes kept in the state store and equal
// on every node): not the identifier, which cannot be read back from it
// without the secret, but enough to recognise it. The pipeline drops an
// event carrying one of them (its userId, anonymousId, or an identifier
// in its traits), and delivery does not send one that was queued before
// the erasure. A person who comes back and asks to be known again (signs
// up anew and agrees) is taken off the list by a privacy officer
// (DELETE /api/v1/privacy/suppressions, naming the identifier).

// SuppressionSecret names the installation secret the hashes are keyed
// with (see access.Store.Secret).
const SuppressionSecret = "suppression"

// suppressionMigration is the list of suppressed identifiers, by keyed
// hash, with the erasure request that added each.
var suppressionMigration = statestore.Migration{Package: "privacy_suppression", Version: 1, SQL: `
CREATE TABLE privacy_suppressions (
	hash TEXT NOT NULL PRIMARY KEY,
	request_id TEXT NOT NULL,
	created_at BIGINT NOT NULL
)`}

// IdentifierReader reads identifiers as the identity graph keeps them
// (identity.Store implements it).
type IdentifierReader interface {
	// Identifiers returns the identifiers an event carries, "type:value",
	// normalised.
	Identifiers(e *event.Event) []string
	// Normalize returns value as identifiers of type typ are kept.
	Normalize(typ, value string) (string, bool)
}

// Suppressions is the list of the identifiers of erased people. It keeps
// the list in memory too, so that the check per event costs nothing while
// the list is empty and a map lookup per identifier otherwise;
// [Suppressions.Load] reads what other nodes added.
type Suppressions struct {
	db   *statestore.DB
	ids  IdentifierReader
	macs sync.Pool // of hash.Hash: HMAC-SHA256 with the key, reset and reused
	mu   sync.RWMutex
	set  map[[sha256.Size]byte]struct{}
}

// NewSuppressions returns the list over db (migrated with [Migrations]),
// hashing with key (the installation secret [SuppressionSecret]) and
// reading events' identifiers with ids; call Load before use.
func NewSuppressions(db *statestore.DB, key []byte, ids IdentifierReader) *Suppressions {
	key = bytes.Clone(key)
	s := &Suppressions{db: db, ids: ids, set: map[[sha256.Size]byte]struct{}{}}
	s.macs.New = func() any { return hmac.New(sha256.New, key) }
	return s
}

// sum is the keyed hash of identifier "type:value".
func (s *Suppressions) sum(ident string) (out [sha256.Size]byte) {
	m := s.macs.Get().(hash.Hash)
	m.Reset()
	m.Write([]byte(ident))
	m.Sum(out[:0])
	s.macs.Put(m)
	return out
}

// Hash is the keyed hash of identifier "type:value" kept on the list, in
// hex.
func (s *Suppressions) Hash(ident string) string {
	h := s.sum(ident)
	return hex.EncodeToString(h[:])
}

// Load reads the list from the state store (what this node and others
// added).
func (s *Suppressions) Load(ctx context.Context) error {
	rows, err := s.db.Query(ctx, `SELECT hash FROM privacy_suppressions`)
	if err != nil {
		return fmt.Errorf("privacy: load suppressions: %w", err)
	}
	defer rows.Close()
	set := map[[sha256.Size]byte]struct{}{}
	for rows.Next() {
		var h string
		if err := rows.Scan(&h); err != nil {
			return fmt.Errorf("privacy: load suppressions: %w", err)
		}
		var k [sha256.Size]byte
		if b, err := hex.DecodeString(h); err == nil && len(b) == len(k) {
			copy(k[:], b)
			set[k] = struct{}{}
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("privacy: load suppressions: %w", err)
	}
	s.mu.Lock()
	s.set = set
	s.mu.Unlock()
	return nil
}

// RunLoads reloads the list every interval until ctx ends, so that a node
// learns of erasures carried out by another.
func (s *Suppressions) RunLoads(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_ = s.Load(ctx) // the next tick tries again
		}
	}
}

// Add puts identifiers ("type:value", normalised) on the list for the
// erasure request requestID.
func (s *Suppressions) Add(ctx context.Context, requestID string, idents []string) error {
	hashes := make([][sha256.Size]byte, 0, len(idents))
	for _, id := range idents {
		hashes = append(hashes, s.sum(id))
	}
	now := statestore.TimeToDB(time.Now())
	err := s.db.Tx(ctx, func(tx *statestore.Tx) error {
		for _, h := range hashes {
			if _, err := tx.Exec(ctx, `INSERT INTO privacy_suppressions (hash, request_id, created_at) VALUES (?, ?, ?) ON CONFLICT (hash) DO NOTHING`,
				hex.EncodeToString(h[:]), requestID, now); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("privacy: add suppressions: %w", err)
	}
	s.mu.Lock()
	for _, h := range hashes {
		s.set[h] = struct{}{}
	}
	s.mu.Unlock()
	return nil
}

// Remove takes identifier typ:value off the list (the person asked to be
// known again); removed is false when it was not on it. A value that is
// not a valid identifier of its type is a *FieldError.
func (s *Suppressions) Remove(ctx context.Context, typ, value string) (removed bool, err error) {
	v, ok := s.ids.Normalize(typ, value)
	if !ok {
		return false, &FieldError{Field: "identity", Message: "not a valid identifier of a known type"}
	}
	h := s.sum(typ + ":" + v)
	res, err := s.db.Exec(ctx, `DELETE FROM privacy_suppressions WHERE hash = ?`, hex.EncodeToString(h[:]))
	if err != nil {
		return false, fmt.Errorf("privacy: remove suppression: %w", err)
	}
	n, _ := res.RowsAffected()
	s.mu.Lock()
	delete(s.set, h)
	s.mu.Unlock()
	return n > 0, nil
}

// Len is the number of identifiers on the list (as last loaded or
// added on this node).
func (s *Suppressions) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.set)
}

// Suppressed reports whether e carries an identifier on the list: its
// userId, anonymousId or an identifier in its traits; for an event with
// neither id field set (a refused event held as its raw bytes), the
// userId and anonymousId of its JSON.
func (s *Suppressions) Suppressed(e *event.Event) bool {
	s.mu.RLock()
	empty := len(s.set) == 0
	s.mu.RUnlock()
	if empty {
		return false
	}
	var ids []string
	if e.UserID == "" && e.AnonymousID == "" && len(e.Raw) > 0 {
		var f struct {
			UserID      any `json:"userId"`
			AnonymousID any `json:"anonymousId"`
		}
		if json.Unmarshal(e.Raw, &f) == nil {
			c := *e
			c.UserID, _ = f.UserID.(string)
			c.AnonymousID, _ = f.AnonymousID.(string)
			e = &c
		}
	}
	if e.UserID != "" || e.AnonymousID != "" || len(e.Raw) > 0 {
		ids = s.ids.Identifiers(e)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, id := range ids {
		if _, ok := s.set[s.sum(id)]; ok {
			return true
		}
	}
	return false
}

// Identifier returns identifier typ:value as the list keeps it
// (normalised), or "" when it is not a valid one.
func (s *Suppressions) Identifier(typ, value string) string {
	v, ok := s.ids.Normalize(typ, strings.TrimSpace(value))
	if !ok {
		return ""
	}
	return typ + ":" + v
}
