package api

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"
	"unicode/utf8"

	"tandem/access"
	"tandem/apierror"
	"tandem/audit"
	"tandem/event"
	"tandem/eventstore"
	"tandem/governance"
	"tandem/policy"
	"tandem/quarantine"
	"tandem/statestore"
)

// sourceParam resolves a source given by id or name (the ?source= filter)
// to its id; "" stays "" (no filter). An unknown source is a 400 naming
// "source", never an empty answer.
func (a *API) sourceParam(ctx context.Context, ref string) (string, error) {
	if ref == "" {
		return "", nil
	}
	src, err := a.opts.Governance.SourceByRef(ctx, ref)
	if errors.Is(err, statestore.ErrNotFound) {
		return "", apierror.Field("source", "invalid_field", fmt.Sprintf("no source with id or name %q (GET /api/v1/sources lists them)", ref))
	}
	if err != nil {
		return "", err
	}
	return src.ID, nil
}

// sourceByPath is the source named by the {id} of a path: its id or its
// name.
func (a *API) sourceByPath(r *http.Request) (governance.Source, error) {
	return a.opts.Governance.SourceByRef(r.Context(), r.PathValue("id"))
}

// me is the calling user with what its role may do, which a client (the
// dashboard) uses to offer only the actions the API will allow.
func (a *API) me(w http.ResponseWriter, r *http.Request) error {
	u := userFrom(r.Context())
	return writeJSON(w, 200, struct {
		access.User
		Permissions []access.Permission `json:"permissions"`
	}{u, access.PermissionsOf(u.Role)})
}

func (a *API) createUser(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		Name string `json:"name"`
		Role string `json:"role"`
	}
	if err := decode(w, r, &in); err != nil {
		return err
	}
	name, err := access.ValidateUser(in.Name, access.Role(in.Role))
	if err != nil {
		return err
	}
	// users:manage (admin) creates users directly whatever the decision
	// rights say: every other user starts from an admin's, so holding
	// admin's own back could leave no one to approve. Other roles propose
	// them under the decision rights.
	caller := userFrom(r.Context())
	switch {
	case access.Can(caller.Role, access.ManageUsers):
	case a.opts.Changes == nil:
		return apierror.Of(apierror.CodeForbidden, "role "+string(caller.Role)+" may not "+string(access.ManageUsers)+
			" (this node keeps no change requests)")
	default:
		as, err := a.opts.Changes.Rules().AssessUser(access.Role(in.Role), caller.Role)
		if err != nil {
			return err
		}
		if !as.Direct {
			return a.proposeUser(w, r, name, access.Role(in.Role), as)
		}
	}
	u, token, err := a.opts.Access.CreateUser(r.Context(), name, access.Role(in.Role))
	if err != nil {
		return err
	}
	a.recordChange(r, audit.Record{Action: "user.create", Resource: "user/" + u.ID, After: map[string]any{"id": u.ID, "role": u.Role}})
	return writeJSON(w, 201, struct {
		access.User
		Token string `json:"token"`
	}{u, token})
}

func (a *API) listUsers(w http.ResponseWriter, r *http.Request) error {
	limit, cursor, err := page(r)
	if err != nil {
		return err
	}
	users, next, err := a.opts.Access.ListUsers(r.Context(), limit, cursor)
	if err != nil {
		return err
	}
	return writeJSON(w, 200, list[access.User]{Items: nonNil(users), Next: next})
}

func (a *API) createSource(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		Name           string   `json:"name"`
		Kind           string   `json:"kind"`
		Owner          string   `json:"owner"`
		Purpose        string   `json:"purpose"`
		DataCategories []string `json:"dataCategories"`
		MonthlyCost    float64  `json:"monthlyCost"`
		AllowedOrigins []string `json:"allowedOrigins"`
		IPPolicy       string   `json:"ipPolicy"`
	}
	if err := decode(w, r, &in); err != nil {
		return err
	}
	as, err := a.assess(r.Context(), policy.Source, in.DataCategories)
	if err != nil {
		return err
	}
	src, key, err := a.opts.Governance.CreateSource(r.Context(), governance.Source{
		Name: in.Name, Kind: in.Kind, Owner: in.Owner, Purpose: in.Purpose,
		DataCategories: in.DataCategories, MonthlyCost: in.MonthlyCost, AllowedOrigins: in.AllowedOrigins,
		Approval: a.initialApproval(as),
		IPPolicy: in.IPPolicy,
	}, userFrom(r.Context()))
	if err != nil {
		return err
	}
	change := ""
	if !as.Direct {
		c, err := a.propose(r.Context(), policy.Proposal{Kind: policy.Source, Action: policy.Create, Subject: src.ID,
			After: src, Assessment: as})
		if err != nil {
			return err
		}
		change = c.ID
	}
	a.opts.Logger.Info("source created", "source", src.ID, "by", userFrom(r.Context()).ID, "approval", src.Approval)
	a.recordChange(r, audit.Record{Action: "source.create", Resource: "source/" + src.ID, ChangeRequest: change,
		After: struct {
			governance.Source
			WriteKeyDigest string `json:"writeKeyDigest"`
		}{src, audit.Digest(key)}})
	return writeJSON(w, 201, struct {
		governance.Source
		WriteKey string `json:"writeKey"`
		Change   string `json:"change,omitempty"`
	}{src, key, change})
}

func (a *API) listSources(w http.ResponseWriter, r *http.Request) error {
	limit, cursor, err := page(r)
	if err != nil {
		return err
	}
	srcs, next, err := a.opts.Governance.ListSources(r.Context(), limit, cursor)
	if err != nil {
		return err
	}
	return writeJSON(w, 200, list[governance.Source]{Items: nonNil(srcs), Next: next})
}

func (a *API) getSource(w http.ResponseWriter, r *http.Request) error {
	src, err := a.sourceByPath(r)
	if err != nil {
		return err
	}
	return writeJSON(w, 200, src)
}

// updateSource changes what may be changed of a source: its allowed
// origins and its data categories, directly or through a change request
// (202) as the decision rights say.
func (a *API) updateSource(w http.ResponseWriter, r *http.Request) error {
	var p governance.SourcePatch
	if err := decode(w, r, &p); err != nil {
		return err
	}
	if p.AllowedOrigins == nil && p.DataCategories == nil && p.IPPolicy == nil {
		return apierror.Field("allowedOrigins", "missing_field", "nothing to change: send allowedOrigins (an empty list allows every origin), dataCategories or ipPolicy")
	}
	src, err := a.sourceByPath(r)
	if err != nil {
		return err
	}
	after, err := governance.PatchSource(src, p)
	if err != nil {
		return err
	}
	kind := policy.Source
	if p.DataCategories != nil && categoryChange(src.DataCategories, after.DataCategories) {
		kind = policy.DataCategories
	}
	as, err := a.assess(r.Context(), kind, after.DataCategories)
	if err != nil {
		return err
	}
	if !as.Direct {
		c, err := a.propose(r.Context(), policy.Proposal{Kind: kind, Action: policy.Update, Subject: src.ID,
			Before: sourcePatchView(src, p), After: sourcePatchView(after, p), Payload: p, Assessment: as})
		if err != nil {
			return err
		}
		return held(w, c)
	}
	before := sourcePatchView(src, p)
	src, err = a.opts.Governance.UpdateSource(r.Context(), src.ID, p, userFrom(r.Context()))
	if err != nil {
		return err
	}
	a.recordChange(r, audit.Record{Action: "source.update", Resource: "source/" + src.ID, Before: before,
		After: sourcePatchView(src, p)})
	a.opts.Logger.Info("source changed", "source", src.ID, "by", userFrom(r.Context()).ID, "origins", len(src.AllowedOrigins), "ipPolicy", src.IPPolicy)
	return writeJSON(w, 200, src)
}

// decideSource approves or rejects a source: on its pending change
// request for the caller's role when it has one, else directly.
func (a *API) decideSource(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		Decision string `json:"decision"`
		Comment  string `json:"comment"`
	}
	if err := decode(w, r, &in); err != nil {
		return err
	}
	src, err := a.sourceByPath(r)
	if err != nil {
		return err
	}
	c, err := a.decideTool(r.Context(), src.ID, in.Decision, in.Comment)
	if err != nil {
		return err
	}
	if c != nil {
		if src, err = a.opts.Governance.GetSource(r.Context(), src.ID); err != nil {
			return err
		}
		return writeJSON(w, 200, struct {
			governance.Source
			Change string `json:"change"`
		}{src, c.ID})
	}
	before := map[string]string{"approval": src.Approval}
	src, err = a.opts.Governance.Decide(r.Context(), src.ID, in.Decision, in.Comment, userFrom(r.Context()))
	if err != nil {
		return err
	}
	a.opts.Logger.Info("source approval decided", "source", src.ID, "by", userFrom(r.Context()).ID, "approval", src.Approval)
	a.recordChange(r, audit.Record{Action: "source.approval", Resource: "source/" + src.ID, Before: before,
		After: map[string]string{"approval": src.Approval, "decision": in.Decision, "comment": in.Comment}})
	return writeJSON(w, 200, src)
}

func (a *API) listDecisions(w http.ResponseWriter, r *http.Request) error {
	src, err := a.sourceByPath(r)
	if err != nil {
		return err
	}
	ds, err := a.opts.Governance.ListDecisions(r.Context(), src.ID)
	if err != nil {
		return err
	}
	return writeJSON(w, 200, list[governance.Decision]{Items: nonNil(ds)})
}

func (a *API) listEvents(w http.ResponseWriter, r *http.Request) error {
	limit, cursor, err := page(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	from, err := timeParam(r, "from")
	if err != nil {
		return err
	}
	to, err := timeParam(r, "to")
	if err != nil {
		return err
	}
	if typ := q.Get("type"); typ != "" && !isType(typ) {
		return apierror.Field("type", apierror.CodeInvalidField, "want identify, track, page, screen, group or alias")
	}
	profile, err := a.profileParam(r.Context(), q.Get("profile"))
	if err != nil {
		return err
	}
	source, err := a.sourceParam(r.Context(), q.Get("source"))
	if err != nil {
		return err
	}
	p, err := a.opts.Events.List(r.Context(), eventstore.Query{
		SourceID: source, Profile: profile, Type: q.Get("type"), Name: q.Get("event"),
		From: from, To: to, Limit: limit, Cursor: cursor,
	})
	if err != nil {
		return err
	}
	after := map[string]any{"filter": query(r, "type", "event", "source", "from", "to"), "count": len(p.Events)}
	subject := subjectOf(profile)
	if v := q.Get("profile"); v != "" && subject == "" {
		after["profileDigest"] = audit.Digest(v) // no profile: the value may be an e-mail address
	}
	if err := a.recordRead(r, audit.Record{Action: "events.list", Resource: "events", Subject: subject, After: after}); err != nil {
		return err
	}
	out := list[json.RawMessage]{Items: make([]json.RawMessage, 0, len(p.Events)), Next: p.Next}
	for _, e := range p.Events {
		out.Items = append(out.Items, Render(e))
	}
	return writeJSON(w, 200, out)
}

func (a *API) getEvent(w http.ResponseWriter, r *http.Request) error {
	source, err := a.sourceParam(r.Context(), r.URL.Query().Get("source"))
	if err != nil {
		return err
	}
	evs, err := a.opts.Events.Get(r.Context(), source, r.PathValue("messageId"))
	if err != nil {
		return err
	}
	if len(evs) > 1 {
		e := apierror.Field("source", apierror.CodeAmbiguous, "several sources sent this messageId; add ?source= one of the matches")
		for _, ev := range evs {
			e.Matches = append(e.Matches, apierror.Match{Source: ev.SourceID, MessageID: ev.MessageID})
		}
		return e
	}
	subject := ""
	if id := cmp.Or(evs[0].UserID, evs[0].AnonymousID); id != "" {
		p, err := a.profileParam(r.Context(), id)
		if err != nil {
			return err
		}
		subject = subjectOf(p)
	}
	if err := a.recordRead(r, audit.Record{Action: "events.read", Resource: "event/" + evs[0].SourceID + "/" + evs[0].MessageID, Subject: subject}); err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	_, err = w.Write(Render(evs[0]))
	return err
}

func isType(t string) bool {
	for _, k := range event.Types {
		if k == t {
			return true
		}
	}
	return false
}

// Render returns the event as Segment-spec JSON: the fields the client sent,
// with the server's messageId, receivedAt, corrected timestamp and the
// client's originalTimestamp, plus the sourceId.
func Render(e event.Event) json.RawMessage {
	m := map[string]json.RawMessage{}
	_ = json.Unmarshal(e.Raw, &m)
	delete(m, "writeKey")
	str := func(s string) json.RawMessage { b, _ := json.Marshal(s); return b }
	tm := func(t time.Time) json.RawMessage { return str(t.UTC().Format(time.RFC3339Nano)) }
	m["messageId"] = str(e.MessageID)
	m["type"] = str(e.Type)
	m["sourceId"] = str(e.SourceID)
	m["timestamp"] = tm(e.Timestamp)
	m["receivedAt"] = tm(e.ReceivedAt)
	if !e.OriginalTimestamp.IsZero() {
		m["originalTimestamp"] = tm(e.OriginalTimestamp)
	}
	if !e.SentAt.IsZero() {
		m["sentAt"] = tm(e.SentAt)
	}
	b, _ := json.Marshal(m)
	return b
}

// quarantined is a quarantine entry as the API shows it: the raw payload as
// JSON when it is JSON, else as a string.
type quarantined struct {
	quarantine.Entry
	Raw json.RawMessage `json:"raw"`
}

func (a *API) listQuarantine(w http.ResponseWriter, r *http.Request) error {
	limit, cursor, err := page(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	source, err := a.sourceParam(r.Context(), q.Get("source"))
	if err != nil {
		return err
	}
	entries, next, err := a.opts.Quarantine.List(r.Context(), quarantine.Filter{SourceID: source, Code: q.Get("code"), Status: q.Get("status")}, limit, cursor)
	if err != nil {
		return err
	}
	out := list[quarantined]{Items: make([]quarantined, 0, len(entries)), Next: next}
	ids := make([]string, 0, len(entries))
	for _, e := range entries {
		out.Items = append(out.Items, quarantined{Entry: e, Raw: rawJSON(e.Raw)})
		ids = append(ids, e.ID)
	}
	// Quarantined payloads are raw events, personal data included; the
	// entry names which were shown.
	if err := a.recordRead(r, audit.Record{Action: "quarantine.list", Resource: "quarantine",
		After: map[string]any{"filter": query(r, "source", "code", "status"), "ids": ids}}); err != nil {
		return err
	}
	return writeJSON(w, 200, out)
}

func rawJSON(b []byte) json.RawMessage {
	if len(b) > 0 && json.Valid(b) {
		var buf bytes.Buffer
		if json.Compact(&buf, b) == nil {
			return buf.Bytes()
		}
	}
	if !utf8.Valid(b) {
		b = bytes.ToValidUTF8(b, []byte("\uFFFD"))
	}
	s, _ := json.Marshal(string(b))
	return s
}

type replayResult struct {
	ID      string `json:"id"`
	Status  string `json:"status"` // replayed, invalid, not_found, already_replayed
	Code    string `json:"code,omitempty"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message,omitempty"`
}

// replayQuarantine validates held events again and sends those that now
// pass through the log and pipeline like new ones, keeping their original
// receivedAt. An event without a messageId gets one derived from its
// quarantine entry, so replaying twice still stores it once.
func (a *API) replayQuarantine(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		IDs []string `json:"ids"`
	}
	if err := decode(w, r, &in); err != nil {
		return err
	}
	if len(in.IDs) == 0 || len(in.IDs) > 1000 {
		return apierror.Field("ids", apierror.CodeInvalidField, "give 1 to 1000 quarantine entry ids")
	}
	results := make([]replayResult, 0, len(in.IDs))
	var replayed []string
	for _, id := range in.IDs {
		e, err := a.opts.Quarantine.Get(r.Context(), id)
		if err != nil {
			if isNotFound(err) {
				results = append(results, replayResult{ID: id, Status: "not_found"})
				continue
			}
			return err
		}
		if e.Status == quarantine.Replayed {
			results = append(results, replayResult{ID: id, Status: "already_replayed"})
			continue
		}
		if e.SourceID == "" {
			results = append(results, replayResult{ID: id, Status: "invalid", Code: e.Code, Message: "entry has no source; it cannot be replayed"})
			continue
		}
		ev, p := event.ParseEvent(e.Type, e.Raw, e.ReceivedAt, "replay-"+e.ID)
		if p != nil {
			results = append(results, replayResult{ID: id, Status: "invalid", Code: p.Code, Field: p.Field, Message: p.Message})
			continue
		}
		ev.SourceID = e.SourceID
		if err := a.opts.Log.Append(r.Context(), event.AppendEntries(nil, e.SourceID, []event.Event{ev}, nil)); err != nil {
			return apierror.ErrUnavailable
		}
		replayed = append(replayed, id)
		results = append(results, replayResult{ID: id, Status: "replayed"})
	}
	if len(replayed) > 0 {
		if _, err := a.opts.Quarantine.MarkReplayed(r.Context(), replayed...); err != nil {
			return err
		}
	}
	outcome := make([]map[string]string, 0, len(results))
	for _, res := range results {
		outcome = append(outcome, map[string]string{"id": res.ID, "status": res.Status, "code": res.Code})
	}
	a.recordChange(r, audit.Record{Action: "quarantine.replay", Resource: "quarantine", After: map[string]any{"results": outcome}})
	return writeJSON(w, 200, list[replayResult]{Items: results})
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
