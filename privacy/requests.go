package privacy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"tandem/statestore"
)

// The kinds of data-subject request (GDPR Art. 15, 20, 17 and 21).
const (
	RequestAccess      = "access"
	RequestPortability = "portability"
	RequestErasure     = "erasure"
	RequestObjection   = "objection"
)

// RequestTypes lists every kind of request.
var RequestTypes = []string{RequestAccess, RequestErasure, RequestObjection, RequestPortability}

// The states of a request, and of each of its steps.
const (
	StatusReceived   = "received"
	StatusInProgress = "in_progress"
	StatusCompleted  = "completed"
	StatusFailed     = "failed"
)

// SourceObjection is the source of the refusals an objection records.
const SourceObjection = "objection"

// Deadline is the time the controller has to answer a request (Art. 12(3):
// one month; tandem counts 30 days).
const Deadline = 30 * 24 * time.Hour

// ErrRequestNotFound matches statestore.ErrNotFound: no such request.
var ErrRequestNotFound = fmt.Errorf("privacy: request not found: %w", statestore.ErrNotFound)

// Identity names the data subject by one of their identifiers (an
// identifier type of the identity graph: user_id, anonymous_id, email,
// phone or a configured one). OpenDSR's subject_identities entry, with
// identity_type and identity_value.
type Identity struct {
	Type  string `json:"type"`
	Value string `json:"value"`
	// Hash, set when an erasure removed Value (see [Requests.Redact]), is
	// the identifier's keyed hash, as on the suppression list.
	Hash string `json:"hash,omitempty"`
}

// Verification records how the subject's identity was verified before the
// request was filed: by whom (the privacy user filing it), how (the
// method the user names, e.g. "id-card seen at the counter" or "e-mail
// round trip"), and when.
type Verification struct {
	By     string    `json:"by"`
	Method string    `json:"method"`
	At     time.Time `json:"at"`
}

// Step is one store or destination a request was carried out in.
type Step struct {
	Store       string    `json:"store,omitempty"`
	Destination string    `json:"destination,omitempty"`
	Status      string    `json:"status"`
	At          time.Time `json:"at"`
	// Detail says what was done or what failed, without personal data.
	Detail string `json:"detail,omitempty"`
}

// Request is a data-subject request and its progress.
type Request struct {
	ID           string       `json:"id"`
	Type         string       `json:"type"`
	Status       string       `json:"status"`
	Identity     Identity     `json:"identity"`
	Verification Verification `json:"verification"`
	// ProfileID is the profile the identity resolved to when the request
	// was carried out ("" when none held it).
	ProfileID   string     `json:"profileId,omitempty"`
	CreatedBy   string     `json:"createdBy"`
	CreatedAt   time.Time  `json:"createdAt"`
	Deadline    time.Time  `json:"deadline"`
	CompletedAt *time.Time `json:"completedAt"`
	Steps       []Step     `json:"steps"`
}

// requestMigration is the table of data-subject requests: the request as
// JSON, with its id (time-ordered) as key.
var requestMigration = statestore.Migration{Package: "privacy", Version: 2, SQL: `
CREATE TABLE privacy_requests (
	id TEXT NOT NULL PRIMARY KEY,
	request_type TEXT NOT NULL,
	status TEXT NOT NULL,
	created_at BIGINT NOT NULL,
	body TEXT NOT NULL
)`}

// Requests keeps data-subject requests in the state store.
type Requests struct {
	db  *statestore.DB
	now func() time.Time
}

// NewRequests returns the request store over db (migrated with
// [Migrations]).
func NewRequests(db *statestore.DB) *Requests {
	return &Requests{db: db, now: time.Now}
}

// WithClock makes the store take times from now (tests); it returns r.
func (r *Requests) WithClock(now func() time.Time) *Requests {
	r.now = now
	return r
}

// NewRequest is what the filer of a request gives.
type NewRequest struct {
	Type     string
	Identity Identity
	// VerifiedBy is the user filing the request, Method how they verified
	// the subject's identity.
	VerifiedBy, Method string
}

// Create records a new request, status received. It fails with a
// *FieldError for bad input.
func (r *Requests) Create(ctx context.Context, in NewRequest) (Request, error) {
	if !slices.Contains(RequestTypes, in.Type) {
		return Request{}, &FieldError{Field: "type", Message: "must be one of " + strings.Join(RequestTypes, ", ")}
	}
	switch {
	case strings.TrimSpace(in.Identity.Type) == "":
		return Request{}, &FieldError{Field: "identity.type", Message: "name the identifier type, e.g. email or user_id"}
	case len(in.Identity.Type) > 100:
		return Request{}, &FieldError{Field: "identity.type", Message: "at most 100 bytes"}
	case strings.TrimSpace(in.Identity.Value) == "":
		return Request{}, &FieldError{Field: "identity.value", Message: "must not be empty"}
	case len(in.Identity.Value) > 1000:
		return Request{}, &FieldError{Field: "identity.value", Message: "at most 1000 bytes"}
	case strings.TrimSpace(in.Method) == "":
		return Request{}, &FieldError{Field: "verification.method", Message: "say how the subject's identity was verified, e.g. \"e-mail round trip\""}
	case len(in.Method) > 500:
		return Request{}, &FieldError{Field: "verification.method", Message: "at most 500 bytes"}
	}
	now := r.now().UTC()
	req := Request{
		ID: statestore.NewID("dsr"), Type: in.Type, Status: StatusReceived, Identity: in.Identity,
		Verification: Verification{By: in.VerifiedBy, Method: in.Method, At: now},
		CreatedBy:    in.VerifiedBy, CreatedAt: now, Deadline: now.Add(Deadline), Steps: []Step{},
	}
	body, err := json.Marshal(req)
	if err != nil {
		return Request{}, err
	}
	if _, err := r.db.Exec(ctx, `INSERT INTO privacy_requests (id, request_type, status, created_at, body) VALUES (?, ?, ?, ?, ?)`,
		req.ID, req.Type, req.Status, statestore.TimeToDB(now), string(body)); err != nil {
		return Request{}, fmt.Errorf("privacy: create request: %w", err)
	}
	return req, nil
}

// Get returns the request with id, or an error matching
// [ErrRequestNotFound].
func (r *Requests) Get(ctx context.Context, id string) (Request, error) {
	var body string
	if err := r.db.QueryRow(ctx, `SELECT body FROM privacy_requests WHERE id = ?`, id).Scan(&body); err != nil {
		if errors.Is(err, statestore.ErrNotFound) {
			return Request{}, ErrRequestNotFound
		}
		return Request{}, fmt.Errorf("privacy: get request: %w", err)
	}
	var req Request
	if err := json.Unmarshal([]byte(body), &req); err != nil {
		return Request{}, fmt.Errorf("privacy: decode stored request: %w", err)
	}
	return req, nil
}

// List returns up to limit requests, newest first, after cursor, and the
// next page's cursor ("" after the last).
func (r *Requests) List(ctx context.Context, limit int, cursor string) ([]Request, string, error) {
	limit = statestore.Limit(limit)
	after, err := statestore.DecodeCursor(cursor, 1)
	if err != nil {
		return nil, "", err
	}
	q, args := `SELECT body FROM privacy_requests`, []any{}
	if after != nil {
		q += ` WHERE id < ?`
		args = append(args, after[0])
	}
	q += ` ORDER BY id DESC LIMIT ?`
	args = append(args, limit+1)
	rows, err := r.db.Query(ctx, q, args...)
	if err != nil {
		return nil, "", fmt.Errorf("privacy: list requests: %w", err)
	}
	defer rows.Close()
	out := []Request{}
	for rows.Next() {
		var body string
		if err := rows.Scan(&body); err != nil {
			return nil, "", fmt.Errorf("privacy: list requests: %w", err)
		}
		var req Request
		if err := json.Unmarshal([]byte(body), &req); err != nil {
			return nil, "", fmt.Errorf("privacy: decode stored request: %w", err)
		}
		out = append(out, req)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("privacy: list requests: %w", err)
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		next = statestore.EncodeCursor(out[limit-1].ID)
	}
	return out, next, nil
}

// Update changes the request with id by fn, in one transaction, and
// returns it afterwards. A status of completed or failed sets completedAt.
func (r *Requests) Update(ctx context.Context, id string, fn func(*Request)) (Request, error) {
	var req Request
	err := r.db.Tx(ctx, func(tx *statestore.Tx) error {
		var body string
		if err := tx.QueryRow(ctx, `SELECT body FROM privacy_requests WHERE id = ?`, id).Scan(&body); err != nil {
			if errors.Is(err, statestore.ErrNotFound) {
				return ErrRequestNotFound
			}
			return err
		}
		req = Request{}
		if err := json.Unmarshal([]byte(body), &req); err != nil {
			return fmt.Errorf("privacy: decode stored request: %w", err)
		}
		fn(&req)
		if (req.Status == StatusCompleted || req.Status == StatusFailed) && req.CompletedAt == nil {
			t := r.now().UTC()
			req.CompletedAt = &t
		}
		b, err := json.Marshal(req)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE privacy_requests SET status = ?, body = ? WHERE id = ?`, req.Status, string(b), id)
		return err
	})
	if err != nil {
		if errors.Is(err, ErrRequestNotFound) {
			return Request{}, err
		}
		return Request{}, fmt.Errorf("privacy: update request: %w", err)
	}
	return req, nil
}

// Redact removes the identifier from every request whose identity pick
// reports as an erased person's (the erasure itself and the person's
// earlier requests), keeping hash(identity) in its place: the record
// still proves what was done, and for whom to someone who knows the
// identifier and the installation's secret, without holding it. It
// returns how many requests it changed.
func (r *Requests) Redact(ctx context.Context, pick func(Identity) bool, hash func(Identity) string) (int, error) {
	rows, err := r.db.Query(ctx, `SELECT id, body FROM privacy_requests`)
	if err != nil {
		return 0, fmt.Errorf("privacy: redact requests: %w", err)
	}
	var ids []string
	for rows.Next() {
		var id, body string
		if err := rows.Scan(&id, &body); err != nil {
			rows.Close()
			return 0, fmt.Errorf("privacy: redact requests: %w", err)
		}
		var req Request
		if json.Unmarshal([]byte(body), &req) == nil && req.Identity.Value != "" && pick(req.Identity) {
			ids = append(ids, id)
		}
	}
	err = rows.Err()
	rows.Close()
	if err != nil {
		return 0, fmt.Errorf("privacy: redact requests: %w", err)
	}
	for _, id := range ids {
		if _, err := r.Update(ctx, id, func(q *Request) {
			q.Identity.Hash = hash(q.Identity)
			q.Identity.Value = ""
		}); err != nil {
			return 0, err
		}
	}
	return len(ids), nil
}

// AddStep appends a step (its time now) to the request with id.
func (r *Requests) AddStep(ctx context.Context, id string, s Step) (Request, error) {
	if s.At.IsZero() {
		s.At = r.now().UTC()
	}
	return r.Update(ctx, id, func(req *Request) { req.Steps = append(req.Steps, s) })
}

// Object carries out the objection (Art. 21) with id: it refuses the
// configured marketing purposes ([Config.Objection]) for the profile
// holding the request's identity, through consent.Set with source
// objection and actor, so the routes of destinations serving them stop
// receiving the person's events. The step is recorded on the request,
// and the request completed (or failed); an identity no profile holds
// completes with nothing to refuse.
func (r *Requests) Object(ctx context.Context, id string, consent *Store, actor string) (Request, error) {
	req, err := r.Get(ctx, id)
	if err != nil {
		return Request{}, err
	}
	if req.Type != RequestObjection {
		return Request{}, &FieldError{Field: "type", Message: "not an objection"}
	}
	if _, err := r.Update(ctx, id, func(q *Request) { q.Status = StatusInProgress }); err != nil {
		return Request{}, err
	}
	profile, known, err := consent.keys.ProfileFor(ctx, req.Identity.Type, req.Identity.Value)
	step := Step{Store: "consent", Status: StatusCompleted}
	switch {
	case err != nil:
		step.Status, step.Detail = StatusFailed, "the identity graph could not be read"
	case !known:
		step.Detail = "no profile holds the identifier: nothing to refuse"
	default:
		refuse := map[string]bool{}
		for _, p := range consent.Config().Objection() {
			refuse[p] = false
		}
		if _, err := consent.Set(ctx, profile, refuse, SourceObjection, actor); err != nil {
			step.Status, step.Detail = StatusFailed, "the refusals could not be recorded"
		} else {
			step.Detail = "refused " + strings.Join(consent.Config().Objection(), ", ")
		}
	}
	step.At = r.now().UTC()
	return r.Update(ctx, id, func(q *Request) {
		q.ProfileID = profile
		q.Steps = append(q.Steps, step)
		q.Status = step.Status
	})
}

// Erase deletes the consent decisions and their history kept under the
// event keys keys (a data subject's, see Keys.EventKeys), for an erasure,
// and returns how many decisions (current and past) it deleted.
func (s *Store) Erase(ctx context.Context, keys []string) (int64, error) {
	var n int64
	err := s.db.Tx(ctx, func(tx *statestore.Tx) error {
		n = 0
		for _, k := range keys {
			for _, q := range []string{`DELETE FROM privacy_consent WHERE ekey = ?`, `DELETE FROM privacy_consent_history WHERE ekey = ?`} {
				res, err := tx.Exec(ctx, q, k)
				if err != nil {
					return err
				}
				d, _ := res.RowsAffected()
				n += d
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("privacy: erase consent: %w", err)
	}
	return n, nil
}

// ExpireHistory deletes the consent history of decisions taken before
// before (retention's consent_history, docs/privacy.md) and returns how
// many. The current decisions stay: they are what delivery is checked
// against.
func (s *Store) ExpireHistory(ctx context.Context, before time.Time) (int64, error) {
	res, err := s.db.Exec(ctx, `DELETE FROM privacy_consent_history WHERE event_time < ?`, statestore.TimeToDB(before))
	if err != nil {
		return 0, fmt.Errorf("privacy: expire consent history: %w", err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}
