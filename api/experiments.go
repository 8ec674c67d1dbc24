package api

import (
	"errors"
	"net/http"
	"time"

	"tandem/access"
	"tandem/apierror"
	"tandem/experiment"
	"tandem/statestore"
)

// experimentRoutes registers the experiments (A/B tests; see package
// experiment for the semantics and docs/experiments.md for the
// statistics).
func (a *API) experimentRoutes() {
	a.route("/api/v1/experiments", map[string]handler{
		"POST": a.need(access.ManageExperiments, a.createExperiment),
		"GET":  a.need(access.ReadExperiments, a.listExperiments),
	})
	a.route("/api/v1/experiments/{id}", map[string]handler{"GET": a.need(access.ReadExperiments, a.getExperiment)})
	a.route("/api/v1/experiments/{id}/results", map[string]handler{"GET": a.need(access.ReadExperiments, a.experimentResults)})
}

// experimentRequest is the body of POST /experiments.
type experimentRequest struct {
	Key                string                 `json:"key"`
	Name               string                 `json:"name"`
	ExposureEvent      string                 `json:"exposureEvent"`
	ExperimentProperty string                 `json:"experimentProperty"`
	VariationProperty  string                 `json:"variationProperty"`
	Variations         []experiment.Variation `json:"variations"`
	Control            string                 `json:"control"`
	Holdout            float64                `json:"holdout"`
	Metrics            []experiment.Metric    `json:"metrics"`
	From               string                 `json:"from"`
	To                 string                 `json:"to"`
}

func (a *API) experiments() (*experiment.Store, error) {
	if a.opts.Experiments == nil {
		return nil, apierror.Of(apierror.CodeUnavailable, "experiments are not available on this node")
	}
	return a.opts.Experiments, nil
}

func (a *API) createExperiment(w http.ResponseWriter, r *http.Request) error {
	s, err := a.experiments()
	if err != nil {
		return err
	}
	var req experimentRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	e := experiment.Experiment{Key: req.Key, Name: req.Name, ExposureEvent: req.ExposureEvent, ExperimentProperty: req.ExperimentProperty,
		VariationProperty: req.VariationProperty, Variations: req.Variations, Control: req.Control, Holdout: req.Holdout, Metrics: req.Metrics}
	for _, f := range []struct {
		name string
		s    string
		set  func(t time.Time)
	}{
		{"from", req.From, func(t time.Time) { e.From = t }},
		{"to", req.To, func(t time.Time) { e.To = &t }},
	} {
		if f.s == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, f.s)
		if err != nil {
			return apierror.Field(f.name, apierror.CodeInvalidField, "not an RFC 3339 time")
		}
		f.set(t.UTC())
	}
	created, err := s.Create(r.Context(), e, userFrom(r.Context()).ID)
	if err != nil {
		if errors.Is(err, statestore.ErrConflict) {
			return apierror.Field("key", apierror.CodeConflict, "an experiment with this key exists")
		}
		return err
	}
	return writeJSON(w, http.StatusCreated, created)
}

func (a *API) listExperiments(w http.ResponseWriter, r *http.Request) error {
	s, err := a.experiments()
	if err != nil {
		return err
	}
	limit, cursor, err := page(r)
	if err != nil {
		return err
	}
	items, next, err := s.List(r.Context(), limit, cursor)
	if err != nil {
		return err
	}
	return writeJSON(w, 200, list[experiment.Experiment]{Items: items, Next: next})
}

func (a *API) getExperiment(w http.ResponseWriter, r *http.Request) error {
	s, err := a.experiments()
	if err != nil {
		return err
	}
	e, err := s.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, 200, e)
}

func (a *API) experimentResults(w http.ResponseWriter, r *http.Request) error {
	s, err := a.experiments()
	if err != nil {
		return err
	}
	e, err := s.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	if a.opts.ExperimentSums == nil {
		return apierror.Of(apierror.CodeUnavailable, "experiment results are not available on this node (its event store offers no aggregation)")
	}
	res, err := experiment.Analyze(r.Context(), a.opts.ExperimentSums, &e, time.Now())
	if err != nil {
		return err
	}
	return writeJSON(w, 200, res)
}
