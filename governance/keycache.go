package governance

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"sync"
	"time"
)

// WriteKeyTTL is how long [Store.LookupWriteKey] keeps an answer. A change
// to a source made through the same Store (a decision, a new source) takes
// effect at once; one made by another node, through another Store over the
// same database, within WriteKeyTTL.
const WriteKeyTTL = 2 * time.Second

// maxCachedKeys bounds the cache against floods of random keys.
const maxCachedKeys = 100000

// keyCache holds the recent answers of SourceByWriteKey by the key's hash.
type keyCache struct {
	mu  sync.Mutex
	ttl time.Duration
	m   map[[32]byte]cachedKey
}

type cachedKey struct {
	keyHash [32]byte
	src     Source
	err     error // nil or ErrUnknownKey
	until   time.Time
}

// LookupWriteKey is [Store.SourceByWriteKey] for the collection hot path:
// answers (an unknown key's too) are kept for [WriteKeyTTL], so most
// requests do not touch the state store. Store errors are not kept.
func (s *Store) LookupWriteKey(ctx context.Context, key string) (Source, error) {
	c := s.keys
	h := sha256.Sum256([]byte(key))
	now := time.Now()
	c.mu.Lock()
	e, ok := c.m[h]
	ttl := c.ttl
	c.mu.Unlock()
	if ok && now.Before(e.until) && subtle.ConstantTimeCompare(e.keyHash[:], h[:]) == 1 {
		return e.src, e.err
	}
	src, err := s.SourceByWriteKey(ctx, key)
	if err != nil && !errors.Is(err, ErrUnknownKey) {
		return Source{}, err // a store hiccup should not stick
	}
	e = cachedKey{keyHash: h, src: src, err: err, until: now.Add(ttl)}
	c.mu.Lock()
	if len(c.m) >= maxCachedKeys {
		clear(c.m)
	}
	c.m[h] = e
	c.mu.Unlock()
	return e.src, e.err
}

// SetWriteKeyTTL changes how long [Store.LookupWriteKey] keeps an answer
// (default [WriteKeyTTL]); 0 keeps none. Set it before the Store is used.
func (s *Store) SetWriteKeyTTL(d time.Duration) {
	s.keys.mu.Lock()
	s.keys.ttl = d
	clear(s.keys.m)
	s.keys.mu.Unlock()
}

// forgetKeys drops every kept answer: called after each change to a
// source, so that the change takes effect at once on this node.
func (s *Store) forgetKeys() {
	s.keys.mu.Lock()
	clear(s.keys.m)
	s.keys.mu.Unlock()
}
