package api

import (
	"context"
	"net/http"
	"strings"
	"time"

	"tandem/access"
	"tandem/apierror"
	"tandem/audit"
)

// The audit log (see package audit and docs/audit.md): GET /audit reads
// it; the handlers record into it.
//
// Reads of personal data (profiles, events, quarantined payloads, import
// row errors) are recorded before the answer is sent, and a read that
// cannot be recorded is not served (recordRead). Changes are recorded
// after they succeeded (recordChange): the concept stores commit their
// changes in their own transactions, so a change whose entry then fails
// to be written is logged as an error but stays made.

func (a *API) auditRoutes() {
	a.route("/api/v1/audit", map[string]handler{"GET": a.need(access.ReadAudit, a.listAudit)})
}

func (a *API) listAudit(w http.ResponseWriter, r *http.Request) error {
	if a.opts.Audit == nil {
		return apierror.Of(apierror.CodeUnavailable, "the audit log is not running on this node")
	}
	limit, cursor, err := page(r)
	if err != nil {
		return err
	}
	from, err := timeParam(r, "from")
	if err != nil {
		return err
	}
	to, err := timeParam(r, "to")
	if err != nil {
		return err
	}
	q := r.URL.Query()
	f := audit.Filter{Actor: q.Get("actor"), Subject: q.Get("subject"), Action: q.Get("action"), Resource: q.Get("resource"), From: from, To: to}
	entries, next, err := a.opts.Audit.List(r.Context(), f, limit, cursor)
	if err != nil {
		return err
	}
	// Reading the log is recorded too: it says who looked at whom.
	// (Its subject stays empty: the entry is about the log, and a search by
	// subject should not find the searches.)
	if err := a.recordRead(r, audit.Record{Action: "audit.read", Resource: "audit",
		After: map[string]any{"filter": query(r, "actor", "subject", "action", "resource", "from", "to"), "count": len(entries)}}); err != nil {
		return err
	}
	return writeJSON(w, 200, list[audit.Entry]{Items: entries, Next: next})
}

// recordRead records a read of personal data by the caller before it is
// served; an error (503) means the read must not be served.
func (a *API) recordRead(r *http.Request, rec audit.Record) error {
	if a.opts.Audit == nil {
		return nil
	}
	rec.Actor = userFrom(r.Context()).ID
	if _, err := a.opts.Audit.Append(r.Context(), rec); err != nil {
		a.opts.Logger.Error("audit log: read not recorded, not served", "action", rec.Action, "err", err.Error())
		return apierror.ErrUnavailable
	}
	return nil
}

// recordChange records a change the caller made, after it succeeded. The
// change is made either way; a failure to record it is logged.
func (a *API) recordChange(r *http.Request, rec audit.Record) { a.recordChangeCtx(r.Context(), rec) }

// recordChangeCtx is recordChange with the request's context.
func (a *API) recordChangeCtx(reqCtx context.Context, rec audit.Record) {
	if a.opts.Audit == nil {
		return
	}
	rec.Actor = userFrom(reqCtx).ID
	// The change is done even if the client went away meanwhile: record
	// it regardless of the request's context.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(reqCtx), 30*time.Second)
	defer cancel()
	if _, err := a.opts.Audit.Append(ctx, rec); err != nil {
		a.opts.Logger.Error("audit log: a completed change was not recorded", "action", rec.Action, "resource", rec.Resource, "err", err.Error())
	}
}

// query returns the named query parameters that are set.
func query(r *http.Request, names ...string) map[string]string {
	out := map[string]string{}
	for _, n := range names {
		if v := r.URL.Query().Get(n); v != "" {
			out[n] = v
		}
	}
	return out
}

// subjectOf returns the profile a value of GET /events?profile= stands
// for, as resolved by profileParam: a profile id, or "" when it resolved
// to none (and the value, possibly an e-mail address, must not be
// recorded in clear).
func subjectOf(resolved string) string {
	if strings.HasPrefix(resolved, "prf_") {
		return resolved
	}
	return ""
}

// logAuditor is the [Auditor] that records profile reads and changes in
// the audit log.
type logAuditor struct{ log *audit.Log }

func (l logAuditor) ProfileAccess(ctx context.Context, p ProfileAccess) error {
	_, err := l.log.Append(ctx, audit.Record{Actor: p.User.ID, Action: "profile." + p.Action,
		Resource: "profile/" + p.ProfileID, Subject: p.ProfileID, Before: p.Before, After: p.After})
	return err
}
