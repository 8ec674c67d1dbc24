// Package governance keeps tandem's sources — the tools and apps that send
// data — with what the organisation must know about each (owner
// department, purpose, data categories, cost) and its approval state, and
// the record of every approval decision.
//
// A source is created with a write key, returned once; the store keeps only
// its SHA-256 hash, and the collection API finds the source of a request
// with [Store.SourceByWriteKey]. Only an approved source may send data.
//
// Approval: a source starts in the state its creator asks for (the API
// asks the decision rights, package policy), by default [Approved] when
// an admin creates it and [Pending] otherwise, until someone allowed to
// ([access.DecideApprovals]) decides on it with [Store.Decide], or a
// change request is settled ([Store.RecordDecision]). Decisions are
// kept, with who made them, when and why ([Store.ListDecisions]).
//
// The [Store] keeps its tables in a [statestore.DB]; apply [Migrations]
// with [statestore.DB.Migrate] before use.
package governance

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"tandem/access"
	"tandem/event"
	"tandem/statestore"
)

// ErrUnknownKey is returned by [Store.SourceByWriteKey] for a write key no
// source has. The collection API answers 401.
var ErrUnknownKey = errors.New("governance: unknown write key")

// ErrForbidden is matched by errors for an action the acting user's role
// does not allow. The API answers 403.
var ErrForbidden = errors.New("governance: forbidden")

// FieldError is the input error naming the offending JSON field (an alias
// of [statestore.FieldError], shared by all concept packages).
type FieldError = statestore.FieldError

// Approval states of a source.
const (
	Pending   = "pending"   // waiting for a decision; may not send data
	Approved  = "approved"  // may send data
	Rejected  = "rejected"  // may not send data
	Suspended = "suspended" // was approved, stopped for now; may not send data
)

// Decisions, as given to [Store.Decide].
const (
	Approve = "approve"
	Reject  = "reject"
)

// WriteKeyPrefix starts every write key.
const WriteKeyPrefix = "wk_"

// Limits on source fields.
const (
	MaxNameLen         = 100  // characters
	MaxKindLen         = 50   // characters
	MaxOwnerLen        = 100  // characters
	MaxPurposeLen      = 2000 // characters
	MaxDataCategories  = 50   // entries
	MaxDataCategoryLen = 100  // characters per entry
	MaxCommentLen      = 2000 // characters of a decision comment
	MaxAllowedOrigins  = 100  // entries of allowedOrigins
	maxOriginLen       = 300  // characters per allowed origin
)

const (
	maxWriteKeyLen = 256      // longer keys are not looked up
	subjectSource  = "source" // governance_approvals.subject_type of sources
)

// Source is a tool or app that sends data to tandem.
type Source struct {
	ID             string   `json:"id"`
	Name           string   `json:"name"`           // unique, case-insensitively
	Kind           string   `json:"kind"`           // e.g. web, ios, android, server, crm
	Owner          string   `json:"owner"`          // the department that owns it
	Purpose        string   `json:"purpose"`        // why it collects data
	DataCategories []string `json:"dataCategories"` // e.g. contact, behavioural, payment
	MonthlyCost    float64  `json:"monthlyCost"`    // in the organisation's currency
	Approval       string   `json:"approval"`       // Pending, Approved, Rejected or Suspended
	// AllowedOrigins, when not empty, are the only browser origins
	// (scheme://host[:port], or scheme://*.domain[:port] for its
	// subdomains) whose pages may send with the source's write key.
	AllowedOrigins []string `json:"allowedOrigins"`
	// IPPolicy is what becomes of context.ip before the source's events
	// are written: event.IPTruncate (the default), event.IPDrop or
	// event.IPKeep (docs/privacy.md, minimisation).
	IPPolicy  string    `json:"ipPolicy"`
	CreatedAt time.Time `json:"createdAt"`
	CreatedBy string    `json:"createdBy"` // user id
}

// Decision is one approval decision on a source.
type Decision struct {
	ID        string    `json:"id"`
	SourceID  string    `json:"sourceId"`
	Decision  string    `json:"decision"` // Approve or Reject
	Comment   string    `json:"comment"`
	From      string    `json:"from"` // approval state before
	To        string    `json:"to"`   // approval state after
	By        string    `json:"by"`   // user id
	ByName    string    `json:"byName"`
	DecidedAt time.Time `json:"decidedAt"`
}

// Store keeps sources and approval decisions. Every method that changes a
// source (its approval, its write key) must call forgetKeys after its
// transaction, so [Store.LookupWriteKey] sees the change at once.
type Store struct {
	db    *statestore.DB
	keys  *keyCache
	types DestinationTypes // checks destination configs; see destinations.go
}

// NewStore returns a Store over db, whose [Migrations] must be applied.
// Nodes of one deployment each have their own Store over the shared
// database (see [WriteKeyTTL]).
func NewStore(db *statestore.DB) *Store {
	return &Store{db: db, keys: &keyCache{ttl: WriteKeyTTL, m: map[[32]byte]cachedKey{}}}
}

// Migrations returns the package's schema migrations, for
// [statestore.DB.Migrate]. The approvals table is shared by every kind of
// subject (sources now, destinations later).
func Migrations() []statestore.Migration {
	return []statestore.Migration{{
		Package: "governance",
		Version: 1,
		SQL: `
CREATE TABLE governance_sources (
	id TEXT PRIMARY KEY,
	name TEXT NOT NULL,
	name_key TEXT NOT NULL UNIQUE,
	kind TEXT NOT NULL,
	owner TEXT NOT NULL,
	purpose TEXT NOT NULL,
	data_categories TEXT NOT NULL,
	monthly_cost DOUBLE PRECISION NOT NULL,
	approval TEXT NOT NULL,
	created_at BIGINT NOT NULL,
	created_by TEXT NOT NULL,
	updated_at BIGINT NOT NULL
);
CREATE TABLE governance_write_keys (
	key_hash TEXT PRIMARY KEY,
	source_id TEXT NOT NULL REFERENCES governance_sources (id) ON DELETE CASCADE,
	created_at BIGINT NOT NULL
);
CREATE INDEX governance_write_keys_source ON governance_write_keys (source_id);
CREATE TABLE governance_approvals (
	id TEXT PRIMARY KEY,
	subject_type TEXT NOT NULL,
	subject_id TEXT NOT NULL,
	decision TEXT NOT NULL,
	comment TEXT NOT NULL,
	from_state TEXT NOT NULL,
	to_state TEXT NOT NULL,
	decided_by TEXT NOT NULL,
	decided_by_name TEXT NOT NULL,
	decided_at BIGINT NOT NULL
);
CREATE INDEX governance_approvals_subject ON governance_approvals (subject_type, subject_id, id);
`,
	}, {
		Package: "governance",
		Version: 2,
		SQL:     `ALTER TABLE governance_sources ADD COLUMN allowed_origins TEXT NOT NULL DEFAULT '[]';`,
	}, {
		Package: "governance",
		Version: 3,
		SQL:     `ALTER TABLE governance_sources ADD COLUMN ip_policy TEXT NOT NULL DEFAULT 'truncate';`,
	}}
}

// CreateSource creates a source from s's Name, Kind, Owner, Purpose,
// DataCategories, MonthlyCost, AllowedOrigins and IPPolicy (other fields are set by the store) and
// returns it with its write key, returned only this once.
//
// Its approval state is src.Approval when that is [Approved] or [Pending]
// (the decision rights' answer, see package policy); when empty, a source
// an admin creates starts [Approved] and any other [Pending].
//
// Errors: a *[FieldError] naming the JSON field (name, kind, owner,
// purpose, dataCategories, monthlyCost, allowedOrigins, ipPolicy) for bad input; one matching
// [statestore.ErrConflict] when another source has the same name
// (ignoring case); one matching [ErrForbidden] when by's role may not
// [access.ProposeChanges].
func (s *Store) CreateSource(ctx context.Context, src Source, by access.User) (Source, string, error) {
	if !access.Can(by.Role, access.ProposeChanges) {
		return Source{}, "", fmt.Errorf("%w: role %q may not create sources", ErrForbidden, by.Role)
	}
	approval := initialApproval(src.Approval, by)
	src, err := normalize(src)
	if err != nil {
		return Source{}, "", fmt.Errorf("governance: create source: %w", err)
	}
	key, err := NewWriteKey()
	if err != nil {
		return Source{}, "", fmt.Errorf("governance: create source: %w", err)
	}
	src.ID = statestore.NewID("src")
	src.CreatedAt = time.Now().UTC().Round(0)
	src.CreatedBy = by.ID
	src.Approval = approval
	cats, err := json.Marshal(src.DataCategories)
	if err != nil {
		return Source{}, "", fmt.Errorf("governance: create source: %w", err)
	}
	origins, err := json.Marshal(src.AllowedOrigins)
	if err != nil {
		return Source{}, "", fmt.Errorf("governance: create source: %w", err)
	}
	now := statestore.TimeToDB(src.CreatedAt)
	err = s.db.Tx(ctx, func(tx *statestore.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO governance_sources
			(id, name, name_key, kind, owner, purpose, data_categories, monthly_cost, approval, created_at, created_by, updated_at, allowed_origins, ip_policy)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			src.ID, src.Name, nameKey(src.Name), src.Kind, src.Owner, src.Purpose, string(cats),
			src.MonthlyCost, src.Approval, now, src.CreatedBy, now, string(origins), src.IPPolicy); err != nil {
			if errors.Is(err, statestore.ErrConflict) {
				return fmt.Errorf("a source named %q exists already: %w", src.Name, err)
			}
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO governance_write_keys (key_hash, source_id, created_at) VALUES (?, ?, ?)`,
			hashKey(key), src.ID, now)
		return err
	})
	if err != nil {
		return Source{}, "", fmt.Errorf("governance: create source: %w", err)
	}
	s.forgetKeys()
	return src, key, nil
}

const sourceColumns = `id, name, kind, owner, purpose, data_categories, monthly_cost, approval, created_at, created_by, allowed_origins, ip_policy`

// scanner is *sql.Rows or *statestore.Row.
type scanner interface{ Scan(dest ...any) error }

// scanSource scans the sourceColumns, then extra columns into extra.
func scanSource(r scanner, extra ...any) (Source, error) {
	var src Source
	var cats, origins string
	var created int64
	dest := append([]any{&src.ID, &src.Name, &src.Kind, &src.Owner, &src.Purpose, &cats,
		&src.MonthlyCost, &src.Approval, &created, &src.CreatedBy, &origins, &src.IPPolicy}, extra...)
	if err := r.Scan(dest...); err != nil {
		return Source{}, err
	}
	if err := json.Unmarshal([]byte(cats), &src.DataCategories); err != nil {
		return Source{}, fmt.Errorf("source %s: data categories: %w", src.ID, err)
	}
	if src.DataCategories == nil {
		src.DataCategories = []string{}
	}
	if err := json.Unmarshal([]byte(origins), &src.AllowedOrigins); err != nil {
		return Source{}, fmt.Errorf("source %s: allowed origins: %w", src.ID, err)
	}
	if src.AllowedOrigins == nil {
		src.AllowedOrigins = []string{}
	}
	src.CreatedAt = statestore.TimeFromDB(created)
	return src, nil
}

// GetSource returns the source with id, or an error matching
// [statestore.ErrNotFound].
func (s *Store) GetSource(ctx context.Context, id string) (Source, error) {
	src, err := scanSource(s.db.QueryRow(ctx, `SELECT `+sourceColumns+` FROM governance_sources WHERE id = ?`, id))
	if err != nil {
		return Source{}, fmt.Errorf("governance: get source %q: %w", id, err)
	}
	return src, nil
}

// SourceByRef returns the source whose id is ref or, failing that, whose
// name is ref (ignoring case and surrounding space), or an error matching
// [statestore.ErrNotFound]. Wherever the API takes a source id, it takes a
// name through this.
func (s *Store) SourceByRef(ctx context.Context, ref string) (Source, error) {
	src, err := s.GetSource(ctx, ref)
	if !errors.Is(err, statestore.ErrNotFound) {
		return src, err
	}
	src, err = scanSource(s.db.QueryRow(ctx, `SELECT `+sourceColumns+` FROM governance_sources WHERE name_key = ?`,
		nameKey(strings.TrimSpace(ref))))
	if err != nil {
		return Source{}, fmt.Errorf("governance: no source with id or name %q: %w", ref, err)
	}
	return src, nil
}

// ListSources returns up to limit sources (see [statestore.Limit]) in
// creation order, starting after cursor ("" for the first page), and the
// cursor of the next page, "" after the last. A bad cursor gives a
// *[FieldError] for "cursor".
func (s *Store) ListSources(ctx context.Context, limit int, cursor string) ([]Source, string, error) {
	limit = statestore.Limit(limit)
	after, err := statestore.DecodeCursor(cursor, 1)
	if err != nil {
		return nil, "", fmt.Errorf("governance: list sources: %w", err)
	}
	q := `SELECT ` + sourceColumns + ` FROM governance_sources`
	args := []any{}
	if after != nil {
		q += ` WHERE id > ?`
		args = append(args, after[0])
	}
	q += ` ORDER BY id LIMIT ?`
	args = append(args, limit+1)
	rows, err := s.db.Query(ctx, q, args...)
	if err != nil {
		return nil, "", fmt.Errorf("governance: list sources: %w", err)
	}
	defer rows.Close()
	out := []Source{}
	for rows.Next() {
		src, err := scanSource(rows)
		if err != nil {
			return nil, "", fmt.Errorf("governance: list sources: %w", err)
		}
		out = append(out, src)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("governance: list sources: %w", err)
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		next = statestore.EncodeCursor(out[limit-1].ID)
	}
	return out, next, nil
}

// SourceByWriteKey returns the source whose write key this is, whatever its
// approval state (the caller refuses unapproved sources), or an error
// matching [ErrUnknownKey].
func (s *Store) SourceByWriteKey(ctx context.Context, key string) (Source, error) {
	if key == "" || len(key) > maxWriteKeyLen {
		return Source{}, ErrUnknownKey
	}
	want := hashKey(key)
	var got string
	src, err := scanSource(s.db.QueryRow(ctx, `SELECT `+prefixed("s.", sourceColumns)+`, k.key_hash
		FROM governance_write_keys k JOIN governance_sources s ON s.id = k.source_id
		WHERE k.key_hash = ?`, want), &got)
	if errors.Is(err, statestore.ErrNotFound) {
		return Source{}, ErrUnknownKey
	}
	if err != nil {
		return Source{}, fmt.Errorf("governance: source by write key: %w", err)
	}
	// The lookup was by hash; compare again in constant time.
	if subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
		return Source{}, ErrUnknownKey
	}
	return src, nil
}

// prefixed qualifies each column of a comma-separated list.
func prefixed(p, columns string) string {
	cols := strings.Split(columns, ", ")
	for i := range cols {
		cols[i] = p + cols[i]
	}
	return strings.Join(cols, ", ")
}

// initialApproval is the approval state a new tool starts in: the one
// asked for, if Approved or Pending; else Approved for an admin and
// Pending for anyone else.
func initialApproval(asked string, by access.User) string {
	switch {
	case asked == Approved || asked == Pending:
		return asked
	case by.Role == access.RoleAdmin:
		return Approved
	}
	return Pending
}

// checkDecision checks a decision on a tool's approval before it is
// recorded: the decision is Approve or Reject (it returns the state it
// moves to) and the comment is short enough (returned trimmed).
func checkDecision(decision, comment string) (to, trimmed string, err error) {
	switch decision {
	case Approve:
		to = Approved
	case Reject:
		to = Rejected
	default:
		return "", "", fmt.Errorf("governance: decide: %w",
			&FieldError{Field: "decision", Message: `must be "approve" or "reject"`})
	}
	trimmed = strings.TrimSpace(comment)
	if err := validateText("comment", trimmed, MaxCommentLen, false); err != nil {
		return "", "", fmt.Errorf("governance: decide: %w", err)
	}
	return to, trimmed, nil
}

// Decide records by's decision (Approve or Reject) on source id, with a
// comment, and moves the source to Approved or Rejected. Deciding again is
// allowed (an approved source may later be rejected); every decision is
// kept. Errors: a *[FieldError] for "decision" or "comment"; one matching
// [ErrForbidden] when by's role may not [access.DecideApprovals]; one
// matching [statestore.ErrNotFound] for an unknown source.
func (s *Store) Decide(ctx context.Context, id, decision, comment string, by access.User) (Source, error) {
	if !access.Can(by.Role, access.DecideApprovals) {
		return Source{}, fmt.Errorf("%w: role %q may not decide approvals", ErrForbidden, by.Role)
	}
	return s.RecordDecision(ctx, id, decision, comment, by)
}

// RecordDecision is [Store.Decide] without the check of by's role: it
// records a decision the decision rights reached (package policy: the
// last approval a change request needed, or a rejection), by the user
// whose decision settled it.
func (s *Store) RecordDecision(ctx context.Context, id, decision, comment string, by access.User) (Source, error) {
	to, comment, err := checkDecision(decision, comment)
	if err != nil {
		return Source{}, err
	}
	var src Source
	err = s.db.Tx(ctx, func(tx *statestore.Tx) error {
		var err error
		src, err = scanSource(tx.QueryRow(ctx, `SELECT `+sourceColumns+` FROM governance_sources WHERE id = ?`, id))
		if err != nil {
			return err
		}
		now := time.Now().UTC().Round(0)
		// Conditional on the state read, so that two concurrent deciders
		// (in PostgreSQL) cannot both record the same "from".
		res, err := tx.Exec(ctx, `UPDATE governance_sources SET approval = ?, updated_at = ? WHERE id = ? AND approval = ?`,
			to, statestore.TimeToDB(now), id, src.Approval)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n != 1 {
			return fmt.Errorf("source %s changed concurrently: %w", id, statestore.ErrConflict)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO governance_approvals
			(id, subject_type, subject_id, decision, comment, from_state, to_state, decided_by, decided_by_name, decided_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			statestore.NewID("apr"), subjectSource, id, decision, comment, src.Approval, to,
			by.ID, by.Name, statestore.TimeToDB(now)); err != nil {
			return err
		}
		src.Approval = to
		return nil
	})
	s.forgetKeys() // even on error: the transaction may have committed
	if err != nil {
		return Source{}, fmt.Errorf("governance: decide on source %q: %w", id, err)
	}
	return src, nil
}

// ListDecisions returns the decisions on source id, oldest first, or an
// error matching [statestore.ErrNotFound] for an unknown source.
func (s *Store) ListDecisions(ctx context.Context, id string) ([]Decision, error) {
	var exists int
	if err := s.db.QueryRow(ctx, `SELECT 1 FROM governance_sources WHERE id = ?`, id).Scan(&exists); err != nil {
		return nil, fmt.Errorf("governance: decisions on source %q: %w", id, err)
	}
	rows, err := s.db.Query(ctx, `SELECT id, subject_id, decision, comment, from_state, to_state, decided_by, decided_by_name, decided_at
		FROM governance_approvals WHERE subject_type = ? AND subject_id = ? ORDER BY id`, subjectSource, id)
	if err != nil {
		return nil, fmt.Errorf("governance: decisions on source %q: %w", id, err)
	}
	defer rows.Close()
	out := []Decision{}
	for rows.Next() {
		var d Decision
		var at int64
		if err := rows.Scan(&d.ID, &d.SourceID, &d.Decision, &d.Comment, &d.From, &d.To, &d.By, &d.ByName, &at); err != nil {
			return nil, fmt.Errorf("governance: decisions on source %q: %w", id, err)
		}
		d.DecidedAt = statestore.TimeFromDB(at)
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("governance: decisions on source %q: %w", id, err)
	}
	return out, nil
}

// normalize trims and checks a new source's fields.
func normalize(src Source) (Source, error) {
	src.Name = strings.TrimSpace(src.Name)
	src.Kind = strings.TrimSpace(src.Kind)
	src.Owner = strings.TrimSpace(src.Owner)
	src.Purpose = strings.TrimSpace(src.Purpose)
	if err := validateText("name", src.Name, MaxNameLen, true); err != nil {
		return src, err
	}
	if err := validateText("kind", src.Kind, MaxKindLen, true); err != nil {
		return src, err
	}
	if err := validateText("owner", src.Owner, MaxOwnerLen, true); err != nil {
		return src, err
	}
	if err := validateText("purpose", src.Purpose, MaxPurposeLen, false); err != nil {
		return src, err
	}
	if len(src.DataCategories) > MaxDataCategories {
		return src, &FieldError{Field: "dataCategories", Message: fmt.Sprintf("has more than %d entries", MaxDataCategories)}
	}
	cats := make([]string, 0, len(src.DataCategories))
	seen := make(map[string]bool, len(src.DataCategories))
	for i, c := range src.DataCategories {
		c = strings.TrimSpace(c)
		if err := access.ValidateName("dataCategories", c, MaxDataCategoryLen); err != nil {
			var fe *FieldError
			if errors.As(err, &fe) {
				fe.Message = fmt.Sprintf("entry %d %s", i, fe.Message)
			}
			return src, err
		}
		if !seen[c] {
			seen[c] = true
			cats = append(cats, c)
		}
	}
	src.DataCategories = cats
	origins, err := NormalizeOrigins(src.AllowedOrigins)
	if err != nil {
		return src, err
	}
	src.AllowedOrigins = origins
	if src.IPPolicy, err = normalizeIPPolicy(src.IPPolicy); err != nil {
		return src, err
	}
	if math.IsNaN(src.MonthlyCost) || math.IsInf(src.MonthlyCost, 0) || src.MonthlyCost < 0 {
		return src, &FieldError{Field: "monthlyCost", Message: "must be a number, 0 or more"}
	}
	return src, nil
}

// validateText checks a text field: a required one is a single-line name
// (see access.ValidateName); an optional one (purpose, comment) may span
// lines but may not hold NUL, which PostgreSQL text cannot store.
func validateText(field, value string, max int, required bool) error {
	if required {
		return access.ValidateName(field, value, max)
	}
	switch {
	case strings.IndexByte(value, 0) >= 0:
		return &FieldError{Field: field, Message: "contains a NUL character"}
	case !utf8.ValidString(value):
		return &FieldError{Field: field, Message: "is not valid UTF-8"}
	case utf8.RuneCountInString(value) > max:
		return &FieldError{Field: field, Message: fmt.Sprintf("is longer than %d characters", max)}
	}
	return nil
}

// nameKey is the unique key of a source name: names differing only in case
// are the same source.
func nameKey(name string) string { return strings.ToLower(name) }

// keyEncoding is lower-case base32 without padding.
var keyEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// NewWriteKey returns a new random write key: [WriteKeyPrefix] and 32 random
// bytes from crypto/rand, base32-encoded.
func NewWriteKey() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("governance: new write key: %w", err)
	}
	return WriteKeyPrefix + keyEncoding.EncodeToString(b[:]), nil
}

func hashKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// NormalizeOrigins checks a list of allowed origins and returns it
// normalized: lower case, no trailing slash, no duplicates, never nil.
// Each entry is scheme://host[:port] with scheme http or https, where host
// may start with "*." for every subdomain of a domain; "*" allows every
// origin (as an empty list does). Errors are *[FieldError]s for
// "allowedOrigins".
func NormalizeOrigins(list []string) ([]string, error) {
	if len(list) > MaxAllowedOrigins {
		return nil, &FieldError{Field: "allowedOrigins", Message: fmt.Sprintf("has more than %d entries", MaxAllowedOrigins)}
	}
	out := make([]string, 0, len(list))
	seen := map[string]bool{}
	for i, o := range list {
		o = strings.ToLower(strings.TrimRight(strings.TrimSpace(o), "/"))
		bad := func(why string) error {
			return &FieldError{Field: "allowedOrigins", Message: fmt.Sprintf("entry %d %s", i, why)}
		}
		if len(o) > maxOriginLen {
			return nil, bad(fmt.Sprintf("is longer than %d characters", maxOriginLen))
		}
		if o != "*" {
			scheme, rest, ok := strings.Cut(o, "://")
			if !ok || (scheme != "http" && scheme != "https") {
				return nil, bad("must be an origin like https://shop.example.com (scheme http or https)")
			}
			host := strings.TrimPrefix(rest, "*.")
			if host == "" || strings.ContainsAny(host, "/?#@*\\ \t") || !utf8.ValidString(host) {
				return nil, bad("must be scheme://host[:port] with no path, like https://shop.example.com or https://*.example.com")
			}
			if h, port, hasPort := strings.Cut(host, ":"); hasPort && !strings.HasPrefix(host, "[") {
				if h == "" || port == "" || strings.Trim(port, "0123456789") != "" {
					return nil, bad("has a bad port")
				}
			}
		}
		if !seen[o] {
			seen[o] = true
			out = append(out, o)
		}
	}
	return out, nil
}

// SourcePatch is a change to a source; nil fields stay as they are.
type SourcePatch struct {
	AllowedOrigins *[]string `json:"allowedOrigins,omitempty"`
	DataCategories *[]string `json:"dataCategories,omitempty"`
	IPPolicy       *string   `json:"ipPolicy,omitempty"`
}

// PatchSource returns src with p applied and checked, without storing
// it. Errors: a *[FieldError] for "allowedOrigins", "dataCategories" or
// "ipPolicy".
func PatchSource(src Source, p SourcePatch) (Source, error) {
	if p.IPPolicy != nil {
		policy, err := normalizeIPPolicy(*p.IPPolicy)
		if err != nil {
			return Source{}, err
		}
		src.IPPolicy = policy
	}
	if p.AllowedOrigins != nil {
		origins, err := NormalizeOrigins(*p.AllowedOrigins)
		if err != nil {
			return Source{}, err
		}
		src.AllowedOrigins = origins
	}
	if p.DataCategories != nil {
		src.DataCategories = *p.DataCategories
		checked, err := normalize(src)
		if err != nil {
			return Source{}, err
		}
		src.DataCategories = checked.DataCategories
	}
	return src, nil
}

// UpdateSource applies p to source id (see [Source.AllowedOrigins]; an
// empty list allows every origin) and returns the source. Errors: a
// *[FieldError] for "allowedOrigins" or "dataCategories"; one matching
// [ErrForbidden] when by's role may not [access.ProposeChanges]; one
// matching [statestore.ErrNotFound] for an unknown source.
func (s *Store) UpdateSource(ctx context.Context, id string, p SourcePatch, by access.User) (Source, error) {
	if !access.Can(by.Role, access.ProposeChanges) {
		return Source{}, fmt.Errorf("%w: role %q may not change sources", ErrForbidden, by.Role)
	}
	src, err := s.GetSource(ctx, id)
	if err != nil {
		return Source{}, fmt.Errorf("governance: update source: %w", err)
	}
	if src, err = PatchSource(src, p); err != nil {
		return Source{}, fmt.Errorf("governance: update source: %w", err)
	}
	origins, err := json.Marshal(src.AllowedOrigins)
	if err != nil {
		return Source{}, fmt.Errorf("governance: update source: %w", err)
	}
	cats, err := json.Marshal(src.DataCategories)
	if err != nil {
		return Source{}, fmt.Errorf("governance: update source: %w", err)
	}
	res, err := s.db.Exec(ctx, `UPDATE governance_sources SET allowed_origins = ?, data_categories = ?, ip_policy = ?, updated_at = ? WHERE id = ?`,
		string(origins), string(cats), src.IPPolicy, statestore.TimeToDB(time.Now().UTC()), id)
	s.forgetKeys() // collection checks origins from the cached source
	if err != nil {
		return Source{}, fmt.Errorf("governance: update source %q: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return Source{}, fmt.Errorf("governance: update source %q: %w", id, err)
	} else if n == 0 {
		return Source{}, fmt.Errorf("governance: update source %q: %w", id, statestore.ErrNotFound)
	}
	return s.GetSource(ctx, id)
}

// normalizeIPPolicy checks an IP policy; "" is the default, truncate.
func normalizeIPPolicy(p string) (string, error) {
	p = strings.TrimSpace(p)
	if p == "" {
		return event.IPTruncate, nil
	}
	if !event.ValidIPPolicy(p) {
		return "", &FieldError{Field: "ipPolicy", Message: fmt.Sprintf("must be one of %s, not %q", strings.Join(event.IPPolicies, ", "), p)}
	}
	return p, nil
}
