package identity

import (
	"hash/maphash"
	"sync"
)

// setCache remembers, for identifier sets already stored, their earliest
// event, so that a batch skips the state store for sets it repeats (most
// events: a known visitor's page views). It holds at most size entries in
// two generations: when the young one fills, the old one is dropped. Memory
// therefore stays bounded however many events are processed.
//
// It is safe to share between nodes' views of a database: a set's earliest
// event only ever moves earlier, so a remembered one that is no later than
// an event's still proves the event changes nothing.
type setCache struct {
	mu         sync.Mutex
	young, old map[setKey]cachedLink
	half       int
	seed       maphash.Seed
}

type cachedLink struct {
	at    int64
	event uint64 // hash of the event's source and messageId
}

func newSetCache(size int) *setCache {
	return &setCache{young: map[setKey]cachedLink{}, old: map[setKey]cachedLink{}, half: max(size/2, 1), seed: maphash.MakeSeed()}
}

// uncovered returns the sets of a batch the cache does not show stored
// with an event no later than theirs, and the same links sorted (one lock
// for the whole batch).
func (c *setCache) uncovered(sets map[setKey]link) (map[setKey]link, []link) {
	out := make(map[setKey]link, len(sets))
	var pending []link
	c.mu.Lock()
	for h, l := range sets {
		if !c.coversLocked(h, l) {
			out[h] = l
			pending = append(pending, l)
		}
	}
	c.mu.Unlock()
	return out, pending
}

// putAll is put of every set (after the commit that stored them).
func (c *setCache) putAll(sets map[setKey]link) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for h, l := range sets {
		c.putLocked(h, l)
	}
}

func (c *setCache) eventHash(l link) uint64 {
	var h maphash.Hash
	h.SetSeed(c.seed)
	h.WriteString(l.source)
	h.WriteByte(0)
	h.WriteString(l.msg)
	return h.Sum64()
}

// coversLocked reports whether the set h is known with an event no later
// than l's, so that l changes nothing.
func (c *setCache) coversLocked(h setKey, l link) bool {
	e, ok := c.young[h]
	if !ok {
		if e, ok = c.old[h]; !ok {
			return false
		}
	}
	at := l.at.UnixNano()
	return e.at < at || (e.at == at && e.event == c.eventHash(l))
}

// putLocked records that set h's earliest event is no later than l. Calls
// are made with stored facts only (after the commit).
func (c *setCache) putLocked(h setKey, l link) {
	at := l.at.UnixNano()
	var e cachedLink
	if old, ok := c.young[h]; ok {
		if old.at <= at {
			return
		}
		e = cachedLink{at: at, event: c.eventHash(l)}
	} else if old, ok := c.old[h]; ok && old.at <= at {
		e = old
	} else {
		e = cachedLink{at: at, event: c.eventHash(l)}
	}
	if len(c.young) >= c.half {
		c.old = c.young
		c.young = make(map[setKey]cachedLink, c.half)
	}
	c.young[h] = e
}

// seenCache remembers, for identifiers, a range of event times that their
// stored first/last-seen times are known to cover, so that a batch only
// widens the identifiers whose range it actually widens: a returning
// visitor's events usually fall inside what is stored already. Like
// setCache it holds at most size entries in two generations.
//
// Stored ranges only ever widen, so a remembered range (even one
// remembered before another node widened it further) never claims more
// than is stored.
//
// Identifiers are remembered by 128 bits of two keyed hashes, not as
// strings: no pointers for the garbage collector to follow, and a
// collision (which would skip one seen-time update) has a chance of about
// 2^-90 among 200,000 entries.
type seenCache struct {
	mu         sync.Mutex
	young, old map[identKey][2]int64
	half       int
	s1, s2     maphash.Seed
}

type identKey [2]uint64

func newSeenCache(size int) *seenCache {
	return &seenCache{young: map[identKey][2]int64{}, old: map[identKey][2]int64{}, half: max(size/2, 1), s1: maphash.MakeSeed(), s2: maphash.MakeSeed()}
}

func (c *seenCache) key(id string) identKey {
	return identKey{maphash.String(c.s1, id), maphash.String(c.s2, id)}
}

func (c *seenCache) get(k identKey) ([2]int64, bool) {
	if r, ok := c.young[k]; ok {
		return r, true
	}
	r, ok := c.old[k]
	return r, ok
}

// uncovered returns the identifiers of seen whose ranges the cache does
// not show stored (one lock for the whole batch).
func (c *seenCache) uncovered(seen map[string][2]int64) map[string][2]int64 {
	out := make(map[string][2]int64, len(seen))
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, r := range seen {
		if k, ok := c.get(c.key(id)); !ok || k[0] > r[0] || k[1] < r[1] {
			out[id] = r
		}
	}
	return out
}

// putAll is put of every identifier's range (after the commit that
// stored them).
func (c *seenCache) putAll(seen map[string][2]int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, r := range seen {
		c.putLocked(c.key(id), r)
	}
}

// putLocked records that the stored range of the identifier of key holds
// r (after the commit that stored it).
func (c *seenCache) putLocked(key identKey, r [2]int64) {
	if k, ok := c.get(key); ok {
		r = [2]int64{min(k[0], r[0]), max(k[1], r[1])}
	}
	if _, ok := c.young[key]; !ok && len(c.young) >= c.half {
		c.old = c.young
		c.young = make(map[identKey][2]int64, c.half)
	}
	c.young[key] = r
}

// clear forgets every set (after an erasure removed sets from the store).
func (c *setCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.young, c.old = map[setKey]cachedLink{}, map[setKey]cachedLink{}
}

// clear forgets every range (after an erasure removed identifiers).
func (c *seenCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.young, c.old = map[identKey][2]int64{}, map[identKey][2]int64{}
}
