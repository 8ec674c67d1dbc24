package api

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"tandem/access"
	"tandem/analytics"
	"tandem/apierror"
	"tandem/eventstore"
	"tandem/governance"
	"tandem/identity"
	"tandem/imports"
	"tandem/quarantine"
	"tandem/statestore"
)

//go:embed openapi.json
var openapiDoc []byte

// Appender makes log entries durable (the event log's group committer).
type Appender interface {
	Append(ctx context.Context, entries []byte) error
}

// Options are the stores the API reads and writes.
type Options struct {
	Access     *access.Store
	Governance *governance.Store
	Quarantine *quarantine.Store
	Events     eventstore.Store
	Log        Appender
	Imports    *imports.Service // nil: the import endpoints answer 503
	Logger     *slog.Logger
	// Analytics answers /analytics/*; Stages is the configured lifecycle
	// the journey reports on.
	Analytics analytics.Backend
	Stages    []analytics.Stage
	Identity  *identity.Store // nil: the profile endpoints answer 503
	Auditor   Auditor         // nil: profile reads are not recorded
	Delivery  Delivery        // nil: deliveries and replay answer 503
}

// API is the management API handler.
type API struct {
	opts Options
	mux  *http.ServeMux
}

type ctxKey struct{}

// userFrom returns the authenticated caller.
func userFrom(ctx context.Context) access.User { u, _ := ctx.Value(ctxKey{}).(access.User); return u }

// handler is an authenticated endpoint; a returned error is written in the
// one error shape.
type handler func(w http.ResponseWriter, r *http.Request) error

// New returns the handler for /api/v1/.
func New(opts Options) *API {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Auditor == nil {
		opts.Auditor = noAudit{}
	}
	a := &API{opts: opts, mux: http.NewServeMux()}
	a.mux.HandleFunc("/api/v1/openapi.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(openapiDoc)
	})
	a.route("/api/v1/users", map[string]handler{"POST": a.need(access.ManageUsers, a.createUser), "GET": a.need(access.ManageUsers, a.listUsers)})
	a.route("/api/v1/me", map[string]handler{"GET": a.me})
	a.route("/api/v1/sources", map[string]handler{"POST": a.need(access.ManageSources, a.createSource), "GET": a.need(access.ReadCatalog, a.listSources)})
	a.route("/api/v1/sources/{id}", map[string]handler{"GET": a.need(access.ReadCatalog, a.getSource)})
	a.route("/api/v1/sources/{id}/approvals", map[string]handler{"POST": a.need(access.DecideApprovals, a.decideSource), "GET": a.need(access.ReadCatalog, a.listDecisions)})
	a.route("/api/v1/events", map[string]handler{"GET": a.need(access.ReadEvents, a.listEvents)})
	a.route("/api/v1/events/{messageId}", map[string]handler{"GET": a.need(access.ReadEvents, a.getEvent)})
	a.route("/api/v1/quarantine", map[string]handler{"GET": a.need(access.ReadQuarantine, a.listQuarantine)})
	a.route("/api/v1/quarantine/replay", map[string]handler{"POST": a.need(access.ReplayQuarantine, a.replayQuarantine)})
	a.analyticsRoutes()
	a.importRoutes()
	a.profileRoutes()
	a.destinationRoutes()
	a.mux.HandleFunc("/api/v1/", func(w http.ResponseWriter, r *http.Request) {
		apierror.Write(w, apierror.ErrNotFound)
	})
	return a
}

func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

// route registers one path with a handler per method, authenticating first
// and answering unknown methods with 405 in the one error shape.
func (a *API) route(pattern string, methods map[string]handler) {
	allow := make([]string, 0, len(methods))
	for m := range methods {
		allow = append(allow, m)
	}
	a.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		h, ok := methods[r.Method]
		if !ok {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			apierror.Write(w, apierror.ErrMethod)
			return
		}
		user, e := a.authenticate(r)
		if e != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="tandem"`)
			apierror.Write(w, e)
			return
		}
		r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, user))
		if err := h(w, r); err != nil {
			a.writeErr(w, r, err)
		}
	})
}

func (a *API) authenticate(r *http.Request) (access.User, *apierror.Error) {
	auth := r.Header.Get("Authorization")
	const prefix = "Bearer "
	if len(auth) <= len(prefix) || !strings.EqualFold(auth[:len(prefix)], prefix) {
		return access.User{}, apierror.ErrUnauthenticated
	}
	u, err := a.opts.Access.Authenticate(r.Context(), strings.TrimSpace(auth[len(prefix):]))
	if errors.Is(err, access.ErrUnauthenticated) {
		return access.User{}, apierror.ErrUnauthenticated
	}
	if err != nil {
		a.opts.Logger.Error("authentication failed", "err", err.Error())
		return access.User{}, apierror.ErrUnavailable
	}
	return u, nil
}

func (a *API) need(p access.Permission, h handler) handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		if !access.Can(userFrom(r.Context()).Role, p) {
			return &apierror.Error{Status: 403, Code: "forbidden", Message: "role " + string(userFrom(r.Context()).Role) + " may not " + string(p)}
		}
		return h(w, r)
	}
}

// writeErr maps store errors to the one error shape.
func (a *API) writeErr(w http.ResponseWriter, r *http.Request, err error) {
	var ae *apierror.Error
	var fe *statestore.FieldError
	switch {
	case errors.As(err, &ae):
	case errors.As(err, &fe):
		ae = apierror.Field(fe.Field, "invalid_field", fe.Message)
	case errors.Is(err, statestore.ErrNotFound), errors.Is(err, eventstore.ErrNotFound):
		ae = apierror.ErrNotFound
	case errors.Is(err, statestore.ErrConflict):
		ae = apierror.New(409, "conflict", "a resource with these values already exists")
	case errors.Is(err, eventstore.ErrBadCursor), errors.Is(err, statestore.ErrBadCursor):
		ae = apierror.Field("cursor", "invalid_field", "not a cursor this endpoint issued")
	case errors.Is(err, statestore.ErrBusy), errors.Is(err, context.DeadlineExceeded):
		ae = apierror.ErrUnavailable
	default:
		a.opts.Logger.Error("management API error", "path", r.URL.Path, "err", err.Error())
		ae = apierror.ErrInternal
	}
	apierror.Write(w, ae)
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

// decode reads a JSON body into v, rejecting unknown fields and naming the
// field of a type error.
func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return apierror.Field(te.Field, "invalid_type", "must be "+jsonKind(te.Type.Kind().String()))
		}
		if msg := err.Error(); strings.HasPrefix(msg, "json: unknown field ") {
			f := strings.Trim(strings.TrimPrefix(msg, "json: unknown field "), `"`)
			return apierror.Field(f, "unknown_field", "no such field")
		}
		if errors.Is(err, io.EOF) {
			return apierror.New(400, "invalid_body", "a JSON body is required")
		}
		return apierror.New(400, "invalid_json", "body is not valid JSON")
	}
	return nil
}

func jsonKind(k string) string {
	switch k {
	case "string":
		return "a string"
	case "slice":
		return "an array"
	case "struct", "map":
		return "an object"
	case "bool":
		return "a boolean"
	default:
		return "a number"
	}
}

// page reads limit and cursor query parameters.
func page(r *http.Request) (int, string, error) {
	limit := 100
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1000 {
			return 0, "", apierror.Field("limit", "invalid_field", "must be an integer from 1 to 1000")
		}
		limit = n
	}
	return limit, r.URL.Query().Get("cursor"), nil
}

type list[T any] struct {
	Items []T    `json:"items"`
	Next  string `json:"next,omitempty"`
}

func timeParam(r *http.Request, name string) (time.Time, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, apierror.Field(name, "invalid_field", "not an RFC 3339 time")
	}
	return t, nil
}

func isNotFound(err error) bool {
	return errors.Is(err, statestore.ErrNotFound) || errors.Is(err, eventstore.ErrNotFound)
}
