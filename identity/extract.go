package identity

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math/bits"
	"slices"
	"strconv"
	"strings"
	"time"

	"tandem/event"
)

// observation is what one event tells identity resolution.
type observation struct {
	ids    []string // normalised, non-blocked identifiers, in priority order (see sortIdents)
	key    string   // the event store's profile key of the event; set only when traits is not empty
	at     time.Time
	source string
	msg    string
	traits map[string]json.RawMessage // profile traits the event sets
}

// rawFields are the parts of an event's JSON that identity reads: its
// traits, its context's traits and its context's external ids.
type rawFields struct {
	traits, ctxTraits map[string]json.RawMessage
	externalIDs       []externalID
}

type externalID struct {
	id  []byte // the value as written; nil when absent
	typ string
}

// readFields lifts the fields identity reads out of raw, an event's JSON
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
func readFields(raw []byte) (f rawFields, ok bool) {
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
			f.externalIDs = nil
			return
		case '[':
		default:
			ok = false
			return
		}
		f.externalIDs = f.externalIDs[:0]
		event.Elements(val, func(el []byte) {
			var x externalID
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
			f.externalIDs = append(f.externalIDs, x)
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

// mentionsTraits reports whether raw holds the string "traits" or
// "externalIds" (quotes included): only then is it read for traits. Both
// end in s", which a word-wide test finds 7 bytes a step (JSON is full
// of quotes, so a search for either string's first byte stops often).
func mentionsTraits(raw []byte) bool {
	const (
		ones  = 0x0101010101010101
		highs = 0x8080808080808080
	)
	at := func(j int) bool { // raw[j] is a quote after an s
		return (j >= 7 && string(raw[j-7:j+1]) == `"traits"`) || (j >= 12 && string(raw[j-12:j+1]) == `"externalIds"`)
	}
	i := 0
	for ; i+8 <= len(raw); i += 7 {
		w := binary.LittleEndian.Uint64(raw[i:])
		q, s := w^('"'*ones), w^('s'*ones)
		// Bit 7 of byte k: byte k is a quote and byte k-1 an s (the
		// zero-byte test may flag a byte above a true match: checked).
		m := ((q - ones) &^ q & highs) & (((s - ones) &^ s & highs) << 8)
		for ; m != 0; m &= m - 1 {
			if j := i + bits.TrailingZeros64(m)/8; raw[j] == '"' && raw[j-1] == 's' && at(j) {
				return true
			}
		}
	}
	// The pairs the words did not cover: quotes from byte i+1 on.
	for j := max(i+1, 1); j < len(raw); j++ {
		if raw[j] == '"' && raw[j-1] == 's' && at(j) {
			return true
		}
	}
	return false
}

// observe extracts an event's identifiers and traits.
func (c *compiled) observe(e *event.Event) observation {
	ob := observer{c: c}
	return ob.observe(e)
}

// observer extracts the identifiers and traits of the events of one
// batch ([Store.Observe]) one after the other. It builds an event's
// identifiers in a buffer it reuses, and remembers the identifier of each
// user id and anonymous id it has read: a batch holds several events of
// most people, and an event costs no allocation for identifiers read
// before in the batch.
type observer struct {
	c *compiled
	// sent maps a user id (0) and an anonymous id (1) as sent to its
	// identifier, "" when it is none (blocked); nil: not kept.
	sent [2]map[string]string
	ids  []string // the last event's identifiers
}

func newObserver(c *compiled) *observer {
	return &observer{c: c, sent: [2]map[string]string{{}, {}}}
}

// observe is [compiled.observe]; the identifiers it returns are valid
// until its next call.
func (ob *observer) observe(e *event.Event) observation {
	return ob.observeAs(e, mentionsTraits(e.Raw))
}

// observeAs is observe of an event whose raw JSON mentions traits (or
// external ids) as [mentionsTraits] tells: false, and its identifiers are
// only those of its user id, anonymous id and (alias) previous id.
func (ob *observer) observeAs(e *event.Event, mentions bool) observation {
	c := ob.c
	o := observation{at: e.Timestamp, source: e.SourceID, msg: e.MessageID}
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
	if mentions {
		if f, ok := readFields(raw); ok {
			c.fromTraits(f.ctxTraits, add)
			for _, x := range f.externalIDs {
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
				c.fromTraits(f.traits, add)
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
func (c *compiled) fromTraits(traits map[string]json.RawMessage, add func(typ, raw string)) {
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

// scalar returns a JSON string or number as text.
func scalar(v json.RawMessage) (string, bool) {
	v = bytes.TrimSpace(v)
	if len(v) == 0 {
		return "", false
	}
	if v[0] == '"' {
		return event.String(v)
	}
	if _, err := strconv.ParseFloat(string(v), 64); err == nil {
		return string(v), true
	}
	return "", false
}

// sortIdents orders identifiers by type priority (highest first), then
// value, without duplicates.
func (c *compiled) sortIdents(ids []string) []string {
	slices.SortFunc(ids, func(a, b string) int {
		ta, _ := splitIdent(a)
		tb, _ := splitIdent(b)
		if d := c.rank[ta] - c.rank[tb]; d != 0 {
			return d
		}
		return strings.Compare(a, b)
	})
	return slices.Compact(ids)
}

// Identifiers returns the identifiers e carries ("type:value",
// normalised, blocked ones left out), as identity resolution reads them:
// its user id and anonymous id, and those of its traits and external ids.
func (s *Store) Identifiers(e *event.Event) []string { return s.c().observe(e).ids }

// Normalize returns value as identifiers of type typ are kept (an e-mail
// address lower-cased, a phone number in E.164), false when it is not a
// valid one or typ is no identifier type.
func (s *Store) Normalize(typ, value string) (string, bool) {
	if _, known := s.c().rank[typ]; !known {
		return "", false
	}
	return s.c().normalize(typ, value)
}
