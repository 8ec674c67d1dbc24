package api

import (
	"context"
	"errors"
	"net/http"

	"tandem/access"
	"tandem/apierror"
	"tandem/audit"
	"tandem/delivery"
	"tandem/governance"
	"tandem/policy"
)

// Delivery is the delivery engine as the destination endpoints use it
// (*delivery.Manager).
type Delivery interface {
	Refresh()
	Forget(ctx context.Context, id string) error
	Deliveries(id string, limit int) []delivery.Attempt
	DeadLetters(ctx context.Context, id string, limit int, after string) ([]delivery.DeadLetter, error)
	Replay(ctx context.Context, id string) (int, error)
}

func (a *API) destinationRoutes() {
	manage := access.ManageDestinations
	a.route("/api/v1/destinations", map[string]handler{"POST": a.need(access.ProposeChanges, a.createDestination), "GET": a.need(access.ReadCatalog, a.listDestinations)})
	a.route("/api/v1/destinations/{id}", map[string]handler{
		"GET":    a.need(access.ReadCatalog, a.getDestination),
		"PATCH":  a.need(access.ProposeChanges, a.updateDestination),
		"DELETE": a.need(manage, a.deleteDestination),
	})
	a.route("/api/v1/destinations/{id}/approvals", map[string]handler{"POST": a.need(access.DecideApprovals, a.decideDestination), "GET": a.need(access.ReadCatalog, a.listDestinationDecisions)})
	a.route("/api/v1/destinations/{id}/deliveries", map[string]handler{"GET": a.need(manage, a.listDeliveries)})
	a.route("/api/v1/destinations/{id}/dead-letters", map[string]handler{"GET": a.need(manage, a.listDeadLetters)})
	a.route("/api/v1/destinations/{id}/replay", map[string]handler{"POST": a.need(manage, a.replayDestination)})
}

func (a *API) refreshDelivery() {
	if a.opts.Delivery != nil {
		a.opts.Delivery.Refresh()
	}
}

func forbidden(err error) error {
	if errors.Is(err, governance.ErrForbidden) {
		return &apierror.Error{Status: 403, Code: apierror.CodeForbidden, Message: err.Error()}
	}
	return err
}

func (a *API) createDestination(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		Name            string                   `json:"name"`
		Type            string                   `json:"type"`
		Config          map[string]any           `json:"config"`
		Filter          governance.Filter        `json:"filter"`
		Mapping         []governance.MappingRule `json:"mapping"`
		Owner           string                   `json:"owner"`
		Purpose         string                   `json:"purpose"`
		DataCategories  []string                 `json:"dataCategories"`
		ConsentPurposes []string                 `json:"consentPurposes"`
		MonthlyCost     float64                  `json:"monthlyCost"`
	}
	if err := decode(w, r, &in); err != nil {
		return err
	}
	as, err := a.assess(r.Context(), policy.Destination, in.DataCategories)
	if err != nil {
		return err
	}
	d, err := a.opts.Governance.CreateDestination(r.Context(), governance.Destination{
		Name: in.Name, Type: in.Type, Config: in.Config, Filter: in.Filter, Mapping: in.Mapping, Owner: in.Owner,
		Purpose: in.Purpose, DataCategories: in.DataCategories, ConsentPurposes: in.ConsentPurposes, MonthlyCost: in.MonthlyCost,
		Approval: a.initialApproval(as),
	}, userFrom(r.Context()))
	if err != nil {
		return forbidden(err)
	}
	shown := a.opts.Governance.Redact(d)
	change := ""
	if !as.Direct {
		c, err := a.propose(r.Context(), policy.Proposal{Kind: policy.Destination, Action: policy.Create, Subject: d.ID,
			After: shown, Assessment: as})
		if err != nil {
			return err
		}
		change = c.ID
	}
	a.refreshDelivery()
	a.opts.Logger.Info("destination created", "destination", d.ID, "type", d.Type, "by", userFrom(r.Context()).ID, "approval", d.Approval)
	a.recordChange(r, audit.Record{Action: "destination.create", Resource: "destination/" + d.ID, After: shown, ChangeRequest: change})
	return writeJSON(w, 201, struct {
		governance.Destination
		Change string `json:"change,omitempty"`
	}{shown, change})
}

func (a *API) listDestinations(w http.ResponseWriter, r *http.Request) error {
	limit, cursor, err := page(r)
	if err != nil {
		return err
	}
	ds, next, err := a.opts.Governance.ListDestinations(r.Context(), limit, cursor)
	if err != nil {
		return err
	}
	for i := range ds {
		ds[i] = a.opts.Governance.Redact(ds[i])
	}
	return writeJSON(w, 200, list[governance.Destination]{Items: nonNil(ds), Next: next})
}

func (a *API) getDestination(w http.ResponseWriter, r *http.Request) error {
	d, err := a.opts.Governance.GetDestination(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, 200, a.opts.Governance.Redact(d))
}

// updateDestination applies a patch directly, or keeps it as a change
// request (202) when the decision rights want approvals first. A patch
// that changes dataCategories is a change of kind data_categories.
func (a *API) updateDestination(w http.ResponseWriter, r *http.Request) error {
	var p governance.DestinationPatch
	if err := decode(w, r, &p); err != nil {
		return err
	}
	before, after, err := a.opts.Governance.PatchDestination(r.Context(), r.PathValue("id"), p)
	if err != nil {
		return err
	}
	kind := policy.Destination
	if p.DataCategories != nil && categoryChange(before.DataCategories, after.DataCategories) {
		kind = policy.DataCategories
	}
	as, err := a.assess(r.Context(), kind, after.DataCategories)
	if err != nil {
		return err
	}
	if !as.Direct {
		c, err := a.propose(r.Context(), policy.Proposal{Kind: kind, Action: policy.Update, Subject: before.ID,
			Before: a.opts.Governance.Redact(before), After: a.opts.Governance.Redact(after), Payload: p, Assessment: as})
		if err != nil {
			return err
		}
		return held(w, c)
	}
	d, err := a.opts.Governance.UpdateDestination(r.Context(), before.ID, p, userFrom(r.Context()))
	if err != nil {
		return forbidden(err)
	}
	a.refreshDelivery()
	a.opts.Logger.Info("destination changed", "destination", d.ID, "by", userFrom(r.Context()).ID, "approval", d.Approval)
	shown := a.opts.Governance.Redact(d)
	a.recordChange(r, audit.Record{Action: "destination.update", Resource: "destination/" + d.ID,
		Before: a.opts.Governance.Redact(before), After: shown})
	return writeJSON(w, 200, shown)
}

// deleteDestination deletes directly, or keeps the deletion as a change
// request (202). A deletion stops data flowing, so it needs only its
// kind's rule, not the rules by data category.
func (a *API) deleteDestination(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	before, err := a.opts.Governance.GetDestination(r.Context(), id)
	if err != nil {
		return err
	}
	as, err := a.assess(r.Context(), policy.Destination, nil)
	if err != nil {
		return err
	}
	if !as.Direct {
		c, err := a.propose(r.Context(), policy.Proposal{Kind: policy.Destination, Action: policy.Delete, Subject: id,
			Before: a.opts.Governance.Redact(before), Assessment: as})
		if err != nil {
			return err
		}
		return held(w, c)
	}
	if err := a.opts.Governance.DeleteDestination(r.Context(), id, userFrom(r.Context())); err != nil {
		return forbidden(err)
	}
	a.recordChange(r, audit.Record{Action: "destination.delete", Resource: "destination/" + id, Before: a.opts.Governance.Redact(before)})
	a.forgetDestination(r.Context(), id, "")
	a.opts.Logger.Info("destination deleted", "destination", id, "by", userFrom(r.Context()).ID)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// forgetDestination drops a deleted destination's delivery state and
// withdraws its pending change requests but except (the deletion being
// carried out, if any).
func (a *API) forgetDestination(ctx context.Context, id, except string) {
	if a.opts.Changes != nil {
		if _, err := a.opts.Changes.Withdraw(ctx, id, except, "the destination was deleted", userFrom(ctx)); err != nil {
			a.opts.Logger.Warn("destination deleted; its pending change requests were not withdrawn", "destination", id, "err", err.Error())
		}
	}
	if a.opts.Delivery != nil {
		if err := a.opts.Delivery.Forget(ctx, id); err != nil {
			a.opts.Logger.Warn("destination deleted; its dead letters were not", "destination", id, "err", err.Error())
		}
	}
}

// decideDestination approves or rejects a destination: on its pending
// change request for the caller's role when it has one, else directly.
func (a *API) decideDestination(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		Decision string `json:"decision"`
		Comment  string `json:"comment"`
	}
	if err := decode(w, r, &in); err != nil {
		return err
	}
	before, err := a.opts.Governance.GetDestination(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	c, err := a.decideTool(r.Context(), before.ID, in.Decision, in.Comment)
	if err != nil {
		return err
	}
	if c != nil {
		d, err := a.opts.Governance.GetDestination(r.Context(), before.ID)
		if err != nil {
			return err
		}
		return writeJSON(w, 200, struct {
			governance.Destination
			Change string `json:"change"`
		}{a.opts.Governance.Redact(d), c.ID})
	}
	d, err := a.opts.Governance.DecideDestination(r.Context(), r.PathValue("id"), in.Decision, in.Comment, userFrom(r.Context()))
	if err != nil {
		return forbidden(err)
	}
	a.refreshDelivery()
	a.recordChange(r, audit.Record{Action: "destination.approval", Resource: "destination/" + d.ID,
		Before: map[string]string{"approval": before.Approval},
		After:  map[string]string{"approval": d.Approval, "decision": in.Decision, "comment": in.Comment}})
	a.opts.Logger.Info("destination approval decided", "destination", d.ID, "by", userFrom(r.Context()).ID, "approval", d.Approval)
	return writeJSON(w, 200, a.opts.Governance.Redact(d))
}

func (a *API) listDestinationDecisions(w http.ResponseWriter, r *http.Request) error {
	ds, err := a.opts.Governance.ListDestinationDecisions(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, 200, list[governance.Decision]{Items: nonNil(ds)})
}

func (a *API) needDelivery(r *http.Request) error {
	if a.opts.Delivery == nil {
		return &apierror.Error{Status: 503, Code: apierror.CodeUnavailable, Message: "delivery does not run on this node", RetryAfter: 1}
	}
	_, err := a.opts.Governance.GetDestination(r.Context(), r.PathValue("id"))
	return err
}

func (a *API) listDeliveries(w http.ResponseWriter, r *http.Request) error {
	if err := a.needDelivery(r); err != nil {
		return err
	}
	limit, _, err := page(r)
	if err != nil {
		return err
	}
	return writeJSON(w, 200, list[delivery.Attempt]{Items: a.opts.Delivery.Deliveries(r.PathValue("id"), limit)})
}

func (a *API) listDeadLetters(w http.ResponseWriter, r *http.Request) error {
	if err := a.needDelivery(r); err != nil {
		return err
	}
	limit, cursor, err := page(r)
	if err != nil {
		return err
	}
	dls, err := a.opts.Delivery.DeadLetters(r.Context(), r.PathValue("id"), limit+1, cursor)
	if err != nil {
		return err
	}
	next := ""
	if len(dls) > limit {
		dls = dls[:limit]
		next = dls[limit-1].ID
	}
	return writeJSON(w, 200, list[delivery.DeadLetter]{Items: nonNil(dls), Next: next})
}

func (a *API) replayDestination(w http.ResponseWriter, r *http.Request) error {
	if err := a.needDelivery(r); err != nil {
		return err
	}
	n, err := a.opts.Delivery.Replay(r.Context(), r.PathValue("id"))
	if errors.Is(err, delivery.ErrNotRunning) {
		return &apierror.Error{Status: 409, Code: apierror.CodeNotDelivering, Message: "the destination is not approved, or its delivery has not started yet on this node"}
	}
	if err != nil {
		return err
	}
	a.opts.Logger.Info("destination dead letters replayed", "destination", r.PathValue("id"), "by", userFrom(r.Context()).ID, "events", n)
	a.recordChange(r, audit.Record{Action: "destination.replay", Resource: "destination/" + r.PathValue("id"), After: map[string]int{"replaying": n}})
	return writeJSON(w, 202, map[string]any{"replaying": n})
}
