package policy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"tandem/access"
	"tandem/audit"
	"tandem/statestore"
)

// States of a change request.
const (
	Pending  = "pending"  // waiting for approvals; not in effect
	Approved = "approved" // every needed role approved; in effect
	Rejected = "rejected" // a needed role rejected it; kept with the reason
)

// Decisions on a change request.
const (
	Approve = "approve"
	Reject  = "reject"
)

// MaxCommentLen is the longest decision comment, in characters.
const MaxCommentLen = 2000

// ErrDecided is matched by errors for a decision on a change that is no
// longer pending. The API answers 409 change_decided.
var ErrDecided = errors.New("policy: the change is decided already")

// Change is a change request: a change the decision rights hold until
// every role it needs approved it.
type Change struct {
	ID         string        `json:"id"`
	Kind       Kind          `json:"kind"`
	Action     string        `json:"action"`  // Create, Update or Delete
	Subject    string        `json:"subject"` // the resource's id (src_…, dst_…)
	Diff       Diff          `json:"diff"`
	ProposedBy string        `json:"proposedBy"` // user id
	Proposer   access.Role   `json:"proposerRole"`
	Needs      []access.Role `json:"needs"`
	Approvals  []Approval    `json:"approvals"`
	Informed   []access.Role `json:"informed"`
	State      string        `json:"state"`
	Reason     string        `json:"reason,omitempty"` // the rejection's comment
	CreatedAt  time.Time     `json:"createdAt"`
	DecidedAt  *time.Time    `json:"decidedAt,omitempty"`

	proposerName string
	version      int64
}

// Diff is the resource before and after the change, as shown (secrets
// redacted); before is null for a creation, after for a deletion.
type Diff struct {
	Before json.RawMessage `json:"before"`
	After  json.RawMessage `json:"after"`
}

// Approval is one role's decision on a change. The proposer's own role,
// when the change needs it, approves at once (comment "proposed").
type Approval struct {
	Role     access.Role `json:"role"`
	User     string      `json:"user"` // user id
	Decision string      `json:"decision"`
	At       time.Time   `json:"at"`
	Comment  string      `json:"comment"`
}

// Outstanding returns the roles c still needs, under rules r.
func (c Change) Outstanding(r *Rules) []access.Role {
	var by []access.Role
	for _, a := range c.Approvals {
		if a.Decision == Approve {
			by = append(by, a.Role)
		}
	}
	return r.outstanding(c.Needs, by)
}

// Decided is a decision that settles a change, as its [Applier] gets it.
type Decided struct {
	Change   Change
	Payload  json.RawMessage // what the proposer gave to carry the change out
	Decision string          // Approve (every role approved) or Reject
	Comment  string
	By       access.User // whose decision settled it
	Proposer access.User // who proposed it
}

// Applier carries out (Decision Approve) or drops (Reject) a change of
// one kind when it is settled. An error leaves the change pending and the
// decision unrecorded, so the decision can be given again.
type Applier func(ctx context.Context, d Decided) error

// Store keeps change requests in a [statestore.DB] (apply [Migrations]
// first) and records each proposal and decision in the audit log, in the
// same transaction.
type Store struct {
	db    *statestore.DB
	rules *Rules
	audit *audit.Log

	mu       sync.RWMutex
	appliers map[Kind]Applier
}

// NewStore returns a Store over db under rules; log, when not nil, gets an
// entry for every proposal and decision.
func NewStore(db *statestore.DB, rules *Rules, log *audit.Log) *Store {
	return &Store{db: db, rules: rules, audit: log, appliers: map[Kind]Applier{}}
}

// Rules returns the decision rights the store decides by.
func (s *Store) Rules() *Rules { return s.rules }

// Handle sets the applier of changes of kind k.
func (s *Store) Handle(k Kind, a Applier) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.appliers[k] = a
}

// Migrations returns the package's schema migrations, for
// [statestore.DB.Migrate].
func Migrations() []statestore.Migration {
	return []statestore.Migration{{
		Package: "policy",
		Version: 1,
		SQL: `
CREATE TABLE policy_changes (
	id TEXT PRIMARY KEY,
	kind TEXT NOT NULL,
	action TEXT NOT NULL,
	subject TEXT NOT NULL,
	before_json TEXT NOT NULL,
	after_json TEXT NOT NULL,
	payload TEXT NOT NULL,
	proposed_by TEXT NOT NULL,
	proposer_name TEXT NOT NULL,
	proposer_role TEXT NOT NULL,
	needs TEXT NOT NULL,
	informed TEXT NOT NULL,
	state TEXT NOT NULL,
	reason TEXT NOT NULL,
	created_at BIGINT NOT NULL,
	decided_at BIGINT NOT NULL,
	version BIGINT NOT NULL
);
CREATE INDEX policy_changes_subject ON policy_changes (subject, state, id);
CREATE INDEX policy_changes_state ON policy_changes (state, id);
CREATE TABLE policy_approvals (
	id TEXT PRIMARY KEY,
	change_id TEXT NOT NULL REFERENCES policy_changes (id) ON DELETE CASCADE,
	role TEXT NOT NULL,
	user_id TEXT NOT NULL,
	decision TEXT NOT NULL,
	comment TEXT NOT NULL,
	at BIGINT NOT NULL
);
CREATE INDEX policy_approvals_change ON policy_approvals (change_id, id);
`,
	}, {
		Package: "policy",
		Version: 2,
		SQL: `
CREATE TABLE policy_settings (
	kind TEXT PRIMARY KEY,
	value TEXT NOT NULL,
	version BIGINT NOT NULL,
	change_id TEXT NOT NULL,
	updated_by TEXT NOT NULL,
	updated_at BIGINT NOT NULL
);
`,
	}}
}

// Proposal is a change the decision rights hold, as [Store.Propose] takes
// it.
type Proposal struct {
	Kind    Kind
	Action  string // Create, Update or Delete
	Subject string // the resource's id
	Before  any    // shown as diff.before (secrets redacted); nil for none
	After   any    // shown as diff.after
	Payload any    // what the applier needs to carry it out; not shown
	By      access.User
	// Assessment is [Rules.Assess]'s answer for the change; it must not
	// be Direct.
	Assessment Assessment
}

func marshal(v any) (string, error) {
	if v == nil {
		return "null", nil
	}
	b, err := json.Marshal(v)
	return string(b), err
}

// Propose keeps p as a pending change request and returns it. The
// proposer's role, when the change needs it, counts as approved.
func (s *Store) Propose(ctx context.Context, p Proposal) (Change, error) {
	if !p.Kind.Valid() {
		return Change{}, fmt.Errorf("policy: propose: %q is no kind of change", p.Kind)
	}
	switch p.Action {
	case Create, Update, Delete:
	default:
		return Change{}, fmt.Errorf("policy: propose: %q is no action", p.Action)
	}
	if p.Assessment.Direct {
		return Change{}, errors.New("policy: propose: the change needs no approval; carry it out directly")
	}
	now := time.Now().UTC().Round(0)
	c := Change{ID: statestore.NewID("chg"), Kind: p.Kind, Action: p.Action, Subject: p.Subject,
		ProposedBy: p.By.ID, Proposer: p.By.Role, proposerName: p.By.Name,
		Needs: ordered(p.Assessment.Needs), Informed: ordered(p.Assessment.Informed),
		Approvals: []Approval{}, State: Pending, CreatedAt: now, version: 1}
	before, err := marshal(p.Before)
	if err != nil {
		return Change{}, fmt.Errorf("policy: propose: %w", err)
	}
	after, err := marshal(p.After)
	if err != nil {
		return Change{}, fmt.Errorf("policy: propose: %w", err)
	}
	payload, err := marshal(p.Payload)
	if err != nil {
		return Change{}, fmt.Errorf("policy: propose: %w", err)
	}
	c.Diff = Diff{Before: json.RawMessage(before), After: json.RawMessage(after)}
	if slices.Contains(c.Needs, p.By.Role) {
		c.Approvals = append(c.Approvals, Approval{Role: p.By.Role, User: p.By.ID, Decision: Approve, At: now, Comment: "proposed"})
	}
	needs, _ := json.Marshal(c.Needs)
	informed, _ := json.Marshal(c.Informed)
	err = s.db.Tx(ctx, func(tx *statestore.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO policy_changes
			(id, kind, action, subject, before_json, after_json, payload, proposed_by, proposer_name, proposer_role,
			 needs, informed, state, reason, created_at, decided_at, version)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '', ?, 0, 1)`,
			c.ID, string(c.Kind), c.Action, c.Subject, before, after, payload, c.ProposedBy, p.By.Name, string(c.Proposer),
			string(needs), string(informed), c.State, statestore.TimeToDB(now)); err != nil {
			return err
		}
		for _, a := range c.Approvals {
			if err := insertApproval(ctx, tx, c.ID, a); err != nil {
				return err
			}
		}
		return s.record(ctx, tx, audit.Record{Actor: p.By.ID, Action: "change.propose", Resource: "change/" + c.ID,
			ChangeRequest: c.ID, After: c})
	})
	if err != nil {
		return Change{}, fmt.Errorf("policy: propose: %w", err)
	}
	return c, nil
}

func insertApproval(ctx context.Context, tx *statestore.Tx, id string, a Approval) error {
	_, err := tx.Exec(ctx, `INSERT INTO policy_approvals (id, change_id, role, user_id, decision, comment, at)
		VALUES (?, ?, ?, ?, ?, ?, ?)`, statestore.NewID("cap"), id, string(a.Role), a.User, a.Decision, a.Comment,
		statestore.TimeToDB(a.At))
	return err
}

func (s *Store) record(ctx context.Context, tx *statestore.Tx, rec audit.Record) error {
	if s.audit == nil {
		return nil
	}
	_, err := s.audit.AppendTx(ctx, tx, rec)
	return err
}

const changeColumns = `id, kind, action, subject, before_json, after_json, proposed_by, proposer_name, proposer_role,
	needs, informed, state, reason, created_at, decided_at, version`

type scanner interface{ Scan(dest ...any) error }

func scanChange(r scanner) (Change, error) {
	var c Change
	var kind, role, before, after, needs, informed string
	var created, decided int64
	if err := r.Scan(&c.ID, &kind, &c.Action, &c.Subject, &before, &after, &c.ProposedBy, &c.proposerName, &role,
		&needs, &informed, &c.State, &c.Reason, &created, &decided, &c.version); err != nil {
		return Change{}, err
	}
	c.Kind, c.Proposer = Kind(kind), access.Role(role)
	c.Diff = Diff{Before: json.RawMessage(before), After: json.RawMessage(after)}
	if err := json.Unmarshal([]byte(needs), &c.Needs); err != nil {
		return Change{}, fmt.Errorf("change %s: needs: %w", c.ID, err)
	}
	if err := json.Unmarshal([]byte(informed), &c.Informed); err != nil {
		return Change{}, fmt.Errorf("change %s: informed: %w", c.ID, err)
	}
	c.CreatedAt = statestore.TimeFromDB(created)
	if decided != 0 {
		t := statestore.TimeFromDB(decided)
		c.DecidedAt = &t
	}
	c.Approvals = []Approval{}
	return c, nil
}

// withApprovals fills in the approvals of cs.
func (s *Store) withApprovals(ctx context.Context, cs []Change) error {
	if len(cs) == 0 {
		return nil
	}
	idx := make(map[string]int, len(cs))
	args := make([]any, len(cs))
	marks := make([]string, len(cs))
	for i, c := range cs {
		idx[c.ID] = i
		args[i] = c.ID
		marks[i] = "?"
	}
	rows, err := s.db.Query(ctx, `SELECT change_id, role, user_id, decision, comment, at FROM policy_approvals
		WHERE change_id IN (`+strings.Join(marks, ", ")+`) ORDER BY id`, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var id, role string
		var a Approval
		var at int64
		if err := rows.Scan(&id, &role, &a.User, &a.Decision, &a.Comment, &at); err != nil {
			return err
		}
		a.Role, a.At = access.Role(role), statestore.TimeFromDB(at)
		c := &cs[idx[id]]
		c.Approvals = append(c.Approvals, a)
	}
	return rows.Err()
}

// Get returns change id, or an error matching [statestore.ErrNotFound].
func (s *Store) Get(ctx context.Context, id string) (Change, error) {
	c, err := scanChange(s.db.QueryRow(ctx, `SELECT `+changeColumns+` FROM policy_changes WHERE id = ?`, id))
	if err != nil {
		return Change{}, fmt.Errorf("policy: get change %q: %w", id, err)
	}
	cs := []Change{c}
	if err := s.withApprovals(ctx, cs); err != nil {
		return Change{}, fmt.Errorf("policy: get change %q: %w", id, err)
	}
	return cs[0], nil
}

// Visible reports whether user may see c: an admin sees every change,
// anyone else those they proposed, whose approval their role is needed
// for, or whose informed roles hold theirs.
func Visible(c Change, user access.User) bool {
	return user.Role == access.RoleAdmin || c.ProposedBy == user.ID ||
		slices.Contains(c.Needs, user.Role) || slices.Contains(c.Informed, user.Role)
}

// Filter selects changes for [Store.List].
type Filter struct {
	State   string      // Pending, Approved, Rejected, or "" for all
	Subject string      // a resource's id, or "" for all
	Viewer  access.User // only changes [Visible] to the viewer
}

// List returns up to limit changes (see [statestore.Limit]) matching f,
// oldest first, after cursor ("" for the first page), and the next page's
// cursor ("" after the last). A bad state or cursor gives a
// *[statestore.FieldError].
func (s *Store) List(ctx context.Context, f Filter, limit int, cursor string) ([]Change, string, error) {
	limit = statestore.Limit(limit)
	after, err := statestore.DecodeCursor(cursor, 1)
	if err != nil {
		return nil, "", fmt.Errorf("policy: list changes: %w", err)
	}
	where, args := []string{}, []any{}
	switch f.State {
	case "":
	case Pending, Approved, Rejected:
		where, args = append(where, "state = ?"), append(args, f.State)
	default:
		return nil, "", &statestore.FieldError{Field: "state", Message: "must be pending, approved or rejected"}
	}
	if f.Subject != "" {
		where, args = append(where, "subject = ?"), append(args, f.Subject)
	}
	if f.Viewer.Role != access.RoleAdmin {
		// needs and informed are JSON arrays of role names, which hold no
		// quote or LIKE wildcard.
		role := `%"` + string(f.Viewer.Role) + `"%`
		where = append(where, "(proposed_by = ? OR needs LIKE ? OR informed LIKE ?)")
		args = append(args, f.Viewer.ID, role, role)
	}
	if after != nil {
		where, args = append(where, "id > ?"), append(args, after[0])
	}
	query := `SELECT ` + changeColumns + ` FROM policy_changes`
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, " AND ")
	}
	query += ` ORDER BY id LIMIT ?`
	args = append(args, limit+1)
	rows, err := s.db.Query(ctx, query, args...)
	if err != nil {
		return nil, "", fmt.Errorf("policy: list changes: %w", err)
	}
	out := []Change{}
	for rows.Next() {
		c, err := scanChange(rows)
		if err != nil {
			rows.Close()
			return nil, "", fmt.Errorf("policy: list changes: %w", err)
		}
		out = append(out, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("policy: list changes: %w", err)
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		next = statestore.EncodeCursor(out[limit-1].ID)
	}
	if err := s.withApprovals(ctx, out); err != nil {
		return nil, "", fmt.Errorf("policy: list changes: %w", err)
	}
	return out, next, nil
}

// PendingFor returns the oldest pending change of one of kinds (any kind
// when none are given) on subject, or an error matching
// [statestore.ErrNotFound] when there is none.
func (s *Store) PendingFor(ctx context.Context, subject string, kinds ...Kind) (Change, error) {
	q, args := `SELECT id FROM policy_changes WHERE subject = ? AND state = ?`, []any{subject, Pending}
	if len(kinds) > 0 {
		marks := make([]string, len(kinds))
		for i, k := range kinds {
			marks[i] = "?"
			args = append(args, string(k))
		}
		q += ` AND kind IN (` + strings.Join(marks, ", ") + `)`
	}
	var id string
	if err := s.db.QueryRow(ctx, q+` ORDER BY id LIMIT 1`, args...).Scan(&id); err != nil {
		return Change{}, fmt.Errorf("policy: pending change on %q: %w", subject, err)
	}
	return s.Get(ctx, id)
}

// Decide records by's decision (Approve or Reject) on pending change id,
// for by's role, and returns the change. by's role must be one the change
// still needs, or admin when the rules let admin approve for every role.
// When the decision settles the change (a rejection, or the last approval
// it needed), the kind's [Applier] carries it out first; the change is
// recorded settled only if that succeeds.
//
// Errors: a *[statestore.FieldError] for "decision" or "comment"; one
// matching [ErrForbidden] for a role whose decision is not needed; one
// matching [ErrDecided] for a change no longer pending; one matching
// [statestore.ErrConflict] when another decision on it was recorded
// meanwhile (decide again); [statestore.ErrNotFound].
func (s *Store) Decide(ctx context.Context, id, decision, comment string, by access.User) (Change, error) {
	switch decision {
	case Approve, Reject:
	default:
		return Change{}, &statestore.FieldError{Field: "decision", Message: `must be "approve" or "reject"`}
	}
	comment = strings.TrimSpace(comment)
	switch {
	case !utf8.ValidString(comment) || strings.IndexByte(comment, 0) >= 0:
		return Change{}, &statestore.FieldError{Field: "comment", Message: "is not valid text"}
	case utf8.RuneCountInString(comment) > MaxCommentLen:
		return Change{}, &statestore.FieldError{Field: "comment", Message: fmt.Sprintf("is longer than %d characters", MaxCommentLen)}
	}
	c, err := s.Get(ctx, id)
	if err != nil {
		return Change{}, err
	}
	if c.State != Pending {
		return Change{}, fmt.Errorf("%w: change %s is %s", ErrDecided, id, c.State)
	}
	outstanding := c.Outstanding(s.rules)
	actsForAll := by.Role == access.RoleAdmin && s.rules.AdminApprovesAll()
	if !actsForAll && !slices.Contains(outstanding, by.Role) {
		if slices.Contains(c.Needs, by.Role) {
			return Change{}, fmt.Errorf("%w: role %s approved change %s already; it waits for %s", ErrForbidden, by.Role, id, roleNames(outstanding))
		}
		return Change{}, fmt.Errorf("%w: change %s does not need role %s's decision; it waits for %s", ErrForbidden, id, by.Role, roleNames(outstanding))
	}
	now := time.Now().UTC().Round(0)
	a := Approval{Role: by.Role, User: by.ID, Decision: decision, At: now, Comment: comment}
	state := Pending
	switch {
	case decision == Reject:
		state = Rejected
	case actsForAll || slices.Equal(outstanding, []access.Role{by.Role}):
		state = Approved
	}
	if state != Pending {
		s.mu.RLock()
		apply := s.appliers[c.Kind]
		s.mu.RUnlock()
		if apply == nil {
			return Change{}, fmt.Errorf("policy: decide on change %s: changes of kind %s cannot be carried out on this node", id, c.Kind)
		}
		var payload string
		if err := s.db.QueryRow(ctx, `SELECT payload FROM policy_changes WHERE id = ?`, id).Scan(&payload); err != nil {
			return Change{}, fmt.Errorf("policy: decide on change %s: %w", id, err)
		}
		if err := apply(ctx, Decided{Change: c, Payload: json.RawMessage(payload), Decision: decision, Comment: comment, By: by,
			Proposer: access.User{ID: c.ProposedBy, Name: c.proposerName, Role: c.Proposer}}); err != nil {
			return Change{}, fmt.Errorf("policy: carry out change %s: %w", id, err)
		}
	}
	before := c.State
	err = s.db.Tx(ctx, func(tx *statestore.Tx) error {
		decided, reason := int64(0), ""
		if state != Pending {
			decided = statestore.TimeToDB(now)
		}
		if state == Rejected {
			reason = comment
			if reason == "" {
				reason = "rejected by " + string(by.Role)
			}
		}
		res, err := tx.Exec(ctx, `UPDATE policy_changes SET state = ?, reason = ?, decided_at = ?, version = version + 1
			WHERE id = ? AND version = ?`, state, reason, decided, id, c.version)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n != 1 {
			return fmt.Errorf("change %s was decided on concurrently: %w", id, statestore.ErrConflict)
		}
		if err := insertApproval(ctx, tx, id, a); err != nil {
			return err
		}
		c.State, c.Reason, c.version = state, reason, c.version+1
		if decided != 0 {
			t := statestore.TimeFromDB(decided)
			c.DecidedAt = &t
		}
		c.Approvals = append(c.Approvals, a)
		return s.record(ctx, tx, audit.Record{Actor: by.ID, Action: "change." + decision, Resource: "change/" + id,
			ChangeRequest: id, Before: map[string]string{"state": before},
			After: map[string]any{"state": state, "role": by.Role, "decision": decision, "comment": comment,
				"outstanding": c.Outstanding(s.rules)}})
	})
	if err != nil {
		return Change{}, fmt.Errorf("policy: decide on change %s: %w", id, err)
	}
	return c, nil
}

// Withdraw rejects every pending change on subject but except (the change
// being carried out, if any), with reason, because the subject went away
// (a deleted destination): they could not be carried out any more. Each
// is recorded in the audit log as change.withdraw by by. It returns how
// many it withdrew.
func (s *Store) Withdraw(ctx context.Context, subject, except, reason string, by access.User) (int, error) {
	n := 0
	err := s.db.Tx(ctx, func(tx *statestore.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id FROM policy_changes WHERE subject = ? AND state = ? AND id <> ? ORDER BY id`,
			subject, Pending, except)
		if err != nil {
			return err
		}
		var ids []string
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return err
			}
			ids = append(ids, id)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		now := statestore.TimeToDB(time.Now().UTC().Round(0))
		for _, id := range ids {
			if _, err := tx.Exec(ctx, `UPDATE policy_changes SET state = ?, reason = ?, decided_at = ?, version = version + 1
				WHERE id = ? AND state = ?`, Rejected, reason, now, id, Pending); err != nil {
				return err
			}
			if err := s.record(ctx, tx, audit.Record{Actor: by.ID, Action: "change.withdraw", Resource: "change/" + id,
				ChangeRequest: id, Before: map[string]string{"state": Pending},
				After: map[string]string{"state": Rejected, "reason": reason}}); err != nil {
				return err
			}
		}
		n = len(ids)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("policy: withdraw the changes on %q: %w", subject, err)
	}
	return n, nil
}
