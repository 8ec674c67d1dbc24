package api

import (
	"net/http"

	"tandem/access"
	"tandem/analytics"
	"tandem/apierror"
)

// settingsRoutes show the node's settings that come from its config file
// (the identity rules, the lifecycle stages), for `tandem export` and
// `tandem apply` to compare with a manifest. They are read-only: the file
// sets them, at start.
func (a *API) settingsRoutes() {
	a.route("/api/v1/identity/rules", map[string]handler{"GET": a.need(access.ReadCatalog, a.identityRules)})
	a.route("/api/v1/journey/stages", map[string]handler{"GET": a.need(access.ReadCatalog, a.journeyStages)})
}

func (a *API) identityRules(w http.ResponseWriter, r *http.Request) error {
	if a.opts.Identity == nil {
		return &apierror.Error{Status: 503, Code: apierror.CodeUnavailable, Message: "identity resolution does not run on this node", RetryAfter: 1}
	}
	return writeJSON(w, 200, a.opts.Identity.Rules())
}

func (a *API) journeyStages(w http.ResponseWriter, r *http.Request) error {
	return writeJSON(w, 200, struct {
		Stages []analytics.Stage `json:"stages"`
	}{nonNil(a.opts.Stages)})
}
