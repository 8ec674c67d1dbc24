package api

import (
	"net/http"
	"time"

	"tandem/access"
	"tandem/analytics"
	"tandem/apierror"
	"tandem/attribution"
)

// attributionRoutes registers attribution (POST a query, see package
// attribution) and the cost-and-return report (GET with query
// parameters), both analytics reads.
func (a *API) attributionRoutes() {
	a.route("/api/v1/analytics/attribution", map[string]handler{"POST": a.need(access.ReadAnalytics, a.attribution)})
	a.route("/api/v1/analytics/roi", map[string]handler{"GET": a.need(access.ReadAnalytics, a.roi)})
}

func (a *API) attributionConfig() *attribution.Config {
	if a.opts.AttributionConfig == nil {
		c := attribution.DefaultConfig()
		return &c
	}
	return a.opts.AttributionConfig
}

func (a *API) attribution(w http.ResponseWriter, r *http.Request) error {
	if a.opts.Attribution == nil {
		return apierror.Of(apierror.CodeUnavailable, "attribution is not available on this node")
	}
	var q attribution.Query
	if err := decode(w, r, &q); err != nil {
		return err
	}
	cfg := a.attributionConfig()
	if err := q.Validate(time.Now(), cfg); err != nil {
		return err
	}
	res, err := cfg.Attribute(r.Context(), a.opts.Attribution, &q)
	if err != nil {
		return err
	}
	return writeJSON(w, 200, res)
}

// roi answers GET /analytics/roi?from=&to=&model=&conversion=&value=&lookback=.
func (a *API) roi(w http.ResponseWriter, r *http.Request) error {
	if a.opts.Attribution == nil {
		return apierror.Of(apierror.CodeUnavailable, "attribution is not available on this node")
	}
	p := r.URL.Query()
	q := attribution.ReportQuery{Model: p.Get("model"), Conversion: attribution.Conversion{Event: p.Get("conversion"), Value: p.Get("value")}}
	if q.Conversion.Event == "" && q.Conversion.Value != "" {
		return apierror.Field("conversion", apierror.CodeInvalidField, "give the conversion event with its value property")
	}
	for _, f := range []struct {
		name string
		t    *analytics.Time
	}{{"from", &q.From}, {"to", &q.To}} {
		if v := p.Get(f.name); v != "" {
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return apierror.Field(f.name, apierror.CodeInvalidField, "not an RFC 3339 time")
			}
			*f.t = analytics.At(t)
		}
	}
	if v := p.Get("lookback"); v != "" {
		d, err := analytics.ParseDuration(v)
		if err != nil {
			return apierror.Field("lookback", apierror.CodeInvalidField, err.Error())
		}
		q.Lookback = d
	}
	cfg := a.attributionConfig()
	if err := q.Validate(time.Now(), cfg); err != nil {
		return err
	}
	cat, err := a.catalog(r)
	if err != nil {
		return err
	}
	tools := make([]attribution.Tool, len(cat.Tools))
	for i, t := range cat.Tools {
		tools[i] = attribution.Tool{ID: t.ID, Name: t.Name, Kind: t.Kind, MonthlyCost: t.MonthlyCost, DataCategories: t.DataCategories}
	}
	rep, err := cfg.Report(r.Context(), a.opts.Attribution, &q, tools)
	if err != nil {
		return err
	}
	return writeJSON(w, 200, rep)
}
