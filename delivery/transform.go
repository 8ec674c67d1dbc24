package delivery

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"tandem/audience"
	"tandem/event"
	"tandem/governance"
)

// passes reports whether e passes the destination's filter.
func passes(f governance.Filter, e *event.Event) bool {
	if len(f.Types) > 0 && !slices.Contains(f.Types, e.Type) {
		return false
	}
	if len(f.Events) > 0 && (e.Type != "track" || !slices.Contains(f.Events, e.Name)) {
		return false
	}
	if len(f.Sources) > 0 && !slices.Contains(f.Sources, e.SourceID) {
		return false
	}
	return true
}

// forAudience reports whether e may go to destination destID as far as
// audiences are concerned: an audience's membership events (package
// audience) go only to the destinations the audience names; every other
// event passes.
func forAudience(destID string, e *event.Event) bool {
	if e.SourceID != audience.SourceID {
		return true
	}
	var v struct {
		Properties struct {
			Destinations []string `json:"destinations"`
		} `json:"properties"`
	}
	if json.Unmarshal(e.Raw, &v) != nil {
		return false
	}
	return slices.Contains(v.Properties.Destinations, destID)
}

// render returns the JSON a destination receives for e: the event as the
// client sent it, with tandem's view of messageId, type, timestamp,
// receivedAt and sourceId set, writeKey removed, then the mapping rules
// applied in order.
func render(e *event.Event, rules []governance.MappingRule) (json.RawMessage, error) {
	m := map[string]any{}
	dec := json.NewDecoder(bytes.NewReader(e.Raw))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("event %s: %w", e.MessageID, err)
	}
	delete(m, "writeKey")
	m["messageId"] = e.MessageID
	m["type"] = e.Type
	if !e.Timestamp.IsZero() {
		m["timestamp"] = e.Timestamp.UTC().Format(time.RFC3339Nano)
	}
	m["receivedAt"] = e.ReceivedAt.UTC().Format(time.RFC3339Nano)
	m["sourceId"] = e.SourceID
	for _, r := range rules {
		apply(m, r)
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("event %s: %w", e.MessageID, err)
	}
	return b, nil
}

// apply runs one mapping rule on m. A path that does not exist is left
// alone.
func apply(m map[string]any, r governance.MappingRule) {
	parent, last := walk(m, r.Field, false)
	if parent == nil {
		return
	}
	v, ok := parent[last]
	if !ok {
		return
	}
	switch r.Action {
	case governance.MapDrop:
		delete(parent, last)
	case governance.MapHash:
		parent[last] = hashValue(v)
	case governance.MapRename:
		delete(parent, last)
		if to, tl := walk(m, r.To, true); to != nil {
			to[tl] = v
		}
	}
}

// walk returns the object holding path's last segment, creating objects
// on the way when create is set.
func walk(m map[string]any, path string, create bool) (map[string]any, string) {
	parts := strings.Split(path, ".")
	cur := m
	for _, p := range parts[:len(parts)-1] {
		next, ok := cur[p].(map[string]any)
		if !ok {
			if !create {
				return nil, ""
			}
			if _, exists := cur[p]; exists {
				return nil, "" // a non-object is in the way: leave it
			}
			next = map[string]any{}
			cur[p] = next
		}
		cur = next
	}
	return cur, parts[len(parts)-1]
}

// hashValue is the lower-case hex SHA-256 of a string's bytes or a
// number's or boolean's JSON text; null stays null; objects and arrays are
// hashed as their JSON.
func hashValue(v any) any {
	var text []byte
	switch x := v.(type) {
	case nil:
		return nil
	case string:
		text = []byte(x)
	case json.Number:
		text = []byte(x.String())
	default:
		text, _ = json.Marshal(x)
	}
	sum := sha256.Sum256(text)
	return hex.EncodeToString(sum[:])
}

// profileKey is the key of the event's ordered lane: its userId, or its
// anonymousId when it has none.
func profileKey(e *event.Event) string {
	if e.UserID != "" {
		return "u:" + e.UserID
	}
	return "a:" + e.AnonymousID
}
