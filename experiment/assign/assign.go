// Package assign serves experiment assignment to browsers and apps,
// GET /v1/experiments/{key}/assign: write-key auth as collection checks
// it, the visitor's resolved profile, the deterministic variation of
// [experiment.Assign] and, when asked, the exposure event appended to the
// event log as collection appends events.
package assign

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"tandem/apierror"
	"tandem/collect"
	"tandem/event"
	"tandem/experiment"
	"tandem/identity"
)

// Resolver finds the profile id to assign by: identity.Store.ProfileFor.
type Resolver interface {
	ProfileFor(ctx context.Context, typ, value string) (id string, known bool, err error)
}

// Appender makes log entries durable (the event log's group committer),
// as collection does.
type Appender interface {
	Append(ctx context.Context, entries []byte) error
}

// Options configure an [Handler].
type Options struct {
	Experiments *experiment.Store
	Sources     collect.Sources // write keys, as collection checks them
	Identity    Resolver
	Log         Appender
	Logger      *slog.Logger
	Now         func() time.Time
}

// Handler serves GET /v1/experiments/{key}/assign: write-key auth
// (Basic auth user, or the writeKey query parameter for a browser's one
// fetch), userId or anonymousId, and record=true to append the exposure
// event through the event log as collection does. It answers
// {"experiment", "variation", "profileId", "holdout"}; the variation is
// null in the holdout. It sets no CORS headers itself: mount it behind
// the same CORS wrapper as the collection paths.
type Handler struct{ o Options }

// New returns the handler.
func New(o Options) *Handler {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Handler{o: o}
}

// Assignment is the answer of the assign endpoint.
type Assignment struct {
	Experiment string  `json:"experiment"`
	Variation  *string `json:"variation"`
	ProfileID  string  `json:"profileId"`
	Holdout    bool    `json:"holdout"`
	Recorded   bool    `json:"recorded"`
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		apierror.Write(w, apierror.ErrMethod)
		return
	}
	if e := h.serve(w, r); e != nil {
		apierror.Write(w, e)
	}
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request) *apierror.Error {
	ctx := r.Context()
	q := r.URL.Query()
	key := q.Get("writeKey")
	if user, _, ok := r.BasicAuth(); ok && user != "" {
		key = user
	}
	if key == "" {
		return apierror.Of(apierror.CodeUnauthenticated, "no write key: send it as the Basic-auth user name or as the writeKey query parameter")
	}
	src, err := h.o.Sources.LookupWriteKey(ctx, key)
	switch {
	case errors.Is(err, collect.ErrUnknownKey):
		return apierror.Of(apierror.CodeUnauthenticated, "unknown write key")
	case err != nil:
		h.o.Logger.Error("write key lookup failed", "err", err.Error())
		return apierror.ErrUnavailable
	case src.Approval != "approved":
		return apierror.Of(apierror.CodeSourceNotApproved, "this source is "+src.Approval+"; it may send data once approved")
	}
	if e := collect.CheckOrigin(r, src); e != nil {
		return e
	}
	userID, anonID := q.Get("userId"), q.Get("anonymousId")
	if userID == "" && anonID == "" {
		return apierror.Field("userId", apierror.CodeMissingField, "send userId or anonymousId")
	}
	exp, err := h.o.Experiments.ByKey(ctx, r.PathValue("key"))
	if errors.Is(err, experiment.ErrNotFound) {
		return apierror.Of(apierror.CodeNotFound, "no experiment with this key")
	}
	if err != nil {
		h.o.Logger.Error("experiment lookup failed", "err", err.Error())
		return apierror.ErrUnavailable
	}
	typ, value, field := identity.UserID, userID, "userId"
	if userID == "" {
		typ, value, field = identity.AnonymousID, anonID, "anonymousId"
	}
	pid, _, err := h.o.Identity.ProfileFor(ctx, typ, value)
	if err != nil {
		var fe *identity.FieldError
		if errors.As(err, &fe) {
			return apierror.Field(field, apierror.CodeInvalidField, fe.Message)
		}
		h.o.Logger.Error("profile lookup failed", "err", err.Error())
		return apierror.ErrUnavailable
	}
	variation, holdout := experiment.Assign(&exp, pid)
	out := Assignment{Experiment: exp.Key, ProfileID: pid, Holdout: holdout}
	if !holdout {
		out.Variation = &variation
	}
	switch q.Get("record") {
	case "", "false", "0":
	case "true", "1":
		if !holdout {
			if e := h.record(ctx, src.ID, &exp, userID, anonID, variation); e != nil {
				return e
			}
			out.Recorded = true
		}
	default:
		return apierror.Field("record", apierror.CodeInvalidField, "want true or false")
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(out)
	return nil
}

// record appends the exposure event to the event log, made durable before
// the answer, as a collection request's events are.
func (h *Handler) record(ctx context.Context, sourceID string, e *experiment.Experiment, userID, anonID, variation string) *apierror.Error {
	body := map[string]any{
		"event":      e.ExposureEvent,
		"properties": map[string]string{e.ExperimentProperty: e.Key, e.VariationProperty: variation},
	}
	if userID != "" {
		body["userId"] = userID
	}
	if anonID != "" {
		body["anonymousId"] = anonID
	}
	b, _ := json.Marshal(body)
	req, err := event.ParseSingle("track", b, h.o.Now().UTC())
	if err != nil || len(req.Events) != 1 {
		return apierror.Field("userId", apierror.CodeInvalidField, "the exposure event cannot be made from these identifiers")
	}
	chunk := event.AppendEntries(nil, sourceID, req.Events, nil)
	if err := h.o.Log.Append(ctx, chunk); err != nil {
		if ctx.Err() == nil {
			h.o.Logger.Warn("event log append of an exposure failed", "err", err.Error())
		}
		return apierror.ErrUnavailable
	}
	return nil
}
