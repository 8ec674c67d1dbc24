package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"tandem/access"
	"tandem/apierror"
	"tandem/audit"
	"tandem/delivery"
	"tandem/event"
	"tandem/eventstore"
	"tandem/identity"
	"tandem/privacy"
)

// privacyRoutes are data-subject requests (see docs/privacy.md): filed,
// followed and carried out by admin and privacy.
func (a *API) privacyRoutes() {
	a.route("/api/v1/privacy/requests", map[string]handler{
		"POST": a.need(access.ManageRequests, a.createPrivacyRequest),
		"GET":  a.need(access.ManageRequests, a.listPrivacyRequests)})
	a.route("/api/v1/privacy/requests/{id}", map[string]handler{"GET": a.need(access.ManageRequests, a.getPrivacyRequest)})
	a.route("/api/v1/privacy/requests/{id}/export", map[string]handler{"GET": a.need(access.ManageRequests, a.exportPrivacyRequest)})
	a.route("/api/v1/privacy/consent", map[string]handler{"GET": a.need(access.ReadConsentRates, a.consentRates)})
	a.route("/api/v1/privacy/suppressions", map[string]handler{"DELETE": a.need(access.ManageRequests, a.removeSuppression)})
}

// consentRates answers the consent rates per purpose: aggregates over
// the identifiers that decided, no person (see privacy.Store.Rates).
func (a *API) consentRates(w http.ResponseWriter, r *http.Request) error {
	cs, err := a.consentStore()
	if err != nil {
		return err
	}
	rates, err := cs.Rates(r.Context())
	if err != nil {
		return err
	}
	return writeJSON(w, 200, map[string]any{"purposes": rates, "unit": "identifier"})
}

// removeSuppression takes one identifier off the suppression list (the
// person asked to be known again): from then on their events are
// processed. Audited with the identifier's keyed hash, not the identifier.
func (a *API) removeSuppression(w http.ResponseWriter, r *http.Request) error {
	sup := a.opts.Suppressions
	if sup == nil {
		return apierror.Of(apierror.CodeUnavailable, "the suppression list is not kept on this node")
	}
	var in struct {
		Identity privacy.Identity `json:"identity"`
	}
	if err := decode(w, r, &in); err != nil {
		return err
	}
	switch {
	case strings.TrimSpace(in.Identity.Type) == "":
		return apierror.Field("identity.type", apierror.CodeInvalidField, "name the identifier type, e.g. email or user_id")
	case strings.TrimSpace(in.Identity.Value) == "":
		return apierror.Field("identity.value", apierror.CodeInvalidField, "must not be empty")
	}
	removed, err := sup.Remove(r.Context(), in.Identity.Type, in.Identity.Value)
	if err != nil {
		return err
	}
	a.recordChange(r, audit.Record{Action: "privacy_suppression.remove", Resource: "privacy_suppression/" + sup.Hash(sup.Identifier(in.Identity.Type, in.Identity.Value)),
		After: map[string]any{"identityType": in.Identity.Type, "removed": removed}})
	return writeJSON(w, 200, map[string]bool{"removed": removed})
}

func (a *API) requestStore() (*privacy.Requests, error) {
	if a.opts.Requests == nil {
		return nil, apierror.Of(apierror.CodeUnavailable, "data-subject requests are not kept on this node")
	}
	return a.opts.Requests, nil
}

func (a *API) createPrivacyRequest(w http.ResponseWriter, r *http.Request) error {
	rs, err := a.requestStore()
	if err != nil {
		return err
	}
	var in struct {
		Type         string           `json:"type"`
		Identity     privacy.Identity `json:"identity"`
		Verification struct {
			Method string `json:"method"`
		} `json:"verification"`
	}
	if err := decode(w, r, &in); err != nil {
		return err
	}
	if in.Type == privacy.RequestObjection {
		if _, err := a.consentStore(); err != nil {
			return err
		}
	}
	// An identifier type the identity graph does not know finds no one:
	// refused, naming the field.
	if st := a.opts.Identity; st != nil && in.Identity.Type != "" && in.Identity.Value != "" {
		if _, err := st.Lookup(r.Context(), in.Identity.Type, in.Identity.Value); err != nil && !isNotFound(err) {
			var fe *identity.FieldError
			if errors.As(err, &fe) {
				return apierror.Field("identity.type", apierror.CodeInvalidField, fe.Message)
			}
			return err
		}
	}
	u := userFrom(r.Context())
	req, err := rs.Create(r.Context(), privacy.NewRequest{Type: in.Type, Identity: in.Identity, VerifiedBy: u.ID, Method: in.Verification.Method})
	if err != nil {
		return err
	}
	// The identifier is personal data: the audit record names the request,
	// its type and the verification, not the person.
	a.recordChange(r, audit.Record{Action: "privacy_request.create", Resource: "privacy_request/" + req.ID,
		After: map[string]any{"type": req.Type, "identityType": req.Identity.Type, "verification": req.Verification, "deadline": req.Deadline}})
	switch req.Type {
	case privacy.RequestObjection:
		if req, err = rs.Object(r.Context(), req.ID, a.opts.Consent, u.ID); err != nil {
			return err
		}
	case privacy.RequestErasure:
		if req, err = a.erase(context.WithoutCancel(r.Context()), req); err != nil {
			return err
		}
	}
	if req.Status != privacy.StatusReceived {
		a.recordChange(r, audit.Record{Action: "privacy_request." + req.Status, Resource: "privacy_request/" + req.ID,
			After: map[string]any{"status": req.Status, "steps": req.Steps}})
	}
	return writeJSON(w, 201, map[string]string{"id": req.ID, "status": req.Status})
}

func (a *API) listPrivacyRequests(w http.ResponseWriter, r *http.Request) error {
	rs, err := a.requestStore()
	if err != nil {
		return err
	}
	limit, cursor, err := page(r)
	if err != nil {
		return err
	}
	items, next, err := rs.List(r.Context(), limit, cursor)
	if err != nil {
		return err
	}
	return writeJSON(w, 200, list[privacy.Request]{Items: items, Next: next})
}

func (a *API) getPrivacyRequest(w http.ResponseWriter, r *http.Request) error {
	rs, err := a.requestStore()
	if err != nil {
		return err
	}
	req, err := rs.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, 200, req)
}

// ExportSchema names the version of the export's shape (docs/privacy.md).
const ExportSchema = "tandem.privacy.export/1"

// exportPrivacyRequest streams the access or portability export of a
// request's subject: the profile (identifiers, traits), consent and its
// history, and every event of the profile's timeline (merged identities
// included), page by page, so a long timeline is never held in memory.
// The request is completed when the export was written to the end.
func (a *API) exportPrivacyRequest(w http.ResponseWriter, r *http.Request) error {
	rs, err := a.requestStore()
	if err != nil {
		return err
	}
	st, err := a.identityStore()
	if err != nil {
		return err
	}
	req, err := rs.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	if req.Type != privacy.RequestAccess && req.Type != privacy.RequestPortability {
		return apierror.Of(apierror.CodeNotExportable, fmt.Sprintf("request %s is an %s request; only access and portability requests have an export", req.ID, req.Type))
	}
	var prof *identity.Profile
	p, err := st.Lookup(r.Context(), req.Identity.Type, req.Identity.Value)
	switch {
	case err == nil:
		prof = &p
	case !isNotFound(err):
		return err
	}
	u := userFrom(r.Context())
	if prof != nil {
		if err := a.audit(r, "export", prof.ID); err != nil {
			return err
		}
	}
	if req.Status == privacy.StatusReceived {
		if _, err := rs.Update(r.Context(), req.ID, func(q *privacy.Request) { q.Status = privacy.StatusInProgress }); err != nil {
			return err
		}
	}
	// From here on the answer is 200 and streams; a failure midway cuts
	// it short (no closing brace: the client sees invalid JSON) and marks
	// the request failed.
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", req.ID+".json"))
	w.WriteHeader(200)
	n, werr := a.writeExport(r.Context(), w, req, prof)
	status, detail := privacy.StatusCompleted, fmt.Sprintf("exported %d events", n)
	if werr != nil {
		status, detail = privacy.StatusFailed, "the export was cut short"
		a.opts.Logger.Error("privacy export failed", "request", req.ID, "err", werr.Error())
	}
	profileID := ""
	if prof != nil {
		profileID = prof.ID
	}
	ctx := context.WithoutCancel(r.Context())
	done, err := rs.Update(ctx, req.ID, func(q *privacy.Request) {
		q.ProfileID = profileID
		q.Steps = append(q.Steps, privacy.Step{Store: "export", Status: status, At: time.Now().UTC(), Detail: detail})
		if q.Status != privacy.StatusCompleted {
			q.Status = status
		}
	})
	if err != nil {
		a.opts.Logger.Error("privacy request: the export's step was not recorded", "request", req.ID, "err", err.Error())
		return nil
	}
	a.recordChange(r, audit.Record{Action: "privacy_request.export", Resource: "privacy_request/" + req.ID,
		After: map[string]any{"status": done.Status, "profile": profileID, "by": u.ID, "detail": detail}})
	return nil
}

// writeExport writes the export document; it returns the number of events.
func (a *API) writeExport(ctx context.Context, w http.ResponseWriter, req privacy.Request, prof *identity.Profile) (int, error) {
	flush := func() {
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
	}
	put := func(s string) error { _, err := w.Write([]byte(s)); return err }
	val := func(v any) error {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	head := map[string]any{"id": req.ID, "type": req.Type, "createdAt": req.CreatedAt, "identity": req.Identity}
	if err := put(`{"schema":"` + ExportSchema + `","exportedAt":`); err != nil {
		return 0, err
	}
	if err := val(time.Now().UTC()); err != nil {
		return 0, err
	}
	if err := put(`,"request":`); err != nil {
		return 0, err
	}
	if err := val(head); err != nil {
		return 0, err
	}
	if err := put(`,"profile":`); err != nil {
		return 0, err
	}
	if prof == nil {
		if err := put(`null,"consent":null,"consentHistory":[],"events":[]}` + "\n"); err != nil {
			return 0, err
		}
		return 0, nil
	}
	if err := val(map[string]any{"id": prof.ID, "identifiers": prof.Identifiers, "traits": prof.Traits}); err != nil {
		return 0, err
	}
	if err := put(`,"consent":`); err != nil {
		return 0, err
	}
	var consent any
	if a.opts.Consent != nil {
		c, err := a.opts.Consent.State(ctx, prof.ID)
		if err != nil {
			return 0, err
		}
		consent = c
	}
	if err := val(consent); err != nil {
		return 0, err
	}
	if err := put(`,"consentHistory":[`); err != nil {
		return 0, err
	}
	if a.opts.Consent != nil {
		first, cursor := true, ""
		for {
			items, next, err := a.opts.Consent.History(ctx, prof.ID, 1000, cursor)
			if err != nil {
				return 0, err
			}
			for _, c := range items {
				if !first {
					if err := put(","); err != nil {
						return 0, err
					}
				}
				first = false
				if err := val(c); err != nil {
					return 0, err
				}
			}
			if next == "" {
				break
			}
			cursor = next
		}
	}
	if err := put(`],"events":[`); err != nil {
		return 0, err
	}
	n, cursor := 0, ""
	for {
		p, err := a.opts.Events.List(ctx, eventstore.Query{Profile: prof.ID, Limit: eventstore.MaxLimit, Cursor: cursor})
		if err != nil {
			return n, err
		}
		for _, e := range p.Events {
			if n > 0 {
				if err := put(","); err != nil {
					return n, err
				}
			}
			if _, err := w.Write(Render(e)); err != nil {
				return n, err
			}
			n++
		}
		flush()
		if p.Next == "" {
			break
		}
		cursor = p.Next
	}
	if err := put("]}\n"); err != nil {
		return n, err
	}
	return n, nil
}

// erase carries out an erasure request (Art. 17) in every store, one step
// each, in this order: the event store (the profile's events and links),
// consent, the quarantine's payloads of the person, and last the identity
// graph (identifiers, traits), whose keys the other steps need; see
// docs/privacy.md. A step that fails fails the request; filing it again
// retries what is left.
func (a *API) erase(ctx context.Context, req privacy.Request) (privacy.Request, error) {
	rs := a.opts.Requests
	if _, err := rs.Update(ctx, req.ID, func(q *privacy.Request) { q.Status = privacy.StatusInProgress }); err != nil {
		return req, err
	}
	var steps []privacy.Step
	step := func(store string, err error, detail string) {
		s := privacy.Step{Store: store, Status: privacy.StatusCompleted, At: time.Now().UTC(), Detail: detail}
		if err != nil {
			s.Status, s.Detail = privacy.StatusFailed, detail
			a.opts.Logger.Error("privacy erasure: a step failed", "request", req.ID, "store", store, "err", err.Error())
		}
		steps = append(steps, s)
	}
	// The subject: the profile holding the identity, its event keys and
	// identifier values.
	var profileID string
	var keys, values []string
	idents := []privacy.Identity{}
	if st := a.opts.Identity; st != nil {
		p, err := st.Lookup(ctx, req.Identity.Type, req.Identity.Value)
		switch {
		case err == nil:
			profileID = p.ID
			if _, ks, err := st.EventKeys(ctx, p.ID); err == nil {
				keys = ks
			}
			for _, i := range p.Identifiers {
				values = append(values, i.Value)
				idents = append(idents, privacy.Identity{Type: i.Type, Value: i.Value})
			}
		case isNotFound(err):
		default:
			step("identity", err, "the identity graph could not be read")
		}
	}
	if profileID == "" && (req.Identity.Type == identity.UserID || req.Identity.Type == identity.AnonymousID) {
		keys = []string{req.Identity.Type + ":" + req.Identity.Value}
	}
	if len(values) == 0 {
		values = []string{req.Identity.Value}
		idents = append(idents, req.Identity)
	}
	// The identifiers, normalised as the identity graph keeps them: for
	// the suppression list and to find the person's requests.
	norm := func(i privacy.Identity) string {
		if st := a.opts.Identity; st != nil {
			if v, ok := st.Normalize(i.Type, strings.TrimSpace(i.Value)); ok {
				return i.Type + ":" + v
			}
		}
		return i.Type + ":" + strings.TrimSpace(i.Value)
	}
	subject := map[string]bool{}
	for _, i := range append(idents, req.Identity) {
		subject[norm(i)] = true
	}
	for _, k := range keys {
		subject[k] = true // user_id:… and anonymous_id:…, as identifiers are written
	}
	if len(steps) == 0 {
		// First the suppression list: events of the person arriving from
		// now on are dropped by the pipeline, and those queued for a
		// destination are not sent.
		if sup := a.opts.Suppressions; sup != nil {
			list := slices.Sorted(maps.Keys(subject))
			err := sup.Add(ctx, req.ID, list)
			if err == nil && a.opts.Quiesce != nil {
				err = a.opts.Quiesce(ctx)
			}
			step("suppression", err, fmt.Sprintf("added the keyed hashes of %d identifiers to the suppression list", len(list)))
		}
		if a.opts.Events != nil {
			n, err := a.opts.Events.Erase(ctx, keys)
			step("events", err, fmt.Sprintf("deleted %d events and their profile links", n))
		}
		if a.opts.Consent != nil {
			n, err := a.opts.Consent.Erase(ctx, keys)
			step("consent", err, fmt.Sprintf("deleted %d consent records", n))
		}
		if a.opts.Traits != nil {
			n, err := a.opts.Traits.Erase(ctx, keys, profileID)
			step("audiences", err, fmt.Sprintf("deleted %d rows of computed traits, lifecycle stages and audience memberships", n))
		}
		match := subjectMatcher(keys, values)
		if a.opts.Quarantine != nil {
			n, err := a.opts.Quarantine.Erase(ctx, match)
			step("quarantine", err, fmt.Sprintf("deleted %d quarantined payloads", n))
		}
		if a.opts.Identity != nil && profileID != "" {
			_, err := a.opts.Identity.Erase(ctx, profileID)
			detail := fmt.Sprintf("deleted the profile's %d identifiers, their traits and links", len(values))
			if errors.Is(err, identity.ErrShared) {
				detail = "the profile shares its identity graph component with other profiles; unmerge them first"
			}
			step("identity", err, detail)
		}
		if d, ok := a.opts.Delivery.(DeadLetterEraser); ok {
			n, err := d.EraseDeadLetters(ctx, match)
			step("dead_letters", err, fmt.Sprintf("deleted %d dead letters", n))
		}
		if a.opts.EraseLog != nil {
			users, anons := map[string]bool{}, map[string]bool{}
			for _, k := range keys {
				if v, ok := strings.CutPrefix(k, "user_id:"); ok {
					users[v] = true
				} else if v, ok := strings.CutPrefix(k, "anonymous_id:"); ok {
					anons[v] = true
				}
			}
			n, err := a.opts.EraseLog(ctx, func(e event.Entry) bool {
				return (e.UserID != "" && users[e.UserID]) || (e.UserID == "" && e.AnonymousID != "" && anons[e.AnonymousID]) || match(e.Raw)
			})
			detail := fmt.Sprintf("rewrote or erased %d event log records holding the person's events", n)
			if a.opts.EraseLogNote != "" {
				detail += "; " + a.opts.EraseLogNote
			}
			step("log", err, detail)
		}
		if n, ok := a.opts.Delivery.(Notifier); ok {
			steps = append(steps, a.notifyErasure(ctx, n, req, keys, idents)...)
		}
		// The person's requests keep a keyed hash in place of the
		// identifier; then the state store's freed pages go.
		hash := func(i privacy.Identity) string {
			if a.opts.Suppressions == nil {
				return ""
			}
			return a.opts.Suppressions.Hash(norm(i))
		}
		n, err := rs.Redact(ctx, func(i privacy.Identity) bool { return subject[norm(i)] }, hash)
		step("requests", err, fmt.Sprintf("replaced the identifier of %d data-subject requests by its keyed hash", n))
		if a.opts.ScrubState != nil {
			detail, err := a.opts.ScrubState(ctx)
			step("state", err, detail)
		}
	}
	status := privacy.StatusCompleted
	for _, s := range steps {
		if s.Status == privacy.StatusFailed {
			status = privacy.StatusFailed
		}
	}
	return rs.Update(ctx, req.ID, func(q *privacy.Request) {
		q.ProfileID = profileID
		q.Steps = append(q.Steps, steps...)
		q.Status = status
	})
}

// subjectMatcher reports whether a quarantined payload is the subject's:
// its userId or anonymousId is one of the subject's keys, or it holds one
// of their other identifier values (an e-mail address, say) as a JSON
// string.
func subjectMatcher(keys, values []string) func(raw []byte) bool {
	users, anons := map[string]bool{}, map[string]bool{}
	for _, k := range keys {
		if v, ok := strings.CutPrefix(k, "user_id:"); ok {
			users[v] = true
		} else if v, ok := strings.CutPrefix(k, "anonymous_id:"); ok {
			anons[v] = true
		}
	}
	var quoted [][]byte
	for _, v := range values {
		if !users[v] && !anons[v] && v != "" {
			b, _ := json.Marshal(v)
			quoted = append(quoted, b)
		}
	}
	return func(raw []byte) bool {
		var ids struct {
			UserID      any `json:"userId"`
			AnonymousID any `json:"anonymousId"`
		}
		if json.Unmarshal(raw, &ids) == nil {
			if u, ok := ids.UserID.(string); ok && users[u] {
				return true
			}
			if an, ok := ids.AnonymousID.(string); ok && anons[an] {
				return true
			}
		}
		for _, q := range quoted {
			if bytes.Contains(raw, q) {
				return true
			}
		}
		return false
	}
}

// DeadLetterEraser deletes the dead letters of a data subject
// (delivery.Manager implements it).
type DeadLetterEraser interface {
	EraseDeadLetters(ctx context.Context, match func(body []byte) bool) (int, error)
}

// Notifier sends a notice to every destination delivering on this node
// (delivery.Manager implements it).
type Notifier interface {
	Notify(ctx context.Context, messageID string, body json.RawMessage) []delivery.NoticeResult
}

// ErasureNotice is what a destination receives for an erasure: the
// subject's identifiers, so that it can find and delete them (Art. 19).
type ErasureNotice struct {
	Type        string             `json:"type"` // "erasure"
	MessageID   string             `json:"messageId"`
	RequestID   string             `json:"requestId"`
	UserID      string             `json:"userId,omitempty"`
	AnonymousID string             `json:"anonymousId,omitempty"`
	Identifiers []privacy.Identity `json:"identifiers"`
	Timestamp   time.Time          `json:"timestamp"`
}

// notifyErasure forwards the erasure to every approved destination, one
// step each.
func (a *API) notifyErasure(ctx context.Context, n Notifier, req privacy.Request, keys []string, idents []privacy.Identity) []privacy.Step {
	notice := ErasureNotice{Type: "erasure", MessageID: "erasure-" + req.ID, RequestID: req.ID, Identifiers: idents, Timestamp: time.Now().UTC()}
	for _, k := range keys {
		if v, ok := strings.CutPrefix(k, "user_id:"); ok && notice.UserID == "" {
			notice.UserID = v
		} else if v, ok := strings.CutPrefix(k, "anonymous_id:"); ok && notice.AnonymousID == "" {
			notice.AnonymousID = v
		}
	}
	body, err := json.Marshal(notice)
	if err != nil {
		return []privacy.Step{{Store: "destinations", Status: privacy.StatusFailed, At: time.Now().UTC(), Detail: "the notice could not be made"}}
	}
	var steps []privacy.Step
	for _, r := range n.Notify(ctx, notice.MessageID, body) {
		s := privacy.Step{Destination: r.Destination, Status: privacy.StatusCompleted, At: time.Now().UTC(), Detail: "erasure notice delivered"}
		if r.Err != nil {
			s.Status, s.Detail = privacy.StatusFailed, "erasure notice not delivered: "+r.Err.Error()
		}
		steps = append(steps, s)
	}
	return steps
}
