package api

import (
	"net/http"
	"time"

	"tandem/access"
	"tandem/analytics"
	"tandem/apierror"
)

// analyticsRoutes registers the journey analytics: each a POST of a query
// (see package analytics for the semantics) answered with its result.
func (a *API) analyticsRoutes() {
	a.route("/api/v1/analytics/funnel", map[string]handler{"POST": a.need(access.ReadAnalytics, a.funnel)})
	a.route("/api/v1/analytics/journey", map[string]handler{"POST": a.need(access.ReadAnalytics, a.journey)})
	a.route("/api/v1/analytics/paths", map[string]handler{"POST": a.need(access.ReadAnalytics, a.paths)})
	a.route("/api/v1/analytics/retention", map[string]handler{"POST": a.need(access.ReadAnalytics, a.retention)})
}

// analyticsQuery decodes and validates a query; validate names the field
// at fault.
func (a *API) analyticsQuery(w http.ResponseWriter, r *http.Request, q any, validate func(time.Time) error) error {
	if a.opts.Analytics == nil {
		return apierror.Of(apierror.CodeUnavailable, "analytics are not available on this node")
	}
	if err := decode(w, r, q); err != nil {
		return err
	}
	// A FieldError (here or from the engine, which finds some limits while
	// answering) becomes a 400 naming the field in errorShape.
	return validate(time.Now())
}

func (a *API) funnel(w http.ResponseWriter, r *http.Request) error {
	var q analytics.FunnelQuery
	if err := a.analyticsQuery(w, r, &q, q.Validate); err != nil {
		return err
	}
	res, err := a.opts.Analytics.Funnel(r.Context(), &q)
	if err != nil {
		return err
	}
	return writeJSON(w, 200, res)
}

func (a *API) journey(w http.ResponseWriter, r *http.Request) error {
	var q analytics.JourneyQuery
	if err := a.analyticsQuery(w, r, &q, func(now time.Time) error { return q.Validate(now, a.lifecycle()) }); err != nil {
		return err
	}
	res, err := a.opts.Analytics.Journey(r.Context(), &q)
	if err != nil {
		return err
	}
	return writeJSON(w, 200, res)
}

func (a *API) paths(w http.ResponseWriter, r *http.Request) error {
	var q analytics.PathsQuery
	if err := a.analyticsQuery(w, r, &q, q.Validate); err != nil {
		return err
	}
	res, err := a.opts.Analytics.Paths(r.Context(), &q)
	if err != nil {
		return err
	}
	return writeJSON(w, 200, res)
}

func (a *API) retention(w http.ResponseWriter, r *http.Request) error {
	var q analytics.RetentionQuery
	if err := a.analyticsQuery(w, r, &q, q.Validate); err != nil {
		return err
	}
	res, err := a.opts.Analytics.Retention(r.Context(), &q)
	if err != nil {
		return err
	}
	return writeJSON(w, 200, res)
}
