package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"tandem/access"
	"tandem/apierror"
	"tandem/audit"
	"tandem/eventstore"
	"tandem/policy"
	"tandem/trackingplan"
)

func (a *API) trackingPlanRoutes() {
	a.route("/api/v1/tracking-plans", map[string]handler{"GET": a.need(access.ReadTrackingPlans, a.listTrackingPlans)})
	a.route("/api/v1/tracking-plans/{id}", map[string]handler{
		"GET": a.need(access.ReadTrackingPlans, a.getTrackingPlan),
		"PUT": a.need(access.ProposeChanges, a.putTrackingPlan),
	})
	a.route("/api/v1/tracking-plans/{id}/draft", map[string]handler{"POST": a.need(access.ManageTrackingPlans, a.draftTrackingPlan)})
}

func (a *API) needPlans() error {
	if a.opts.Plans == nil {
		return &apierror.Error{Status: 503, Code: apierror.CodeUnavailable, Message: "tracking plans are not available on this node", RetryAfter: 1}
	}
	return nil
}

// planView is a plan as the API shows it: with the source's name and, for
// GET of one plan, the unplanned events flagged so far.
type planView struct {
	trackingplan.Plan
	SourceName string                   `json:"sourceName"`
	Flagged    []trackingplan.Unplanned `json:"flagged,omitempty"`
}

func (a *API) listTrackingPlans(w http.ResponseWriter, r *http.Request) error {
	if err := a.needPlans(); err != nil {
		return err
	}
	plans, err := a.opts.Plans.List(r.Context())
	if err != nil {
		return err
	}
	out := make([]planView, 0, len(plans))
	for _, p := range plans {
		v := planView{Plan: p}
		if src, err := a.opts.Governance.GetSource(r.Context(), p.SourceID); err == nil {
			v.SourceName = src.Name
		}
		out = append(out, v)
	}
	return writeJSON(w, 200, list[planView]{Items: out})
}

func (a *API) getTrackingPlan(w http.ResponseWriter, r *http.Request) error {
	if err := a.needPlans(); err != nil {
		return err
	}
	src, err := a.sourceByPath(r)
	if err != nil {
		return err
	}
	p, err := a.opts.Plans.Get(r.Context(), src.ID, 0)
	if isNotFound(err) {
		return apierror.Of(apierror.CodeNotFound, "source "+src.ID+" has no tracking plan; PUT one (POST …/draft drafts one from its events)")
	}
	if err != nil {
		return err
	}
	v := planView{Plan: p, SourceName: src.Name}
	if v.Flagged, err = a.opts.Plans.UnplannedEvents(r.Context(), src.ID); err != nil {
		return err
	}
	return writeJSON(w, 200, v)
}

// putTrackingPlan stores a new version of a source's plan; it is in force
// for the events processed from then on, replays included. When the
// decision rights want approvals for it, the plan is kept as a change
// request (202) and stored once approved.
func (a *API) putTrackingPlan(w http.ResponseWriter, r *http.Request) error {
	if err := a.needPlans(); err != nil {
		return err
	}
	var in struct {
		Unplanned string                            `json:"unplanned"`
		Events    map[string]trackingplan.EventPlan `json:"events"`
	}
	if err := decode(w, r, &in); err != nil {
		return err
	}
	src, err := a.sourceByPath(r)
	if err != nil {
		return err
	}
	var before any
	action := policy.Create
	if old, err := a.opts.Plans.Get(r.Context(), src.ID, 0); err == nil {
		before, action = old, policy.Update
	} else if !isNotFound(err) {
		return err
	}
	plan := trackingplan.Plan{SourceID: src.ID, Unplanned: in.Unplanned, Events: in.Events, CreatedBy: userFrom(r.Context()).ID}
	if err := trackingplan.Validate(plan); err != nil {
		return err
	}
	as, err := a.assess(r.Context(), policy.TrackingPlan, nil)
	if err != nil {
		return err
	}
	if !as.Direct {
		c, err := a.propose(r.Context(), policy.Proposal{Kind: policy.TrackingPlan, Action: action, Subject: src.ID,
			Before: before, After: plan, Payload: plan, Assessment: as})
		if err != nil {
			return err
		}
		return held(w, c)
	}
	p, err := a.opts.Plans.Put(r.Context(), plan)
	if err != nil {
		return err
	}
	if a.opts.Classifier != nil {
		a.opts.Classifier.Forget() // its x-category tags mask from now on
	}
	a.recordChange(r, audit.Record{Action: "trackingplan.put", Resource: "tracking-plan/" + src.ID, Before: before, After: p})
	return writeJSON(w, 200, planView{Plan: p, SourceName: src.Name})
}

// applyTrackingPlan stores an approved plan, as its proposer's.
func (a *API) applyTrackingPlan(ctx context.Context, d policy.Decided) error {
	if d.Decision != policy.Approve {
		return nil
	}
	if a.opts.Plans == nil {
		return errors.New("tracking plans are not available on this node")
	}
	var plan trackingplan.Plan
	if err := json.Unmarshal(d.Payload, &plan); err != nil {
		return fmt.Errorf("change %s: payload: %w", d.Change.ID, err)
	}
	var before any
	if old, err := a.opts.Plans.Get(ctx, plan.SourceID, 0); err == nil {
		before = old
	} else if !isNotFound(err) {
		return err
	}
	plan.CreatedBy = d.Proposer.ID
	p, err := a.opts.Plans.Put(ctx, plan)
	if err != nil {
		return err
	}
	a.recordChangeCtx(ctx, audit.Record{Action: "trackingplan.put", Resource: "tracking-plan/" + plan.SourceID,
		ChangeRequest: d.Change.ID, Before: before, After: p})
	return nil
}

// draftSample is how many recent events a draft is inferred from.
const draftSample = 1000

// draftTrackingPlan infers a plan from the source's events of the last 30
// days (up to draftSample of them). It stores nothing: the caller edits
// the draft and PUTs it.
func (a *API) draftTrackingPlan(w http.ResponseWriter, r *http.Request) error {
	src, err := a.sourceByPath(r)
	if err != nil {
		return err
	}
	page, err := a.opts.Events.List(r.Context(), eventstore.Query{SourceID: src.ID,
		From: time.Now().Add(-30 * 24 * time.Hour), Limit: draftSample})
	if err != nil {
		return err
	}
	d := trackingplan.Draft(src.ID, page.Events)
	return writeJSON(w, 200, struct {
		Unplanned string                            `json:"unplanned"`
		Events    map[string]trackingplan.EventPlan `json:"events"`
		Sampled   int                               `json:"sampled"`
	}{d.Unplanned, d.Events, len(page.Events)})
}
