package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"tandem/access"
	"tandem/apierror"
	"tandem/audit"
	"tandem/governance"
	"tandem/policy"
	"tandem/statestore"
)

// Change requests (see package policy and docs/governance.md): the writes
// the decision rights hold for approval, the endpoints that list and
// decide them, and the appliers that carry a change out once approved.
//
// Enforced kinds: source (create, PATCH allowedOrigins), destination
// (create, PATCH, DELETE), data_categories (a PATCH that changes a
// source's or a destination's dataCategories), tracking_plan (PUT
// /tracking-plans/{source}), users (POST /users, users.go) and the
// settings (identity_rules, lifecycle_stages, consent_defaults,
// retention: their PUTs, settings.go).

func (a *API) changeRoutes() {
	a.route("/api/v1/changes", map[string]handler{"GET": a.need(access.ReadChanges, a.listChanges)})
	a.route("/api/v1/changes/preview", map[string]handler{"POST": a.need(access.ProposeChanges, a.previewChange)})
	a.route("/api/v1/changes/{id}", map[string]handler{"GET": a.need(access.ReadChanges, a.getChange)})
	a.route("/api/v1/changes/{id}/approvals", map[string]handler{"POST": a.need(access.ApproveChanges, a.decideChange)})
	if a.opts.Changes != nil {
		for _, k := range []policy.Kind{policy.Source, policy.Destination, policy.DataCategories} {
			a.opts.Changes.Handle(k, a.applyToolChange)
		}
		a.opts.Changes.Handle(policy.TrackingPlan, a.applyTrackingPlan)
		a.opts.Changes.Handle(policy.Users, a.applyUserChange)
	}
}

func (a *API) needChanges() error {
	if a.opts.Changes == nil {
		return apierror.Of(apierror.CodeUnavailable, "change requests are not kept on this node")
	}
	return nil
}

// assess asks the decision rights about a change by the caller. Without
// a change store every change is direct (the governance store's own
// defaults apply to new tools).
func (a *API) assess(ctx context.Context, k policy.Kind, categories []string) (policy.Assessment, error) {
	if a.opts.Changes == nil {
		return policy.Assessment{Needs: []access.Role{}, Informed: []access.Role{}, Direct: true}, nil
	}
	return a.opts.Changes.Rules().Assess(k, categories, userFrom(ctx).Role)
}

// initialApproval is the approval state a new tool starts in under as.
func (a *API) initialApproval(as policy.Assessment) string {
	switch {
	case a.opts.Changes == nil:
		return "" // the governance store's default
	case as.Direct:
		return governance.Approved
	}
	return governance.Pending
}

// propose keeps a change the caller may not carry out alone.
func (a *API) propose(ctx context.Context, p policy.Proposal) (policy.Change, error) {
	p.By = userFrom(ctx)
	c, err := a.opts.Changes.Propose(ctx, p)
	if err != nil {
		return policy.Change{}, err
	}
	a.opts.Logger.Info("change proposed", "change", c.ID, "kind", string(c.Kind), "action", c.Action, "subject", c.Subject,
		"by", p.By.ID, "needs", fmt.Sprint(c.Needs))
	return c, nil
}

// held answers a write the decision rights hold: 202 with the change.
func held(w http.ResponseWriter, c policy.Change) error {
	return writeJSON(w, http.StatusAccepted, map[string]any{"change": c})
}

// categoryChange reports whether a patch's data categories differ from
// the stored ones (as sets).
func categoryChange(before, after []string) bool {
	b, c := slices.Clone(before), slices.Clone(after)
	slices.Sort(b)
	slices.Sort(c)
	return !slices.Equal(slices.Compact(b), slices.Compact(c))
}

func (a *API) listChanges(w http.ResponseWriter, r *http.Request) error {
	if err := a.needChanges(); err != nil {
		return err
	}
	limit, cursor, err := page(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	cs, next, err := a.opts.Changes.List(r.Context(), policy.Filter{State: q.Get("state"), Subject: q.Get("subject"), Viewer: userFrom(r.Context())}, limit, cursor)
	if err != nil {
		return err
	}
	return writeJSON(w, 200, list[policy.Change]{Items: cs, Next: next})
}

// getChange shows a change to whoever may see it in the list; to anyone
// else it does not exist.
func (a *API) getChange(w http.ResponseWriter, r *http.Request) error {
	if err := a.needChanges(); err != nil {
		return err
	}
	c, err := a.opts.Changes.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	if !policy.Visible(c, userFrom(r.Context())) {
		return apierror.Of(apierror.CodeNotFound, "no such change request among those you proposed, must approve or are informed of")
	}
	return writeJSON(w, 200, c)
}

func (a *API) decideChange(w http.ResponseWriter, r *http.Request) error {
	if err := a.needChanges(); err != nil {
		return err
	}
	var in struct {
		Decision string `json:"decision"`
		Comment  string `json:"comment"`
	}
	if err := decode(w, r, &in); err != nil {
		return err
	}
	c, err := a.opts.Changes.Decide(r.Context(), r.PathValue("id"), in.Decision, in.Comment, userFrom(r.Context()))
	if err != nil {
		return err
	}
	a.opts.Logger.Info("change decided", "change", c.ID, "by", userFrom(r.Context()).ID, "decision", in.Decision, "state", c.State)
	return writeJSON(w, 200, c)
}

// previewChange answers what a change would need, for `tandem apply
// --dry-run`: {needs, informed, direct}. The data categories are after's
// dataCategories, or else the subject's.
func (a *API) previewChange(w http.ResponseWriter, r *http.Request) error {
	if err := a.needChanges(); err != nil {
		return err
	}
	var in struct {
		Kind    string          `json:"kind"`
		Action  string          `json:"action"`
		Subject string          `json:"subject"`
		After   json.RawMessage `json:"after"`
	}
	if err := decode(w, r, &in); err != nil {
		return err
	}
	k := policy.Kind(in.Kind)
	if !k.Valid() {
		names := make([]string, len(policy.Kinds))
		for i, k := range policy.Kinds {
			names[i] = string(k)
		}
		return apierror.Field("kind", apierror.CodeInvalidField, "must be one of "+strings.Join(names, ", "))
	}
	switch in.Action {
	case policy.Create, policy.Update, policy.Delete:
	default:
		return apierror.Field("action", apierror.CodeInvalidField, `must be "create", "update" or "delete"`)
	}
	var after struct {
		DataCategories *[]string `json:"dataCategories"`
		Role           string    `json:"role"`
	}
	if len(in.After) > 0 && string(in.After) != "null" {
		if err := json.Unmarshal(in.After, &after); err != nil {
			return apierror.Field("after", apierror.CodeInvalidType, "must be an object; dataCategories, if given, a list of names")
		}
	}
	var cats []string
	switch {
	case in.Action == policy.Delete:
	case after.DataCategories != nil:
		cats = *after.DataCategories
	case in.Subject != "":
		var err error
		if cats, err = a.toolCategories(r.Context(), in.Subject); err != nil {
			return err
		}
	}
	as, err := a.assess(r.Context(), k, cats)
	if k == policy.Users && err == nil {
		if role := userFrom(r.Context()).Role; access.Can(role, access.ManageUsers) {
			as.Direct = true // admin creates users directly (createUser)
		} else {
			as, err = a.opts.Changes.Rules().AssessUser(access.Role(after.Role), role)
		}
	}
	if err != nil {
		return err
	}
	return writeJSON(w, 200, as)
}

// toolCategories returns the data categories of the source or
// destination with id (a source also by name).
func (a *API) toolCategories(ctx context.Context, id string) ([]string, error) {
	if strings.HasPrefix(id, "dst_") {
		d, err := a.opts.Governance.GetDestination(ctx, id)
		if err != nil {
			return nil, subjectErr(err, id)
		}
		return d.DataCategories, nil
	}
	src, err := a.opts.Governance.SourceByRef(ctx, id)
	if err != nil {
		return nil, subjectErr(err, id)
	}
	return src.DataCategories, nil
}

func subjectErr(err error, id string) error {
	if errors.Is(err, statestore.ErrNotFound) {
		return apierror.Field("subject", apierror.CodeInvalidField, fmt.Sprintf("no source or destination %q", id))
	}
	return err
}

// applyToolChange carries out (or drops) a settled change of a source or
// a destination, by the user whose decision settled it. It runs in that
// user's request, so the audit entries name them.
func (a *API) applyToolChange(ctx context.Context, d policy.Decided) error {
	c := d.Change
	isDest := strings.HasPrefix(c.Subject, "dst_")
	rec := audit.Record{ChangeRequest: c.ID}
	switch {
	case c.Action == policy.Create:
		before := map[string]string{"approval": governance.Pending}
		if isDest {
			dst, err := a.opts.Governance.RecordDestinationDecision(ctx, c.Subject, d.Decision, d.Comment, d.By)
			if err != nil {
				return err
			}
			rec.Action, rec.Resource = "destination.approval", "destination/"+dst.ID
			rec.Before, rec.After = before, map[string]string{"approval": dst.Approval, "decision": d.Decision, "comment": d.Comment}
		} else {
			src, err := a.opts.Governance.RecordDecision(ctx, c.Subject, d.Decision, d.Comment, d.By)
			if err != nil {
				return err
			}
			rec.Action, rec.Resource = "source.approval", "source/"+src.ID
			rec.Before, rec.After = before, map[string]string{"approval": src.Approval, "decision": d.Decision, "comment": d.Comment}
		}
	case d.Decision == policy.Reject:
		return nil // an update or deletion rejected: nothing changes
	case c.Action == policy.Update && isDest:
		var p governance.DestinationPatch
		if err := json.Unmarshal(d.Payload, &p); err != nil {
			return fmt.Errorf("change %s: payload: %w", c.ID, err)
		}
		before, err := a.opts.Governance.GetDestination(ctx, c.Subject)
		if err != nil {
			return err
		}
		dst, err := a.opts.Governance.UpdateDestination(ctx, c.Subject, p, d.Proposer)
		if err != nil {
			return err
		}
		rec.Action, rec.Resource = "destination.update", "destination/"+dst.ID
		rec.Before, rec.After = a.opts.Governance.Redact(before), a.opts.Governance.Redact(dst)
	case c.Action == policy.Update:
		var p governance.SourcePatch
		if err := json.Unmarshal(d.Payload, &p); err != nil {
			return fmt.Errorf("change %s: payload: %w", c.ID, err)
		}
		before, err := a.opts.Governance.GetSource(ctx, c.Subject)
		if err != nil {
			return err
		}
		src, err := a.opts.Governance.UpdateSource(ctx, c.Subject, p, d.Proposer)
		if err != nil {
			return err
		}
		rec.Action, rec.Resource = "source.update", "source/"+src.ID
		rec.Before, rec.After = sourcePatchView(before, p), sourcePatchView(src, p)
	case c.Action == policy.Delete && isDest:
		before, err := a.opts.Governance.GetDestination(ctx, c.Subject)
		if err != nil {
			return err
		}
		if err := a.opts.Governance.DeleteDestination(ctx, c.Subject, d.Proposer); err != nil {
			return err
		}
		a.forgetDestination(ctx, c.Subject, c.ID)
		rec.Action, rec.Resource, rec.Before = "destination.delete", "destination/"+c.Subject, a.opts.Governance.Redact(before)
	default:
		return fmt.Errorf("change %s: cannot %s %s", c.ID, c.Action, c.Subject)
	}
	a.refreshDelivery()
	a.recordChangeCtx(ctx, rec)
	return nil
}

// sourcePatchView is the part of a source a patch changes, for the audit
// log and a change's diff.
func sourcePatchView(src governance.Source, p governance.SourcePatch) map[string]any {
	out := map[string]any{}
	if p.AllowedOrigins != nil {
		out["allowedOrigins"] = src.AllowedOrigins
	}
	if p.DataCategories != nil {
		out["dataCategories"] = src.DataCategories
	}
	return out
}

// decideTool records the caller's decision on a tool through the legacy
// endpoints (POST /sources/{id}/approvals, /destinations/{id}/approvals):
// on the tool's oldest pending change request of the tool itself (not,
// say, its tracking plan) when it has one, for the caller's role; else on
// the tool itself. It returns the change decided,
// if any.
func (a *API) decideTool(ctx context.Context, id, decision, comment string) (*policy.Change, error) {
	if a.opts.Changes == nil {
		return nil, nil
	}
	c, err := a.opts.Changes.PendingFor(ctx, id, policy.Source, policy.Destination, policy.DataCategories)
	if errors.Is(err, statestore.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	c, err = a.opts.Changes.Decide(ctx, c.ID, decision, comment, userFrom(ctx))
	if err != nil {
		return nil, err
	}
	return &c, nil
}
