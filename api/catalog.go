package api

import (
	"net/http"

	"tandem/access"
	"tandem/governance"
)

// The catalogue's tools come from providers: the governance store gives
// the sources; Options.Catalog adds more (destinations, when the delivery
// side registers its provider).
func (a *API) catalogRoutes() {
	a.route("/api/v1/catalog", map[string]handler{"GET": a.need(access.ReadCatalog, a.getCatalog)})
	a.route("/api/v1/catalog/report", map[string]handler{"GET": a.need(access.ReadCatalog, a.catalogReport)})
}

func (a *API) catalog(r *http.Request) (governance.Catalog, error) {
	providers := append([]governance.ToolProvider{a.opts.Governance}, a.opts.Catalog...)
	return governance.BuildCatalog(r.Context(), providers...)
}

func (a *API) getCatalog(w http.ResponseWriter, r *http.Request) error {
	c, err := a.catalog(r)
	if err != nil {
		return err
	}
	return writeJSON(w, 200, c)
}

func (a *API) catalogReport(w http.ResponseWriter, r *http.Request) error {
	c, err := a.catalog(r)
	if err != nil {
		return err
	}
	return writeJSON(w, 200, governance.BuildReport(c))
}
