package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"tandem/statestore"
)

// System is the actor of entries tandem writes on its own behalf (the
// bootstrap admin, say), where no user acted.
const System = "system"

// Genesis is the prevHash of the first entry.
const Genesis = "0000000000000000000000000000000000000000000000000000000000000000"

// Limits on an entry's text fields (longer values are refused: an entry
// names ids and actions, not documents).
const (
	MaxFieldLen    = 500     // bytes of actor, action, resource, subject, change request
	MaxPayloadSize = 1 << 20 // bytes of Before or After, as JSON
)

// Record is what a caller asks [Log.Append] to write; the log adds the
// sequence number, the time and the hashes.
type Record struct {
	Actor         string // user id, or [System]
	Action        string // e.g. "source.create", "profile.read"
	Resource      string // what was acted on, e.g. "source/src_…", "events"
	Subject       string // the profile a read or change concerns, if any
	ChangeRequest string // the change request this change carries out, if any
	Before        any    // state before a change (JSON-marshalled), nil for none
	After         any    // state after a change, or details of a read, nil for none
}

// Entry is one link of the chain.
type Entry struct {
	Seq           int64           `json:"seq"`
	At            time.Time       `json:"at"`
	Actor         string          `json:"actor"`
	Action        string          `json:"action"`
	Resource      string          `json:"resource"`
	Subject       string          `json:"subject,omitempty"`
	ChangeRequest string          `json:"changeRequest,omitempty"`
	Before        json.RawMessage `json:"before"` // canonical JSON, null for none
	After         json.RawMessage `json:"after"`
	PrevHash      string          `json:"prevHash"`
	Hash          string          `json:"hash"`
}

// Log is the audit log in a state store. It is safe for concurrent use,
// also by several processes sharing one PostgreSQL database.
type Log struct {
	db  *statestore.DB
	now func() time.Time
}

// New returns the Log kept in db, whose [Migrations] must be applied.
func New(db *statestore.DB) *Log {
	return &Log{db: db, now: time.Now}
}

// Migrations returns the package's schema migrations, for
// [statestore.DB.Migrate].
func Migrations() []statestore.Migration {
	return []statestore.Migration{{
		Package: "audit",
		Version: 1,
		SQL: `
CREATE TABLE audit_head (
	id BIGINT PRIMARY KEY,
	seq BIGINT NOT NULL,
	hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '` + Genesis + `');
CREATE TABLE audit_entries (
	seq BIGINT PRIMARY KEY,
	at BIGINT NOT NULL,
	actor TEXT NOT NULL,
	action TEXT NOT NULL,
	resource TEXT NOT NULL,
	subject TEXT NOT NULL,
	change_request TEXT NOT NULL,
	before_json TEXT NOT NULL,
	after_json TEXT NOT NULL,
	prev_hash TEXT NOT NULL,
	hash TEXT NOT NULL
);
CREATE INDEX audit_entries_actor ON audit_entries (actor, seq);
CREATE INDEX audit_entries_subject ON audit_entries (subject, seq);
CREATE INDEX audit_entries_at ON audit_entries (at);
`,
	}}
}

// Append writes recs as consecutive entries, in one transaction, and
// returns them. It fails (writing nothing) when a record lacks an actor,
// action or resource, or is too large.
func (l *Log) Append(ctx context.Context, recs ...Record) ([]Entry, error) {
	var out []Entry
	err := l.db.Tx(ctx, func(tx *statestore.Tx) error {
		var err error
		out, err = l.AppendTx(ctx, tx, recs...)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// AppendTx is [Log.Append] inside the caller's transaction, so that a
// change and its entry commit (or roll back) together. The transaction
// holds the chain's head until it ends: keep it short.
func (l *Log) AppendTx(ctx context.Context, tx *statestore.Tx, recs ...Record) ([]Entry, error) {
	if len(recs) == 0 {
		return nil, nil
	}
	at := l.now().UTC()
	entries := make([]Entry, len(recs))
	for i, r := range recs {
		e, err := prepare(r)
		if err != nil {
			return nil, fmt.Errorf("audit: append: %w", err)
		}
		e.At = at
		entries[i] = e
	}
	// Taking the head row serialises appenders: PostgreSQL makes a
	// concurrent transaction wait on the row's lock, and re-reads it once
	// that one commits.
	var last int64
	var prev string
	if err := tx.QueryRow(ctx, `UPDATE audit_head SET seq = seq + ? WHERE id = 1 RETURNING seq, hash`, len(recs)).
		Scan(&last, &prev); err != nil {
		return nil, fmt.Errorf("audit: append: take the head: %w", err)
	}
	seq := last - int64(len(recs))
	for i := range entries {
		e := &entries[i]
		seq++
		e.Seq = seq
		e.PrevHash = prev
		e.Hash = Hash(*e)
		prev = e.Hash
		if _, err := tx.Exec(ctx, `INSERT INTO audit_entries
			(seq, at, actor, action, resource, subject, change_request, before_json, after_json, prev_hash, hash)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			e.Seq, statestore.TimeToDB(e.At), e.Actor, e.Action, e.Resource, e.Subject, e.ChangeRequest,
			string(e.Before), string(e.After), e.PrevHash, e.Hash); err != nil {
			return nil, fmt.Errorf("audit: append %d: %w", e.Seq, err)
		}
	}
	if _, err := tx.Exec(ctx, `UPDATE audit_head SET hash = ? WHERE id = 1`, prev); err != nil {
		return nil, fmt.Errorf("audit: append: move the head: %w", err)
	}
	return entries, nil
}

// prepare checks a record, makes its text storable (valid UTF-8 without
// NUL, which PostgreSQL refuses) and encodes its payloads canonically.
func prepare(r Record) (Entry, error) {
	for _, f := range []*string{&r.Actor, &r.Action, &r.Resource, &r.Subject, &r.ChangeRequest} {
		*f = strings.ReplaceAll(strings.ToValidUTF8(*f, "\uFFFD"), "\x00", "\uFFFD")
	}
	for _, f := range []struct{ name, v string }{{"actor", r.Actor}, {"action", r.Action}, {"resource", r.Resource},
		{"subject", r.Subject}, {"changeRequest", r.ChangeRequest}} {
		if len(f.v) > MaxFieldLen {
			return Entry{}, fmt.Errorf("%s is longer than %d bytes", f.name, MaxFieldLen)
		}
	}
	if r.Actor == "" || r.Action == "" || r.Resource == "" {
		return Entry{}, errors.New("actor, action and resource are required")
	}
	before, err := payload(r.Before)
	if err != nil {
		return Entry{}, fmt.Errorf("before: %w", err)
	}
	after, err := payload(r.After)
	if err != nil {
		return Entry{}, fmt.Errorf("after: %w", err)
	}
	return Entry{Actor: r.Actor, Action: r.Action, Resource: r.Resource, Subject: r.Subject,
		ChangeRequest: r.ChangeRequest, Before: before, After: after}, nil
}

// payload returns v as canonical JSON (object keys sorted, no space, no
// HTML escaping) with sensitive keys redacted; "null" for nil.
func payload(v any) (json.RawMessage, error) {
	if v == nil {
		return json.RawMessage("null"), nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var generic any
	if err := dec.Decode(&generic); err != nil {
		return nil, err
	}
	out, err := canonical(redact(generic))
	if err != nil {
		return nil, err
	}
	if len(out) > MaxPayloadSize {
		return nil, fmt.Errorf("larger than %d bytes", MaxPayloadSize)
	}
	return out, nil
}

// canonical marshals v without HTML escaping or a trailing newline; maps
// come out with sorted keys.
func canonical(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// sensitiveKeys are object keys (lower case, without '_' and '-') whose
// values never go into an entry in clear.
var sensitiveKeys = map[string]bool{
	"token": true, "writekey": true, "secret": true, "password": true, "passwd": true, "apikey": true,
	"authorization": true, "accesstoken": true, "refreshtoken": true, "clientsecret": true,
	"email": true, "phone": true, "phonenumber": true, "mobile": true, "firstname": true, "lastname": true,
	"address": true, "ip": true,
}

func sensitive(key string) bool {
	k := strings.ToLower(strings.NewReplacer("_", "", "-", "").Replace(key))
	return sensitiveKeys[k]
}

// redact replaces the values of sensitive keys, at any depth.
func redact(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			if sensitive(k) {
				if s, ok := val.(string); ok {
					x[k] = Digest(s)
				} else if val != nil {
					x[k] = "[redacted]"
				}
				continue
			}
			x[k] = redact(val)
		}
	case []any:
		for i := range x {
			x[i] = redact(x[i])
		}
	}
	return v
}

// Digest is how a secret or a piece of contact data may appear in an
// entry: "sha256:" and the first 16 hex digits of its SHA-256, enough to
// tell values apart and to check a known value against, not to read one
// back. The empty string stays empty.
func Digest(s string) string {
	if s == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(sum[:8])
}

// Hash returns the hex SHA-256 of e's canonical encoding: the JSON array
//
//	["tandem.audit.v1", seq, at, actor, action, resource, subject,
//	 changeRequest, before, after, prevHash]
//
// with at in Unix nanoseconds, before and after as their canonical JSON
// (null for none: a nil Before or After) and strings JSON-encoded without HTML escaping. e.Hash
// itself is not part of it.
func Hash(e Entry) string {
	before, after := e.Before, e.After
	if before == nil {
		before = json.RawMessage("null")
	}
	if after == nil {
		after = json.RawMessage("null")
	}
	var buf bytes.Buffer
	buf.WriteString(`["tandem.audit.v1",`)
	buf.WriteString(strconv.FormatInt(e.Seq, 10))
	buf.WriteByte(',')
	buf.WriteString(strconv.FormatInt(statestore.TimeToDB(e.At), 10))
	for _, s := range []string{e.Actor, e.Action, e.Resource, e.Subject, e.ChangeRequest} {
		buf.WriteByte(',')
		buf.Write(quote(s))
	}
	buf.WriteByte(',')
	buf.Write(before)
	buf.WriteByte(',')
	buf.Write(after)
	buf.WriteByte(',')
	buf.Write(quote(e.PrevHash))
	buf.WriteByte(']')
	sum := sha256.Sum256(buf.Bytes())
	return hex.EncodeToString(sum[:])
}

// quote encodes s for the hash. Text that is not valid UTF-8 (which
// Append never stores, so it was written by someone else) is encoded as
// its bytes: JSON would turn every invalid byte into the same U+FFFD, and
// such an edit would keep the hash.
func quote(s string) []byte {
	if !utf8.ValidString(s) {
		return []byte(`{"invalidUTF8":"` + hex.EncodeToString([]byte(s)) + `"}`)
	}
	b, _ := canonical(s) // a valid string always marshals
	return b
}

// Filter selects entries for [Log.List]; empty fields select everything.
type Filter struct {
	Actor    string
	Subject  string
	Action   string
	Resource string
	From, To time.Time // at >= From, at < To
}

// List returns up to limit entries (see [statestore.Limit]) matching f in
// sequence order, starting after cursor ("" for the first page), and the
// cursor of the next page, "" after the last. A bad cursor gives an error
// matching [statestore.ErrBadCursor].
func (l *Log) List(ctx context.Context, f Filter, limit int, cursor string) ([]Entry, string, error) {
	limit = statestore.Limit(limit)
	vals, err := statestore.DecodeCursor(cursor, 1)
	if err != nil {
		return nil, "", fmt.Errorf("audit: list: %w", err)
	}
	var where []string
	var args []any
	if vals != nil {
		after, err := strconv.ParseInt(vals[0], 10, 64)
		if err != nil {
			return nil, "", fmt.Errorf("audit: list: %w", &statestore.FieldError{Field: "cursor", Message: "not a cursor this list issued", Err: statestore.ErrBadCursor})
		}
		where = append(where, "seq > ?")
		args = append(args, after)
	}
	for _, c := range []struct{ col, v string }{{"actor", f.Actor}, {"subject", f.Subject}, {"action", f.Action}, {"resource", f.Resource}} {
		if c.v != "" {
			where = append(where, c.col+" = ?")
			args = append(args, c.v)
		}
	}
	if !f.From.IsZero() {
		where = append(where, "at >= ?")
		args = append(args, statestore.TimeToDB(f.From))
	}
	if !f.To.IsZero() {
		where = append(where, "at < ?")
		args = append(args, statestore.TimeToDB(f.To))
	}
	q := `SELECT ` + columns + ` FROM audit_entries`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	q += ` ORDER BY seq LIMIT ?`
	args = append(args, limit+1)
	entries, err := l.query(ctx, q, args...)
	if err != nil {
		return nil, "", fmt.Errorf("audit: list: %w", err)
	}
	next := ""
	if len(entries) > limit {
		entries = entries[:limit]
		next = statestore.EncodeCursor(strconv.FormatInt(entries[limit-1].Seq, 10))
	}
	return entries, next, nil
}

const columns = `seq, at, actor, action, resource, subject, change_request, before_json, after_json, prev_hash, hash`

func (l *Log) query(ctx context.Context, q string, args ...any) ([]Entry, error) {
	rows, err := l.db.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	entries := []Entry{}
	for rows.Next() {
		var e Entry
		var at int64
		var before, after string
		if err := rows.Scan(&e.Seq, &at, &e.Actor, &e.Action, &e.Resource, &e.Subject, &e.ChangeRequest,
			&before, &after, &e.PrevHash, &e.Hash); err != nil {
			return nil, err
		}
		e.At = statestore.TimeFromDB(at)
		e.Before, e.After = displayJSON(before), displayJSON(after)
		entries = append(entries, e)
	}
	return entries, rows.Err()
}

// displayJSON is a stored payload as JSON: itself, or (when someone wrote
// something else into the table) as a JSON string, so that a tampered
// entry can still be listed.
func displayJSON(s string) json.RawMessage {
	if json.Valid([]byte(s)) {
		return json.RawMessage(s)
	}
	return quote(s)
}
