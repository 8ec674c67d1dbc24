package identity

// The identifier and trait extraction of base 11fe318, kept as the oracle
// the faster Observe is compared with (observe_same_test.go).

import (
	"encoding/binary"
	"encoding/json"
	"slices"
	"time"

	"tandem/event"
)

// oldObservation is what one event tells identity resolution.
type oldObservation struct {
	ids    []string // normalised, non-blocked identifiers, in priority order (see sortIdents)
	key    string   // the event store's profile key of the event; set only when traits is not empty
	at     time.Time
	source string
	msg    string
	traits map[string]json.RawMessage // profile traits the event sets
}

// oldRawFields are the parts of an event's JSON that identity reads: its
// traits, its context's traits and its context's external ids.
type oldRawFields struct {
	traits, ctxTraits map[string]json.RawMessage
	oldExternalIDs    []oldExternalID
}

type oldExternalID struct {
	id  []byte // the value as written; nil when absent
	typ string
}

// oldReadFields lifts the fields identity reads out of raw, an event's JSON
// object, with the event package's scanner instead of a decoder: what
// encoding/json would read into
//
//	struct {
//		Traits  map[string]json.RawMessage `json:"traits"`
//		Context struct {
//			Traits      map[string]json.RawMessage `json:"traits"`
//			ExternalIDs []struct {
//				ID   json.RawMessage `json:"id"`
//				Type string          `json:"type"`
//			} `json:"externalIds"`
//		} `json:"context"`
//	}
//
// with its rules: keys match ignoring case and after unescaping, a repeated
// object merges into the map the one before filled, null empties a map or
// slice and leaves a struct or string alone, and any of these fields of
// another JSON type fails the whole reading (ok false). Trait values alias
// raw.
func oldReadFields(raw []byte) (f oldRawFields, ok bool) {
	ok = true
	// traitsInto reads the object val into *m, as a decoder fills a map.
	traitsInto := func(m *map[string]json.RawMessage, val []byte) {
		switch val[0] {
		case 'n':
			*m = nil
		case '{':
			if *m == nil {
				*m = map[string]json.RawMessage{}
			}
			event.Members(val, func(k, v []byte) {
				if key, good := event.String(k); good {
					(*m)[key] = v
				}
			})
		default:
			ok = false
		}
	}
	readExternalIDs := func(val []byte) {
		switch val[0] {
		case 'n':
			f.oldExternalIDs = nil
			return
		case '[':
		default:
			ok = false
			return
		}
		f.oldExternalIDs = f.oldExternalIDs[:0]
		event.Elements(val, func(el []byte) {
			var x oldExternalID
			switch el[0] {
			case 'n':
			case '{':
				event.Members(el, func(k, v []byte) {
					switch {
					case event.KeyIs(k, "id"):
						x.id = v
					case event.KeyIs(k, "type"):
						if v[0] == 'n' {
							return
						}
						typ, good := event.String(v)
						if !good {
							ok = false
						}
						x.typ = typ
					}
				})
			default:
				ok = false
			}
			f.oldExternalIDs = append(f.oldExternalIDs, x)
		})
	}
	valid := event.Members(raw, func(k, v []byte) {
		switch {
		case event.KeyIs(k, "traits"):
			traitsInto(&f.traits, v)
		case event.KeyIs(k, "context"):
			switch v[0] {
			case 'n':
			case '{':
				event.Members(v, func(k, v []byte) {
					switch {
					case event.KeyIs(k, "traits"):
						traitsInto(&f.ctxTraits, v)
					case event.KeyIs(k, "externalIds"):
						readExternalIDs(v)
					}
				})
			default:
				ok = false
			}
		}
	})
	return f, ok && valid
}

// oldObserver extracts the identifiers and traits of the events of one
// batch ([Store.Observe]) one after the other. It builds an event's
// identifiers in a buffer it reuses, and remembers the identifier of each
// user id and anonymous id it has read: a batch holds several events of
// most people, and an event costs no allocation for identifiers read
// before in the batch.
type oldObserver struct {
	c *compiled
	// sent maps a user id (0) and an anonymous id (1) as sent to its
	// identifier, "" when it is none (blocked); nil: not kept.
	sent [2]map[string]string
	ids  []string // the last event's identifiers
}

func newOldObserver(c *compiled) *oldObserver {
	return &oldObserver{c: c, sent: [2]map[string]string{{}, {}}}
}

// observe is [compiled.observe]; the identifiers it returns are valid
// until its next call.
func (ob *oldObserver) observe(e *event.Event) oldObservation {
	c := ob.c
	o := oldObservation{at: e.Timestamp, source: e.SourceID, msg: e.MessageID}
	ob.ids = ob.ids[:0]
	add := func(typ, raw string) {
		if _, known := c.rank[typ]; !known {
			return
		}
		v, ok := c.normalize(typ, raw)
		if !ok || c.isBlocked(raw, v) {
			return
		}
		ob.ids = append(ob.ids, Ident(typ, v))
	}
	// addSent is add of a user id (which 0) or an anonymous id (1),
	// remembered by its value as sent.
	addSent := func(which int, typ, raw string) {
		if raw == "" {
			return // never an identifier
		}
		m := ob.sent[which]
		if id, ok := m[raw]; ok {
			if id != "" {
				ob.ids = append(ob.ids, id)
			}
			return
		}
		n := len(ob.ids)
		add(typ, raw)
		if m != nil {
			id := ""
			if len(ob.ids) > n {
				id = ob.ids[n]
			}
			m[raw] = id
		}
	}
	addSent(0, UserID, e.UserID)
	addSent(1, AnonymousID, e.AnonymousID)
	if e.Type == "alias" {
		// previousId is the id the person had before; most often the
		// anonymous id of the visit before sign-up (see docs/identity.md).
		addSent(1, AnonymousID, e.PreviousID)
	}
	raw := e.Raw
	if mentionsTraits(raw) {
		if f, ok := oldReadFields(raw); ok {
			oldFromTraits(c, f.ctxTraits, add)
			for _, x := range f.oldExternalIDs {
				if x.typ != UserID && x.typ != AnonymousID {
					if s, ok := scalar(x.id); ok {
						add(x.typ, s)
					}
				}
			}
			// The context's traits, then (identify) the event's own over
			// them; the map is the event's alone, so it is the result.
			o.traits = f.ctxTraits
			switch e.Type {
			case "identify":
				oldFromTraits(c, f.traits, add)
				if o.traits == nil {
					o.traits = f.traits
				} else {
					for k, v := range f.traits {
						o.traits[k] = v
					}
				}
			case "group":
				g, _ := json.Marshal(struct {
					ID     string                     `json:"id"`
					Traits map[string]json.RawMessage `json:"traits,omitempty"`
				}{e.GroupID, f.traits})
				if o.traits == nil {
					o.traits = map[string]json.RawMessage{}
				}
				o.traits["group"] = g
			}
			if len(o.traits) == 0 {
				o.traits = nil
			}
		}
	} else if e.Type == "group" && e.GroupID != "" {
		g, _ := json.Marshal(struct {
			ID string `json:"id"`
		}{e.GroupID})
		o.traits = map[string]json.RawMessage{"group": g}
	}
	o.ids = c.sortIdents(ob.ids)
	ob.ids = o.ids
	if len(o.traits) > 0 {
		// The profile key the traits are stored under: the Ident of the
		// user id or else the anonymous id as sent (eventstore.ProfileKey),
		// the identifier made of it when that is the same string.
		which, typ, raw := 0, UserID, e.UserID
		if raw == "" {
			which, typ, raw = 1, AnonymousID, e.AnonymousID
		}
		if id := ob.sent[which][raw]; len(id) == len(typ)+1+len(raw) && id[len(typ)+1:] == raw {
			o.key = id
		} else {
			o.key = Ident(typ, raw)
		}
	}
	return o
}

// fromTraits adds the identifiers of every configured type (other than
// user_id and anonymous_id, which come from the event's own fields) found
// among traits.
func oldFromTraits(c *compiled, traits map[string]json.RawMessage, add func(typ, raw string)) {
	if len(traits) == 0 {
		return
	}
	for _, t := range c.rules.Types {
		if t.Name == UserID || t.Name == AnonymousID {
			continue
		}
		if v, ok := traits[t.Name]; ok {
			if s, ok := scalar(v); ok {
				add(t.Name, s)
			}
		}
	}
}

// Observe reads a batch of events for [Store.ResolveObserved].
func oldObserve(s *Store, events []event.Event) *Observed {
	ob := newOldObserver(s.c())
	// The batch's distinct sets of identifiers, each with its earliest
	// event, found by the set's identifiers (length-prefixed) rather than
	// by their hash: hashed once a set, not once an event.
	var links []link
	linkOf := map[string]int{}
	var key []byte
	seen := map[string][2]int64{}
	traits := map[traitKey]traitVal{}
	for i := range events {
		o := ob.observe(&events[i])
		at := o.at.UnixNano()
		for k, v := range o.traits {
			tk := traitKey{o.key, k}
			if old, ok := traits[tk]; !ok || at > old.at || (at == old.at && o.msg > old.msg) {
				traits[tk] = traitVal{v, at, o.msg}
			}
		}
		if len(o.ids) == 0 {
			continue
		}
		key = key[:0]
		for _, id := range o.ids {
			if r, ok := seen[id]; !ok {
				seen[id] = [2]int64{at, at}
			} else if at < r[0] || at > r[1] {
				seen[id] = [2]int64{min(r[0], at), max(r[1], at)}
			}
			key = binary.AppendUvarint(key, uint64(len(id)))
			key = append(key, id...)
		}
		l := link{ids: o.ids, at: o.at, source: o.source, msg: o.msg, typ: events[i].Type}
		if j, ok := linkOf[string(key)]; !ok {
			l.ids = slices.Clone(o.ids) // o.ids is the oldObserver's buffer
			linkOf[string(key)] = len(links)
			links = append(links, l)
		} else if l.less(links[j]) < 0 {
			l.ids = links[j].ids
			links[j] = l
		}
	}
	sets := make(map[setKey]link, len(links))
	for _, l := range links {
		var h setKey
		h, key = appendSetHash(key, l.ids)
		if old, ok := sets[h]; !ok || l.less(old) < 0 {
			sets[h] = l
		}
	}
	return &Observed{sets: sets, seen: seen, traits: traits}
}
