package governance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"tandem/access"
	"tandem/statestore"
)

// subjectDestination is governance_approvals.subject_type of destinations.
const subjectDestination = "destination"

// Limits on destination fields.
const (
	MaxTypeLen         = 50    // characters
	MaxConsentPurposes = 50    // entries
	MaxConfigBytes     = 16384 // bytes of config JSON
	MaxFilterEntries   = 100   // entries per filter list
	MaxMappingRules    = 100   // field mapping rules
	MaxFieldPathLen    = 200   // characters of a mapped field's path
)

// Mapping actions.
const (
	MapDrop   = "drop"   // remove the field
	MapRename = "rename" // move the field to To
	MapHash   = "hash"   // replace a string or number by the hex SHA-256 of its text
)

// Destination is a tool tandem sends events to, catalogued like a source.
// Config is the type's settings (for a webhook: url, secret, batch); the
// secret keys of a type are never returned by the API (see
// [Store.Redact]).
type Destination struct {
	ID              string         `json:"id"`
	Name            string         `json:"name"` // unique, case-insensitively
	Type            string         `json:"type"` // e.g. webhook
	Config          map[string]any `json:"config"`
	Filter          Filter         `json:"filter"`
	Mapping         []MappingRule  `json:"mapping"`
	Owner           string         `json:"owner"`
	Purpose         string         `json:"purpose"`
	DataCategories  []string       `json:"dataCategories"`
	ConsentPurposes []string       `json:"consentPurposes"`
	MonthlyCost     float64        `json:"monthlyCost"`
	Approval        string         `json:"approval"`
	// ApprovedAt is when the destination was last approved; events the
	// collection API received before it are never delivered to it.
	ApprovedAt *time.Time `json:"approvedAt,omitempty"`
	ApprovedBy string     `json:"approvedBy,omitempty"` // user id
	CreatedAt  time.Time  `json:"createdAt"`
	CreatedBy  string     `json:"createdBy"`
	UpdatedAt  time.Time  `json:"updatedAt"`
}

// Filter selects the events a destination gets: an event passes when each
// non-empty list holds its value. Empty lists let everything through.
type Filter struct {
	Types   []string `json:"types,omitempty"`   // identify, track, page, screen, group, alias
	Events  []string `json:"events,omitempty"`  // track event names (other types have none and do not pass)
	Sources []string `json:"sources,omitempty"` // source ids
}

// MappingRule changes one field of the event before it is sent. Field and
// To are dot-separated paths into the event's JSON, e.g.
// "traits.email" or "properties.revenue".
type MappingRule struct {
	Field  string `json:"field"`
	Action string `json:"action"`       // MapDrop, MapRename or MapHash
	To     string `json:"to,omitempty"` // MapRename's new path
}

// DestinationTypes checks destination types and their configs; the
// delivery package provides it ([Store.SetDestinationTypes]).
type DestinationTypes interface {
	// CheckConfig returns the config to store for a destination of typ:
	// cfg as given, completed from prev (the stored config on a change,
	// nil on creation; a secret left out keeps its stored value). A bad
	// type or config gives a *[FieldError] ("type", "config.url", …).
	CheckConfig(typ string, cfg, prev map[string]any) (map[string]any, error)
	// Secrets lists the config keys of typ that are never returned.
	Secrets(typ string) []string
}

// DestinationMigrations returns the destinations' schema migrations, for
// [statestore.DB.Migrate], after [Migrations].
func DestinationMigrations() []statestore.Migration {
	return []statestore.Migration{{
		Package: "governance.destinations",
		Version: 1,
		SQL: `
CREATE TABLE governance_destinations (
	id TEXT PRIMARY KEY,
	name TEXT NOT NULL,
	name_key TEXT NOT NULL UNIQUE,
	type TEXT NOT NULL,
	config TEXT NOT NULL,
	filter TEXT NOT NULL,
	mapping TEXT NOT NULL,
	owner TEXT NOT NULL,
	purpose TEXT NOT NULL,
	data_categories TEXT NOT NULL,
	consent_purposes TEXT NOT NULL,
	monthly_cost DOUBLE PRECISION NOT NULL,
	approval TEXT NOT NULL,
	approved_at BIGINT NOT NULL,
	approved_by TEXT NOT NULL,
	created_at BIGINT NOT NULL,
	created_by TEXT NOT NULL,
	updated_at BIGINT NOT NULL
);
`,
	}}
}

// SetDestinationTypes sets the checker of destination types and configs.
// Without one, no destination can be created or changed.
func (s *Store) SetDestinationTypes(t DestinationTypes) { s.types = t }

// Redact returns d with its type's secret config keys replaced by
// [SecretSet], for showing.
func (s *Store) Redact(d Destination) Destination {
	if s.types == nil || len(d.Config) == 0 {
		return d
	}
	cfg := make(map[string]any, len(d.Config))
	for k, v := range d.Config {
		cfg[k] = v
	}
	for _, k := range s.types.Secrets(d.Type) {
		if v, ok := cfg[k]; ok && v != nil && v != "" {
			cfg[k] = SecretSet
		}
	}
	d.Config = cfg
	return d
}

// SecretSet stands for a secret's value in what the API returns.
const SecretSet = "(set)"

// DestinationPatch is a change to a destination; nil fields stay as they
// are.
type DestinationPatch struct {
	Name            *string        `json:"name"`
	Config          map[string]any `json:"config"`
	Filter          *Filter        `json:"filter"`
	Mapping         *[]MappingRule `json:"mapping"`
	Owner           *string        `json:"owner"`
	Purpose         *string        `json:"purpose"`
	DataCategories  *[]string      `json:"dataCategories"`
	ConsentPurposes *[]string      `json:"consentPurposes"`
	MonthlyCost     *float64       `json:"monthlyCost"`
}

// CreateDestination creates a destination from d's Name, Type, Config,
// Filter, Mapping, Owner, Purpose, DataCategories, ConsentPurposes and
// MonthlyCost. It starts in d.Approval when that is [Approved] or
// [Pending] (the decision rights' answer); when empty, [Approved] if an
// admin creates it and [Pending] otherwise. Errors: a *[FieldError] for
// bad input; [statestore.ErrConflict] for a taken name; [ErrForbidden]
// when by may not [access.ProposeChanges].
func (s *Store) CreateDestination(ctx context.Context, d Destination, by access.User) (Destination, error) {
	if !access.Can(by.Role, access.ProposeChanges) {
		return Destination{}, fmt.Errorf("%w: role %q may not create destinations", ErrForbidden, by.Role)
	}
	approval := initialApproval(d.Approval, by)
	d, err := s.normalizeDestination(d, nil)
	if err != nil {
		return Destination{}, fmt.Errorf("governance: create destination: %w", err)
	}
	now := time.Now().UTC().Round(0)
	d.ID = statestore.NewID("dst")
	d.CreatedAt, d.UpdatedAt, d.CreatedBy = now, now, by.ID
	d.Approval = approval
	d.ApprovedAt, d.ApprovedBy = nil, ""
	if approval == Approved {
		d.ApprovedAt, d.ApprovedBy = &now, by.ID
	}
	cols, err := destinationValues(d)
	if err != nil {
		return Destination{}, fmt.Errorf("governance: create destination: %w", err)
	}
	_, err = s.db.Exec(ctx, `INSERT INTO governance_destinations
		(id, name, name_key, type, config, filter, mapping, owner, purpose, data_categories, consent_purposes,
		 monthly_cost, approval, approved_at, approved_by, created_at, created_by, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, cols...)
	if err != nil {
		if errors.Is(err, statestore.ErrConflict) {
			return Destination{}, fmt.Errorf("governance: create destination: a destination named %q exists already: %w", d.Name, err)
		}
		return Destination{}, fmt.Errorf("governance: create destination: %w", err)
	}
	return d, nil
}

func destinationValues(d Destination) ([]any, error) {
	var enc [5]string
	for i, v := range []any{d.Config, d.Filter, d.Mapping, d.DataCategories, d.ConsentPurposes} {
		b, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		enc[i] = string(b)
	}
	var approvedAt int64
	if d.ApprovedAt != nil {
		approvedAt = statestore.TimeToDB(*d.ApprovedAt)
	}
	return []any{d.ID, d.Name, nameKey(d.Name), d.Type, enc[0], enc[1], enc[2], d.Owner, d.Purpose, enc[3], enc[4],
		d.MonthlyCost, d.Approval, approvedAt, d.ApprovedBy, statestore.TimeToDB(d.CreatedAt), d.CreatedBy,
		statestore.TimeToDB(d.UpdatedAt)}, nil
}

const destinationColumns = `id, name, type, config, filter, mapping, owner, purpose, data_categories, consent_purposes,
	monthly_cost, approval, approved_at, approved_by, created_at, created_by, updated_at`

func scanDestination(r scanner) (Destination, error) {
	var d Destination
	var cfg, filter, mapping, cats, purposes string
	var approvedAt, created, updated int64
	if err := r.Scan(&d.ID, &d.Name, &d.Type, &cfg, &filter, &mapping, &d.Owner, &d.Purpose, &cats, &purposes,
		&d.MonthlyCost, &d.Approval, &approvedAt, &d.ApprovedBy, &created, &d.CreatedBy, &updated); err != nil {
		return Destination{}, err
	}
	for _, f := range []struct {
		s string
		v any
	}{{cfg, &d.Config}, {filter, &d.Filter}, {mapping, &d.Mapping}, {cats, &d.DataCategories}, {purposes, &d.ConsentPurposes}} {
		if err := json.Unmarshal([]byte(f.s), f.v); err != nil {
			return Destination{}, fmt.Errorf("destination %s: %w", d.ID, err)
		}
	}
	if d.Config == nil {
		d.Config = map[string]any{}
	}
	if d.Mapping == nil {
		d.Mapping = []MappingRule{}
	}
	if d.DataCategories == nil {
		d.DataCategories = []string{}
	}
	if d.ConsentPurposes == nil {
		d.ConsentPurposes = []string{}
	}
	if approvedAt != 0 {
		t := statestore.TimeFromDB(approvedAt)
		d.ApprovedAt = &t
	}
	d.CreatedAt = statestore.TimeFromDB(created)
	d.UpdatedAt = statestore.TimeFromDB(updated)
	return d, nil
}

// GetDestination returns the destination with id (secrets included), or
// an error matching [statestore.ErrNotFound].
func (s *Store) GetDestination(ctx context.Context, id string) (Destination, error) {
	d, err := scanDestination(s.db.QueryRow(ctx, `SELECT `+destinationColumns+` FROM governance_destinations WHERE id = ?`, id))
	if err != nil {
		return Destination{}, fmt.Errorf("governance: get destination %q: %w", id, err)
	}
	return d, nil
}

// ListDestinations pages through destinations in creation order, like
// [Store.ListSources]. Secrets are included: show them with [Store.Redact].
func (s *Store) ListDestinations(ctx context.Context, limit int, cursor string) ([]Destination, string, error) {
	limit = statestore.Limit(limit)
	after, err := statestore.DecodeCursor(cursor, 1)
	if err != nil {
		return nil, "", fmt.Errorf("governance: list destinations: %w", err)
	}
	q := `SELECT ` + destinationColumns + ` FROM governance_destinations`
	args := []any{}
	if after != nil {
		q += ` WHERE id > ?`
		args = append(args, after[0])
	}
	q += ` ORDER BY id LIMIT ?`
	args = append(args, limit+1)
	out, err := s.queryDestinations(ctx, q, args...)
	if err != nil {
		return nil, "", fmt.Errorf("governance: list destinations: %w", err)
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		next = statestore.EncodeCursor(out[limit-1].ID)
	}
	return out, next, nil
}

// AllDestinations returns every destination, secrets included.
func (s *Store) AllDestinations(ctx context.Context) ([]Destination, error) {
	out, err := s.queryDestinations(ctx, `SELECT `+destinationColumns+` FROM governance_destinations ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("governance: all destinations: %w", err)
	}
	return out, nil
}

func (s *Store) queryDestinations(ctx context.Context, q string, args ...any) ([]Destination, error) {
	rows, err := s.db.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Destination{}
	for rows.Next() {
		d, err := scanDestination(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// PatchDestination returns destination id before and after p, checked,
// without storing anything. Errors as [Store.UpdateDestination].
func (s *Store) PatchDestination(ctx context.Context, id string, p DestinationPatch) (before, after Destination, err error) {
	old, err := s.GetDestination(ctx, id)
	if err != nil {
		return Destination{}, Destination{}, err
	}
	d, err := s.patched(old, p)
	if err != nil {
		return Destination{}, Destination{}, fmt.Errorf("governance: update destination %q: %w", id, err)
	}
	return old, d, nil
}

// patched is old with p applied and checked.
func (s *Store) patched(old Destination, p DestinationPatch) (Destination, error) {
	d := old
	if p.Name != nil {
		d.Name = *p.Name
	}
	if p.Filter != nil {
		d.Filter = *p.Filter
	}
	if p.Mapping != nil {
		d.Mapping = *p.Mapping
	}
	if p.Owner != nil {
		d.Owner = *p.Owner
	}
	if p.Purpose != nil {
		d.Purpose = *p.Purpose
	}
	if p.DataCategories != nil {
		d.DataCategories = *p.DataCategories
	}
	if p.ConsentPurposes != nil {
		d.ConsentPurposes = *p.ConsentPurposes
	}
	if p.MonthlyCost != nil {
		d.MonthlyCost = *p.MonthlyCost
	}
	var prev map[string]any
	if p.Config != nil {
		d.Config, prev = p.Config, old.Config
	}
	return s.normalizeDestination(d, prev)
}

// UpdateDestination applies p to destination id; its approval state stays
// as it is (whether the change needs approval first is the decision
// rights', package policy). Errors as [Store.CreateDestination], and
// [statestore.ErrNotFound].
func (s *Store) UpdateDestination(ctx context.Context, id string, p DestinationPatch, by access.User) (Destination, error) {
	if !access.Can(by.Role, access.ProposeChanges) {
		return Destination{}, fmt.Errorf("%w: role %q may not change destinations", ErrForbidden, by.Role)
	}
	var d Destination
	err := s.db.Tx(ctx, func(tx *statestore.Tx) error {
		old, err := scanDestination(tx.QueryRow(ctx, `SELECT `+destinationColumns+` FROM governance_destinations WHERE id = ?`, id))
		if err != nil {
			return err
		}
		if d, err = s.patched(old, p); err != nil {
			return err
		}
		d.UpdatedAt = time.Now().UTC().Round(0)
		cols, err := destinationValues(d)
		if err != nil {
			return err
		}
		// id first in cols; the UPDATE takes it last.
		res, err := tx.Exec(ctx, `UPDATE governance_destinations SET name = ?, name_key = ?, type = ?, config = ?, filter = ?,
			mapping = ?, owner = ?, purpose = ?, data_categories = ?, consent_purposes = ?, monthly_cost = ?, approval = ?,
			approved_at = ?, approved_by = ?, created_at = ?, created_by = ?, updated_at = ?
			WHERE id = ? AND updated_at = ?`, append(cols[1:], id, statestore.TimeToDB(old.UpdatedAt))...)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n != 1 {
			return fmt.Errorf("destination %s changed concurrently: %w", id, statestore.ErrConflict)
		}
		return nil
	})
	if err != nil {
		return Destination{}, fmt.Errorf("governance: update destination %q: %w", id, err)
	}
	return d, nil
}

// DeleteDestination removes destination id and its approval decisions.
func (s *Store) DeleteDestination(ctx context.Context, id string, by access.User) error {
	if !access.Can(by.Role, access.ManageDestinations) {
		return fmt.Errorf("%w: role %q may not delete destinations", ErrForbidden, by.Role)
	}
	err := s.db.Tx(ctx, func(tx *statestore.Tx) error {
		res, err := tx.Exec(ctx, `DELETE FROM governance_destinations WHERE id = ?`, id)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return statestore.ErrNotFound
		}
		_, err = tx.Exec(ctx, `DELETE FROM governance_approvals WHERE subject_type = ? AND subject_id = ?`, subjectDestination, id)
		return err
	})
	if err != nil {
		return fmt.Errorf("governance: delete destination %q: %w", id, err)
	}
	return nil
}

// DecideDestination records by's decision on destination id, as [Store.Decide]
// does for sources. Approving sets ApprovedAt to now: events received
// before it are not delivered (also after a rejection and a new approval).
func (s *Store) DecideDestination(ctx context.Context, id, decision, comment string, by access.User) (Destination, error) {
	if !access.Can(by.Role, access.DecideApprovals) {
		return Destination{}, fmt.Errorf("%w: role %q may not decide approvals", ErrForbidden, by.Role)
	}
	return s.RecordDestinationDecision(ctx, id, decision, comment, by)
}

// RecordDestinationDecision is [Store.DecideDestination] without the
// check of by's role, as [Store.RecordDecision] is for sources.
func (s *Store) RecordDestinationDecision(ctx context.Context, id, decision, comment string, by access.User) (Destination, error) {
	to, comment, err := checkDecision(decision, comment)
	if err != nil {
		return Destination{}, err
	}
	var d Destination
	err = s.db.Tx(ctx, func(tx *statestore.Tx) error {
		var err error
		d, err = scanDestination(tx.QueryRow(ctx, `SELECT `+destinationColumns+` FROM governance_destinations WHERE id = ?`, id))
		if err != nil {
			return err
		}
		now := time.Now().UTC().Round(0)
		approvedAt, approvedBy := int64(0), ""
		if d.ApprovedAt != nil {
			approvedAt, approvedBy = statestore.TimeToDB(*d.ApprovedAt), d.ApprovedBy
		}
		if to == Approved && d.Approval != Approved {
			approvedAt, approvedBy = statestore.TimeToDB(now), by.ID
		}
		res, err := tx.Exec(ctx, `UPDATE governance_destinations SET approval = ?, approved_at = ?, approved_by = ?, updated_at = ?
			WHERE id = ? AND approval = ?`, to, approvedAt, approvedBy, statestore.TimeToDB(now), id, d.Approval)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n != 1 {
			return fmt.Errorf("destination %s changed concurrently: %w", id, statestore.ErrConflict)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO governance_approvals
			(id, subject_type, subject_id, decision, comment, from_state, to_state, decided_by, decided_by_name, decided_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			statestore.NewID("apr"), subjectDestination, id, decision, comment, d.Approval, to,
			by.ID, by.Name, statestore.TimeToDB(now)); err != nil {
			return err
		}
		d.Approval, d.UpdatedAt = to, now
		if approvedAt != 0 {
			t := statestore.TimeFromDB(approvedAt)
			d.ApprovedAt, d.ApprovedBy = &t, approvedBy
		}
		return nil
	})
	if err != nil {
		return Destination{}, fmt.Errorf("governance: decide on destination %q: %w", id, err)
	}
	return d, nil
}

// ListDestinationDecisions returns the decisions on destination id, oldest
// first (SourceID holds the destination's id).
func (s *Store) ListDestinationDecisions(ctx context.Context, id string) ([]Decision, error) {
	if _, err := s.GetDestination(ctx, id); err != nil {
		return nil, err
	}
	rows, err := s.db.Query(ctx, `SELECT id, subject_id, decision, comment, from_state, to_state, decided_by, decided_by_name, decided_at
		FROM governance_approvals WHERE subject_type = ? AND subject_id = ? ORDER BY id`, subjectDestination, id)
	if err != nil {
		return nil, fmt.Errorf("governance: decisions on destination %q: %w", id, err)
	}
	defer rows.Close()
	out := []Decision{}
	for rows.Next() {
		var dd Decision
		var at int64
		if err := rows.Scan(&dd.ID, &dd.SourceID, &dd.Decision, &dd.Comment, &dd.From, &dd.To, &dd.By, &dd.ByName, &at); err != nil {
			return nil, fmt.Errorf("governance: decisions on destination %q: %w", id, err)
		}
		dd.DecidedAt = statestore.TimeFromDB(at)
		out = append(out, dd)
	}
	return out, rows.Err()
}

// normalizeDestination trims and checks a destination's fields; prev is
// the stored config when the config changes, nil on creation.
func (s *Store) normalizeDestination(d Destination, prev map[string]any) (Destination, error) {
	src, err := normalize(Source{Name: d.Name, Kind: d.Type, Owner: d.Owner, Purpose: d.Purpose,
		DataCategories: d.DataCategories, MonthlyCost: d.MonthlyCost})
	if err != nil {
		var fe *FieldError
		if errors.As(err, &fe) && fe.Field == "kind" {
			fe.Field = "type"
		}
		return d, err
	}
	d.Name, d.Type, d.Owner, d.Purpose, d.DataCategories = src.Name, src.Kind, src.Owner, src.Purpose, src.DataCategories
	if math.IsNaN(d.MonthlyCost) || d.MonthlyCost < 0 {
		return d, &FieldError{Field: "monthlyCost", Message: "must be a number, 0 or more"}
	}
	if d.ConsentPurposes, err = nameList("consentPurposes", d.ConsentPurposes, MaxConsentPurposes, MaxDataCategoryLen); err != nil {
		return d, err
	}
	if s.types == nil {
		return d, &FieldError{Field: "type", Message: "no destination types are available on this node"}
	}
	if d.Config == nil {
		d.Config = map[string]any{}
	}
	if d.Config, err = s.types.CheckConfig(d.Type, d.Config, prev); err != nil {
		return d, err
	}
	if b, err := json.Marshal(d.Config); err != nil || len(b) > MaxConfigBytes {
		return d, &FieldError{Field: "config", Message: fmt.Sprintf("is larger than %d bytes", MaxConfigBytes)}
	}
	if d.Filter.Types, err = nameList("filter.types", d.Filter.Types, MaxFilterEntries, MaxNameLen); err != nil {
		return d, err
	}
	for i, t := range d.Filter.Types {
		switch t {
		case "identify", "track", "page", "screen", "group", "alias":
		default:
			return d, &FieldError{Field: "filter.types", Message: fmt.Sprintf("entry %d: unknown event type %q", i, t)}
		}
	}
	if d.Filter.Events, err = nameList("filter.events", d.Filter.Events, MaxFilterEntries, 500); err != nil {
		return d, err
	}
	if d.Filter.Sources, err = nameList("filter.sources", d.Filter.Sources, MaxFilterEntries, MaxNameLen); err != nil {
		return d, err
	}
	if len(d.Mapping) > MaxMappingRules {
		return d, &FieldError{Field: "mapping", Message: fmt.Sprintf("has more than %d rules", MaxMappingRules)}
	}
	if d.Mapping == nil {
		d.Mapping = []MappingRule{}
	}
	for i, m := range d.Mapping {
		f := fmt.Sprintf("mapping[%d]", i)
		if err := checkPath(f+".field", m.Field); err != nil {
			return d, err
		}
		switch m.Action {
		case MapDrop, MapHash:
			if m.To != "" {
				return d, &FieldError{Field: f + ".to", Message: "only rename takes a target"}
			}
		case MapRename:
			if err := checkPath(f+".to", m.To); err != nil {
				return d, err
			}
		default:
			return d, &FieldError{Field: f + ".action", Message: `must be "drop", "rename" or "hash"`}
		}
	}
	return d, nil
}

func checkPath(field, p string) error {
	if p == "" {
		return &FieldError{Field: field, Message: "is required"}
	}
	if len(p) > MaxFieldPathLen {
		return &FieldError{Field: field, Message: fmt.Sprintf("is longer than %d characters", MaxFieldPathLen)}
	}
	for _, part := range strings.Split(p, ".") {
		if part == "" {
			return &FieldError{Field: field, Message: "has an empty path segment"}
		}
	}
	switch strings.SplitN(p, ".", 2)[0] {
	case "messageId", "type":
		return &FieldError{Field: field, Message: "messageId and type cannot be mapped"}
	}
	return nil
}

// nameList trims, checks and de-duplicates a list of names.
func nameList(field string, in []string, maxEntries, maxLen int) ([]string, error) {
	if len(in) > maxEntries {
		return nil, &FieldError{Field: field, Message: fmt.Sprintf("has more than %d entries", maxEntries)}
	}
	out := make([]string, 0, len(in))
	seen := map[string]bool{}
	for i, v := range in {
		v = strings.TrimSpace(v)
		if err := validateText(field, v, maxLen, false); err != nil || v == "" {
			return nil, &FieldError{Field: field, Message: fmt.Sprintf("entry %d is empty or not valid text", i)}
		}
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out, nil
}
