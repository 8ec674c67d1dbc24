package api

import (
	"net/http"

	"tandem/access"
	"tandem/apierror"
	"tandem/audit"
	"tandem/privacy"
)

// privacyRoutes are data-subject requests (see docs/privacy.md): filed,
// followed and carried out by admin and privacy.
func (a *API) privacyRoutes() {
	a.route("/api/v1/privacy/requests", map[string]handler{
		"POST": a.need(access.ManageRequests, a.createPrivacyRequest),
		"GET":  a.need(access.ManageRequests, a.listPrivacyRequests)})
	a.route("/api/v1/privacy/requests/{id}", map[string]handler{"GET": a.need(access.ManageRequests, a.getPrivacyRequest)})
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
	u := userFrom(r.Context())
	req, err := rs.Create(r.Context(), privacy.NewRequest{Type: in.Type, Identity: in.Identity, VerifiedBy: u.ID, Method: in.Verification.Method})
	if err != nil {
		return err
	}
	// The identifier is personal data: the audit record names the request,
	// its type and the verification, not the person.
	a.recordChange(r, audit.Record{Action: "privacy_request.create", Resource: "privacy_request/" + req.ID,
		After: map[string]any{"type": req.Type, "identityType": req.Identity.Type, "verification": req.Verification, "deadline": req.Deadline}})
	if req.Type == privacy.RequestObjection {
		if req, err = rs.Object(r.Context(), req.ID, a.opts.Consent, u.ID); err != nil {
			return err
		}
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
