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
	young, old map[string]cachedLink
	half       int
	seed       maphash.Seed
}

type cachedLink struct {
	at    int64
	event uint64 // hash of the event's source and messageId
}

func newSetCache(size int) *setCache {
	return &setCache{young: map[string]cachedLink{}, old: map[string]cachedLink{}, half: max(size/2, 1), seed: maphash.MakeSeed()}
}

func (c *setCache) eventHash(l link) uint64 {
	return maphash.String(c.seed, l.source+"\x00"+l.msg)
}

// covers reports whether the set h is known with an event no later than
// l's, so that l changes nothing.
func (c *setCache) covers(h string, l link) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.young[h]
	if !ok {
		if e, ok = c.old[h]; !ok {
			return false
		}
	}
	at := l.at.UnixNano()
	return e.at < at || (e.at == at && e.event == c.eventHash(l))
}

// put records that set h's earliest event is no later than l. Calls are
// made with stored facts only (after the commit).
func (c *setCache) put(h string, l link) {
	c.mu.Lock()
	defer c.mu.Unlock()
	at := l.at.UnixNano()
	e := cachedLink{at: at, event: c.eventHash(l)}
	if old, ok := c.young[h]; ok {
		if old.at <= at {
			return
		}
	} else if old, ok := c.old[h]; ok && old.at <= at {
		e = old
	}
	if len(c.young) >= c.half {
		c.old = c.young
		c.young = make(map[string]cachedLink, c.half)
	}
	c.young[h] = e
}
