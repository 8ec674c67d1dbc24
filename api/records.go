package api

import (
	"net/http"
	"time"

	"tandem/access"
	"tandem/apierror"
	"tandem/audit"
	"tandem/governance"
	"tandem/policy"
	"tandem/privacy"
)

// recordsRoutes: the records of processing (Art. 30) and retention.
func (a *API) recordsRoutes() {
	a.route("/api/v1/privacy/records", map[string]handler{"GET": a.need(access.ReadRecords, a.getRecords)})
	a.route("/api/v1/privacy/retention", map[string]handler{
		"GET": a.need(access.ReadRecords, a.getRetention),
		"PUT": a.need(access.ProposeSettings, a.putSetting(policy.Retention)),
	})
	a.route("/api/v1/privacy/retention/run", map[string]handler{"POST": a.need(access.RunRetention, a.runRetention)})
}

// classification is the installation's classification, or the defaults
// alone without a classifier.
func (a *API) classification(r *http.Request) (*privacy.Classification, map[string][]string, error) {
	if a.opts.Classifier == nil {
		return privacy.NewClassification(privacy.Settings{}), nil, nil
	}
	c, err := a.opts.Classifier.Current(r.Context())
	if err != nil {
		return nil, nil, err
	}
	per, err := a.opts.Classifier.SourceCategories(r.Context())
	return c, per, err
}

func (a *API) getRecords(w http.ResponseWriter, r *http.Request) error {
	cat, err := a.catalog(r)
	if err != nil {
		return err
	}
	dests, err := a.opts.Governance.AllDestinations(r.Context())
	if err != nil {
		return err
	}
	class, per, err := a.classification(r)
	if err != nil {
		return err
	}
	in := privacy.RecordsInput{Catalog: cat, Destinations: dests, Classification: class, SourceCategories: per,
		Subjects: a.opts.Subjects, Now: time.Now()}
	if a.opts.Consent != nil {
		in.Consent = a.opts.Consent.Config()
	} else {
		in.Consent = privacy.DefaultConfig()
	}
	if a.opts.Retention != nil {
		in.Retention = a.opts.Retention.Policy()
	}
	return writeJSON(w, 200, privacy.BuildRecords(in))
}

func (a *API) retainer() (*privacy.Retainer, error) {
	if a.opts.Retention == nil {
		return nil, apierror.Of(apierror.CodeUnavailable, "retention does not run on this node (a node without the pipeline)")
	}
	return a.opts.Retention, nil
}

func (a *API) getRetention(w http.ResponseWriter, r *http.Request) error {
	rt, err := a.retainer()
	if err != nil {
		return err
	}
	p := rt.Policy()
	srcs, err := allSources(r, a.opts.Governance)
	if err != nil {
		return err
	}
	ages := []privacy.SourceAge{}
	for _, s := range srcs {
		age, basis := p.AgeOf(s)
		sa := privacy.SourceAge{Source: s.ID, Name: s.Name, Basis: basis}
		if age > 0 {
			sa.MaxAge = age.String()
		}
		ages = append(ages, sa)
	}
	return writeJSON(w, 200, map[string]any{
		"policy":  privacy.BuildRecords(privacy.RecordsInput{Retention: p, Now: time.Now()}).Retention,
		"sources": ages, "every": p.Interval().String(), "logMaxAge": p.LogAge(a.opts.LogMaxAge).String(), "lastRun": rt.LastRun(),
	})
}

func allSources(r *http.Request, g *governance.Store) ([]governance.Source, error) {
	var out []governance.Source
	for cursor := ""; ; {
		page, next, err := g.ListSources(r.Context(), 1000, cursor)
		if err != nil {
			return nil, err
		}
		out = append(out, page...)
		if next == "" {
			return out, nil
		}
		cursor = next
	}
}

func (a *API) runRetention(w http.ResponseWriter, r *http.Request) error {
	rt, err := a.retainer()
	if err != nil {
		return err
	}
	run, err := rt.RunOnce(r.Context())
	a.recordChange(r, audit.Record{Action: "privacy.retention_run", Resource: "retention",
		After: map[string]any{"removed": run.Removed, "errors": run.Errors}})
	if err != nil {
		a.opts.Logger.Warn("retention run failed", "err", err.Error())
		return apierror.Of(apierror.CodeUnavailable, "a store could not remove its expired data (the others did); try again")
	}
	return writeJSON(w, 200, run)
}
