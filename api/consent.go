package api

import (
	"context"
	"net/http"

	"tandem/access"
	"tandem/apierror"
	"tandem/privacy"
)

// consentRoutes are a profile's consent (see docs/privacy.md): its
// decisions shown on GET /profiles/{id}, their history, and decisions
// recorded through the API by admin or privacy.
func (a *API) consentRoutes() {
	a.route("/api/v1/profiles/{id}/consent", map[string]handler{"PUT": a.need(access.WriteConsent, a.putConsent)})
	a.route("/api/v1/profiles/{id}/consent/history", map[string]handler{"GET": a.need(access.ReadProfiles, a.consentHistory)})
}

func (a *API) consentStore() (*privacy.Store, error) {
	if a.opts.Consent == nil {
		return nil, apierror.Of(apierror.CodeUnavailable, "consent is not kept on this node")
	}
	return a.opts.Consent, nil
}

// withConsent fills v's consent, when this node keeps it.
func (a *API) withConsent(ctx context.Context, v profileView) (profileView, error) {
	if a.opts.Consent == nil {
		return v, nil
	}
	st, err := a.opts.Consent.State(ctx, v.ID)
	if err != nil {
		return v, err
	}
	v.Consent = st
	return v, nil
}

func (a *API) putConsent(w http.ResponseWriter, r *http.Request) error {
	cs, err := a.consentStore()
	if err != nil {
		return err
	}
	if _, err := a.identityStore(); err != nil {
		return err
	}
	var in struct {
		Purposes map[string]bool `json:"purposes"`
		Source   string          `json:"source"`
	}
	if err := decode(w, r, &in); err != nil {
		return err
	}
	id, err := a.opts.Identity.Current(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	before, err := cs.State(r.Context(), id)
	if err != nil {
		return err
	}
	u := userFrom(r.Context())
	after, err := cs.Set(r.Context(), id, in.Purposes, in.Source, u.ID)
	if err != nil {
		return err
	}
	// A change to a person's data, recorded like an unmerge: after it is
	// made and before the answer, which is not shown unrecorded.
	if err := a.opts.Auditor.ProfileAccess(context.WithoutCancel(r.Context()), ProfileAccess{User: u, Action: "consent", ProfileID: id,
		Before: map[string]any{"purposes": before.Purposes, "source": before.Source},
		After:  map[string]any{"purposes": in.Purposes, "source": after.Source}}); err != nil {
		a.opts.Logger.Error("audit log: a consent change was not recorded", "profile", id, "err", err.Error())
		return apierror.ErrUnavailable
	}
	return writeJSON(w, 200, after)
}

func (a *API) consentHistory(w http.ResponseWriter, r *http.Request) error {
	cs, err := a.consentStore()
	if err != nil {
		return err
	}
	if _, err := a.identityStore(); err != nil {
		return err
	}
	limit, cursor, err := page(r)
	if err != nil {
		return err
	}
	id, err := a.opts.Identity.Current(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	if err := a.audit(r, "consent_history", id); err != nil {
		return err
	}
	items, next, err := cs.History(r.Context(), id, limit, cursor)
	if err != nil {
		return err
	}
	return writeJSON(w, 200, list[privacy.Change]{Items: items, Next: next})
}
