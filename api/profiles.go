package api

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"

	"tandem/access"
	"tandem/apierror"
	"tandem/eventstore"
	"tandem/identity"
)

// Auditor is told of every read of a person's profile, before the answer
// is sent, and of every change to one, after it is made: the hook through
// which the audit log records who looked at whom (by default the log in
// [Options].Audit, see logAuditor). An error fails a read: a read that
// cannot be recorded is not served. A change is made either way.
type Auditor interface {
	ProfileAccess(ctx context.Context, a ProfileAccess) error
}

// ProfileAccess is one profile read or change.
type ProfileAccess struct {
	User      access.User
	Action    string // "lookup", "read", "events", "explain", "unmerge", "consent", "consent_history"
	ProfileID string
	// Before and After describe a change (unmerge): ids and kinds, never
	// identifiers or traits.
	Before, After any
}

type noAudit struct{}

func (noAudit) ProfileAccess(context.Context, ProfileAccess) error { return nil }

func (a *API) profileRoutes() {
	a.route("/api/v1/profiles/lookup", map[string]handler{"GET": a.need(access.ReadProfiles, a.lookupProfile)})
	a.route("/api/v1/profiles/{id}", map[string]handler{"GET": a.need(access.ReadProfiles, a.getProfile)})
	a.route("/api/v1/profiles/{id}/events", map[string]handler{"GET": a.need(access.ReadProfiles, a.profileEvents)})
	a.route("/api/v1/profiles/{id}/explain", map[string]handler{"GET": a.need(access.ReadProfiles, a.explainProfile)})
	a.route("/api/v1/profiles/{id}/unmerge", map[string]handler{"POST": a.need(access.UnmergeProfiles, a.unmergeProfile)})
}

// profileView is a profile as the API shows it (API.md): audiences and
// consent are filled by their features; until then empty.
type profileView struct {
	identity.Profile
	Audiences []string `json:"audiences"`
	// Consent is a privacy.State when this node keeps consent.
	Consent any `json:"consent"`
	// ComputedTraits are the computed traits' values (package audience).
	ComputedTraits map[string]any `json:"computedTraits"`
}

func view(p identity.Profile) profileView {
	return profileView{Profile: p, Audiences: []string{}, Consent: map[string]any{}, ComputedTraits: map[string]any{}}
}

func (a *API) audit(r *http.Request, action, id string) error {
	if err := a.opts.Auditor.ProfileAccess(r.Context(), ProfileAccess{User: userFrom(r.Context()), Action: action, ProfileID: id}); err != nil {
		a.opts.Logger.Error("audit hook failed", "action", action, "err", err.Error())
		return apierror.ErrUnavailable
	}
	return nil
}

func (a *API) identityStore() (*identity.Store, error) {
	if a.opts.Identity == nil {
		return nil, apierror.Of(apierror.CodeUnavailable, "identity resolution is not running on this node")
	}
	return a.opts.Identity, nil
}

func (a *API) lookupProfile(w http.ResponseWriter, r *http.Request) error {
	st, err := a.identityStore()
	if err != nil {
		return err
	}
	typ, val, ok := strings.Cut(r.URL.Query().Get("identifier"), ":")
	if !ok || typ == "" || val == "" {
		return apierror.Field("identifier", apierror.CodeInvalidField, "want TYPE:VALUE, e.g. email:ann@example.com")
	}
	p, err := st.Lookup(r.Context(), typ, val)
	if err != nil {
		return err
	}
	v, err := a.withConsent(r.Context(), view(p))
	if err != nil {
		return err
	}
	if v, err = a.withComputed(r.Context(), v); err != nil {
		return err
	}
	if err := a.audit(r, "lookup", p.ID); err != nil {
		return err
	}
	return writeJSON(w, 200, v)
}

func (a *API) getProfile(w http.ResponseWriter, r *http.Request) error {
	st, err := a.identityStore()
	if err != nil {
		return err
	}
	p, err := st.Profile(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	v, err := a.withConsent(r.Context(), view(p))
	if err != nil {
		return err
	}
	if v, err = a.withComputed(r.Context(), v); err != nil {
		return err
	}
	if err := a.audit(r, "read", p.ID); err != nil {
		return err
	}
	return writeJSON(w, 200, v)
}

// profileEvents is the profile's whole timeline, across channels and
// including events from before merges: the event store follows the
// profile links identity keeps.
func (a *API) profileEvents(w http.ResponseWriter, r *http.Request) error {
	st, err := a.identityStore()
	if err != nil {
		return err
	}
	id, err := st.Current(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	limit, cursor, err := page(r)
	if err != nil {
		return err
	}
	from, err := timeParam(r, "from")
	if err != nil {
		return err
	}
	to, err := timeParam(r, "to")
	if err != nil {
		return err
	}
	q := r.URL.Query()
	if typ := q.Get("type"); typ != "" && !isType(typ) {
		return apierror.Field("type", apierror.CodeInvalidField, "want identify, track, page, screen, group or alias")
	}
	if err := a.audit(r, "events", id); err != nil {
		return err
	}
	p, err := a.opts.Events.List(r.Context(), eventstore.Query{Profile: id, Type: q.Get("type"), Name: q.Get("event"),
		From: from, To: to, Limit: limit, Cursor: cursor})
	if err != nil {
		return err
	}
	out := list[json.RawMessage]{Items: make([]json.RawMessage, 0, len(p.Events)), Next: p.Next}
	for _, e := range p.Events {
		out.Items = append(out.Items, Render(e))
	}
	return writeJSON(w, 200, out)
}

func (a *API) explainProfile(w http.ResponseWriter, r *http.Request) error {
	st, err := a.identityStore()
	if err != nil {
		return err
	}
	x, err := st.Explain(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	if err := a.audit(r, "explain", x.ID); err != nil {
		return err
	}
	return writeJSON(w, 200, x)
}

func (a *API) unmergeProfile(w http.ResponseWriter, r *http.Request) error {
	st, err := a.identityStore()
	if err != nil {
		return err
	}
	var in struct {
		MergeID    string               `json:"mergeId"`
		Identifier *identity.Identifier `json:"identifier"`
		Reason     string               `json:"reason"`
	}
	if err := decode(w, r, &in); err != nil {
		return err
	}
	id := r.PathValue("id")
	u := userFrom(r.Context())
	res, err := st.Unmerge(r.Context(), id, identity.Unmerge{MergeID: in.MergeID, Identifier: in.Identifier, Reason: in.Reason, By: u.ID})
	if err != nil {
		return err
	}
	a.opts.Logger.Info("profile unmerged", "profile", id, "decision", res.Decision.ID, "kind", res.Decision.Kind, "by", u.ID)
	views := make([]profileView, 0, len(res.Profiles))
	ids := make([]string, 0, len(res.Profiles))
	for _, p := range res.Profiles {
		views = append(views, view(p))
		ids = append(ids, p.ID)
	}
	// Recorded after the change and before the answer, which shows the
	// resulting profiles: unrecorded, they are not shown (the unmerge is
	// made; taking it again changes nothing and is recorded then).
	if err := a.opts.Auditor.ProfileAccess(context.WithoutCancel(r.Context()), ProfileAccess{User: u, Action: "unmerge", ProfileID: id,
		Before: map[string]any{"profile": id, "mergeId": in.MergeID},
		After:  map[string]any{"decision": res.Decision.ID, "kind": res.Decision.Kind, "profiles": ids}}); err != nil {
		a.opts.Logger.Error("audit log: a completed unmerge was not recorded", "profile", id, "err", err.Error())
		return apierror.ErrUnavailable
	}
	if a.opts.Audiences != nil {
		// The sides' audiences now; should this fail, the next sweep does it.
		if err := a.opts.Audiences.Evaluate(context.WithoutCancel(r.Context()), append(ids, id)...); err != nil {
			a.opts.Logger.Warn("audiences after an unmerge: left to the sweep", "profile", id, "err", err.Error())
		}
	}
	return writeJSON(w, 200, struct {
		Decision identity.Decision `json:"decision"`
		Profiles []profileView     `json:"profiles"`
	}{res.Decision, views})
}

// profileParam maps the profile filter of GET /events to a resolved
// profile: a profile id (following merges), or else a userId or
// anonymousId, as before identity resolution ran, standing for the profile
// that holds it. Anything else is passed on unchanged.
func (a *API) profileParam(ctx context.Context, v string) (string, error) {
	if v == "" || a.opts.Identity == nil {
		return v, nil
	}
	if id, err := a.opts.Identity.Current(ctx, v); err == nil {
		return id, nil
	} else if !isNotFound(err) {
		return "", err
	}
	for _, typ := range []string{identity.UserID, identity.AnonymousID} {
		p, err := a.opts.Identity.Lookup(ctx, typ, v)
		if err == nil {
			return p.ID, nil
		}
		if !isNotFound(err) {
			return "", err
		}
	}
	return v, nil
}
