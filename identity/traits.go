package identity

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"tandem/statestore"
)

// An event key's traits are one row of identity_key_traits: every trait
// name with its latest value (by event time, ties by messageId) and the
// event that set it. One row per key, not one per trait, so that an
// identify call carrying several traits writes one row, and a trait that
// a batch does not move leaves the row as it is.

// traitsFormat is the first byte of an encoded trait row.
const traitsFormat = 1

var errBadTraits = errors.New("identity: stored traits are corrupt")

// keyTrait is one trait of an event key as stored.
type keyTrait struct {
	name  string
	value []byte // JSON
	at    int64
	msg   string
}

// later reports whether v, set by an event at (at, msg), wins over what
// was stored: a later event, or the same time and a greater messageId.
func (t keyTrait) later(at int64, msg string) bool {
	return at > t.at || (at == t.at && msg > t.msg)
}

// encodeTraits writes traits (sorted by name) compactly.
func encodeTraits(ts []keyTrait) []byte {
	n := 2
	for _, t := range ts {
		n += len(t.name) + len(t.value) + len(t.msg) + 14
	}
	b := make([]byte, 0, n)
	b = append(b, traitsFormat)
	b = binary.AppendUvarint(b, uint64(len(ts)))
	for _, t := range ts {
		b = appendString(b, t.name)
		b = binary.AppendUvarint(b, uint64(len(t.value)))
		b = append(b, t.value...)
		b = binary.AppendVarint(b, t.at)
		b = appendString(b, t.msg)
	}
	return b
}

// decodeTraits reads what encodeTraits wrote.
func decodeTraits(b []byte) ([]keyTrait, error) {
	if len(b) == 0 || b[0] != traitsFormat {
		return nil, errBadTraits
	}
	d := decoder{b: b[1:]}
	n := d.count()
	ts := make([]keyTrait, 0, n)
	for range n {
		var t keyTrait
		t.name = d.string()
		t.value = []byte(d.string())
		t.at = d.varint()
		t.msg = d.string()
		ts = append(ts, t)
	}
	if d.bad || len(d.b) != 0 || !slices.IsSortedFunc(ts, func(a, b keyTrait) int { return strings.Compare(a.name, b.name) }) {
		return nil, errBadTraits
	}
	return ts, nil
}

// mergeTraits sets into stored (sorted by name) each trait of batch that
// is later than the stored one; changed is false when none was.
func mergeTraits(stored []keyTrait, batch []keyTrait) (out []keyTrait, changed bool) {
	out = stored
	for _, t := range batch {
		i, found := slices.BinarySearchFunc(out, t.name, func(s keyTrait, name string) int { return strings.Compare(s.name, name) })
		if found {
			if !out[i].later(t.at, t.msg) {
				continue
			}
			if !changed {
				out = slices.Clone(out) // stored may be shared
			}
			out[i] = t
		} else {
			if !changed {
				out = slices.Clone(out)
			}
			out = slices.Insert(out, i, t)
		}
		changed = true
	}
	return out, changed
}

// traitRowsPerStatement bounds the rows of one statement: a row holds
// every trait of its key.
const traitRowsPerStatement = 100

// storeTraits writes the traits of a batch whose values are later than
// the stored ones: it reads the rows of the batch's keys (locking them on
// PostgreSQL), merges, and writes only the rows that changed. A key
// another node stores first meanwhile makes the insert fail with
// [statestore.ErrConflict], and the transaction runs again.
func (s *Store) storeTraits(ctx context.Context, tx *statestore.Tx, traits map[traitKey]traitVal) error {
	if len(traits) == 0 {
		return nil
	}
	byKey := make(map[string][]keyTrait, len(traits))
	for k, v := range traits {
		byKey[k.ekey] = append(byKey[k.ekey], keyTrait{name: k.name, value: v.value, at: v.at, msg: v.msg})
	}
	keys := make([]string, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	stored, err := s.keyTraits(ctx, tx, keys, true)
	if err != nil {
		return err
	}
	var inserts, updates []any
	for _, k := range keys {
		batch := byKey[k]
		slices.SortFunc(batch, func(a, b keyTrait) int { return strings.Compare(a.name, b.name) })
		old, ok := stored[k]
		merged, changed := mergeTraits(old, batch)
		if !changed {
			continue
		}
		if ok {
			updates = append(updates, k, encodeTraits(merged))
		} else {
			inserts = append(inserts, k, encodeTraits(merged))
		}
	}
	for start, end := range tx.Parts(len(inserts)/2, traitRowsPerStatement) {
		if _, err := tx.ExecCached(ctx, `INSERT INTO identity_key_traits (ekey, data) VALUES `+placeholders(end-start, 2), inserts[2*start:2*end]...); err != nil {
			return fmt.Errorf("identity: store traits: %w", err)
		}
	}
	for start, end := range tx.Parts(len(updates)/2, traitRowsPerStatement) {
		// Rows read (and on PostgreSQL locked) above: a multi-row update.
		if _, err := tx.ExecCached(ctx, `INSERT INTO identity_key_traits (ekey, data) VALUES `+placeholders(end-start, 2)+`
			ON CONFLICT (ekey) DO UPDATE SET data = excluded.data`, updates[2*start:2*end]...); err != nil {
			return fmt.Errorf("identity: store traits: %w", err)
		}
	}
	return nil
}

// keyTraits reads the stored traits of keys (sorted), locking their rows
// on PostgreSQL when lock is set.
func (s *Store) keyTraits(ctx context.Context, q querier, keys []string, lock bool) (map[string][]keyTrait, error) {
	out := make(map[string][]keyTrait, len(keys))
	suffix := ""
	if lock && s.pg {
		suffix = ` ORDER BY ekey FOR UPDATE`
	}
	for start, end := range q.Parts(len(keys), chunk) {
		part := keys[start:end]
		rows, err := q.QueryCached(ctx, `SELECT ekey, data FROM identity_key_traits WHERE ekey IN `+inList(len(part))+suffix, anys(part)...)
		if err != nil {
			return nil, fmt.Errorf("identity: read traits: %w", err)
		}
		for rows.Next() {
			var k string
			var data []byte
			if err := rows.Scan(&k, &data); err != nil {
				rows.Close()
				return nil, fmt.Errorf("identity: read traits: %w", err)
			}
			ts, err := decodeTraits(data)
			if err != nil {
				rows.Close()
				return nil, err
			}
			out[k] = ts
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("identity: read traits: %w", err)
		}
	}
	return out, nil
}

// profileTraits returns the latest value of each trait over keys.
func (s *Store) profileTraits(ctx context.Context, keys []string) (map[string]json.RawMessage, error) {
	slices.Sort(keys)
	stored, err := s.keyTraits(ctx, s.db, keys, false)
	if err != nil {
		return nil, err
	}
	out := map[string]json.RawMessage{}
	best := map[string]keyTrait{}
	for _, k := range keys {
		for _, t := range stored[k] {
			if b, ok := best[t.name]; ok && !b.later(t.at, t.msg) {
				continue
			}
			best[t.name] = t
			out[t.name] = json.RawMessage(t.value)
		}
	}
	return out, nil
}

// upgradeTraits moves traits stored a row per trait (identity_traits,
// schema versions 1 and 2) into a row per event key, and drops the old
// table; once, in one transaction, a thousand keys at a time.
func (s *Store) upgradeTraits(ctx context.Context) error {
	return s.db.Tx(ctx, func(tx *statestore.Tx) error {
		res, err := tx.Exec(ctx, `INSERT INTO identity_settings (name, value) VALUES ('traits_format', '2') ON CONFLICT (name) DO NOTHING`)
		if err != nil {
			return fmt.Errorf("identity: upgrade traits: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return err // done already (by this node or another)
		}
		after := ""
		for {
			var keys []string
			rows, err := tx.Query(ctx, `SELECT DISTINCT ekey FROM identity_traits WHERE ekey > ? ORDER BY ekey LIMIT 1000`, after)
			if err != nil {
				return fmt.Errorf("identity: upgrade traits: %w", err)
			}
			for rows.Next() {
				var k string
				if err := rows.Scan(&k); err != nil {
					rows.Close()
					return fmt.Errorf("identity: upgrade traits: %w", err)
				}
				keys = append(keys, k)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return fmt.Errorf("identity: upgrade traits: %w", err)
			}
			if len(keys) == 0 {
				break
			}
			after = keys[len(keys)-1]
			byKey := map[string][]keyTrait{}
			rows, err = tx.Query(ctx, `SELECT ekey, name, value, event_time, message_id FROM identity_traits WHERE ekey IN `+inList(len(keys)), anys(keys)...)
			if err != nil {
				return fmt.Errorf("identity: upgrade traits: %w", err)
			}
			for rows.Next() {
				var k, value string
				var t keyTrait
				if err := rows.Scan(&k, &t.name, &value, &t.at, &t.msg); err != nil {
					rows.Close()
					return fmt.Errorf("identity: upgrade traits: %w", err)
				}
				t.value = []byte(value)
				byKey[k] = append(byKey[k], t)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return fmt.Errorf("identity: upgrade traits: %w", err)
			}
			args := make([]any, 0, 2*len(keys))
			for _, k := range keys {
				ts := byKey[k]
				slices.SortFunc(ts, func(a, b keyTrait) int { return strings.Compare(a.name, b.name) })
				args = append(args, k, encodeTraits(ts))
			}
			for start := 0; start < len(keys); start += traitRowsPerStatement {
				end := min(start+traitRowsPerStatement, len(keys))
				if _, err := tx.Exec(ctx, `INSERT INTO identity_key_traits (ekey, data) VALUES `+placeholders(end-start, 2), args[2*start:2*end]...); err != nil {
					return fmt.Errorf("identity: upgrade traits: %w", err)
				}
			}
		}
		if _, err := tx.Exec(ctx, `DROP TABLE identity_traits`); err != nil {
			return fmt.Errorf("identity: upgrade traits: %w", err)
		}
		return nil
	})
}
