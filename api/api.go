package api

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"tandem/access"
	"tandem/analytics"
	"tandem/apierror"
	"tandem/attribution"
	"tandem/audience"
	"tandem/audit"
	"tandem/event"
	"tandem/eventstore"
	"tandem/experiment"
	"tandem/governance"
	"tandem/identity"
	"tandem/imports"
	"tandem/policy"
	"tandem/privacy"
	"tandem/quarantine"
	"tandem/statestore"
	"tandem/trackingplan"
)

//go:embed openapi.json
var openapiDoc []byte

// OpenAPI returns the OpenAPI document (GET /api/v1/openapi.json).
func OpenAPI() []byte { return openapiDoc }

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
	// the journey reports on (until a change of lifecycle_stages puts
	// another in force, see settings.go).
	Analytics analytics.Backend
	Stages    []analytics.Stage
	// Attribution streams the journeys /analytics/attribution and
	// /analytics/roi credit (nil: they answer 503); AttributionConfig is
	// the configured taxonomy and defaults (nil: the defaults).
	Attribution       attribution.Source
	AttributionConfig *attribution.Config
	Identity          *identity.Store // nil: the profile endpoints answer 503
	Auditor           Auditor         // nil: profile reads go to Audit
	// Audit records changes and reads of personal data, and answers GET
	// /audit. nil: nothing is recorded and GET /audit answers 503.
	Audit *audit.Log
	// Consent keeps consent decisions (nil: profiles show none and the
	// consent endpoints answer 503).
	Consent *privacy.Store
	// Requests keeps data-subject requests (nil: their endpoints answer
	// 503).
	Requests *privacy.Requests
	// Traits keeps computed traits (nil: profiles show none and the
	// computed trait endpoints answer 503).
	Traits *audience.Store
	// Audiences keeps audiences (nil: profiles show none and the
	// audience endpoints answer 503).
	Audiences *audience.Audiences
	// Experiments are the A/B test definitions; ExperimentSums computes
	// their results (nil: the results answer 503).
	Experiments    *experiment.Store
	ExperimentSums experiment.Aggregator
	// Delivery runs destinations (nil: deliveries and replay answer 503).
	Delivery Delivery
	// MaskKey keys the pseudonyms of personal data shown to roles without
	// access.ReadPII (see mask.go); empty: the installation's secret
	// from Access.
	MaskKey []byte
	// Catalog are more providers of the catalogue's tools and flows
	// (destinations); the sources come from Governance.
	Catalog []governance.ToolProvider
	// Plans keeps the sources' tracking plans (nil: their endpoints answer 503).
	Plans *trackingplan.Store
	// Changes keeps change requests under the decision rights (nil: every
	// change is direct, new tools start as the governance store decides,
	// and the change endpoints answer 503).
	Changes *policy.Store
	// Classifier tags fields with data categories, for masking and the
	// records of processing (nil: the default tags alone).
	Classifier *privacy.Classifier
	// Retention removes expired data (nil: the retention endpoints answer
	// 503); LogMaxAge is --log-max-age (the log keeps records that long,
	// or the shortest retention age when that is shorter).
	Retention *privacy.Retainer
	LogMaxAge time.Duration
	// OnRetention, when set, is told of every retention policy put in
	// force on this node through the API or LoadSettings (the event log
	// follows the shortest age).
	OnRetention func(privacy.Retention)
	// Subjects are the categories of data subjects of the records of
	// processing (empty: privacy.DefaultSubjects).
	Subjects []string
	// Suppressions keeps the keyed hashes of erased people's identifiers
	// (nil: an erasure suppresses nothing and the suppression endpoint
	// answers 503).
	Suppressions *privacy.Suppressions
	// Quiesce, called by an erasure once the person is on the suppression
	// list, waits until no event processed without seeing the list can
	// still be written (the pipeline's batch under way; on a shared state
	// store, the other nodes' reload of the list). nil: no wait.
	Quiesce func(ctx context.Context) error
	// EraseLog removes the entries drop picks from the records already in
	// the event log, for an erasure, and returns how many records it
	// rewrote or erased (nil: the log is left alone, a step says so).
	EraseLog func(ctx context.Context, drop func(event.Entry) bool) (records int, err error)
	// EraseLogNote, when not empty, ends the log step's detail: what the
	// log keeps after the step and for how long (a JetStream cluster's
	// Raft logs).
	EraseLogNote string
	// ScrubState makes the state store's deleted rows unreadable on disk
	// after an erasure (SQLite: a truncating checkpoint of its
	// write-ahead log; PostgreSQL: VACUUM FULL, WAL switch, checkpoint)
	// and says what it did; nil when the store needs nothing more.
	ScrubState func(ctx context.Context) (detail string, err error)
}

// API is the management API handler.
type API struct {
	opts    Options
	mux     *http.ServeMux
	handler http.Handler
	routes  []string // "METHOD pattern", see Routes
	maskMu  sync.Mutex
	maskKey []byte // see masker

	stages     atomic.Pointer[[]analytics.Stage] // the lifecycle in force, see settings.go
	settingsMu sync.Mutex                        // one setting put in force at a time
	applied    map[policy.Kind]int64             // the stored settings' versions in force; under settingsMu
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
		if opts.Audit != nil {
			opts.Auditor = logAuditor{opts.Audit}
		}
	}
	a := &API{opts: opts, mux: http.NewServeMux(), applied: map[policy.Kind]int64{}}
	st := nonNil(opts.Stages)
	a.stages.Store(&st)
	a.handler = apierror.Handler(a.mux, NotFound)
	a.mux.HandleFunc("/api/v1/openapi.json", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			apierror.Write(w, apierror.ErrMethod)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(openapiDoc)
	})
	a.route("/api/v1/users", map[string]handler{"POST": a.need(access.ProposeChanges, a.createUser), "GET": a.need(access.ManageUsers, a.listUsers)})
	a.route("/api/v1/me", map[string]handler{"GET": a.me})
	a.route("/api/v1/sources", map[string]handler{"POST": a.need(access.ProposeChanges, a.createSource), "GET": a.need(access.ReadCatalog, a.listSources)})
	a.route("/api/v1/sources/{id}", map[string]handler{"GET": a.need(access.ReadCatalog, a.getSource), "PATCH": a.need(access.ProposeChanges, a.updateSource)})
	a.route("/api/v1/sources/{id}/approvals", map[string]handler{"POST": a.need(access.DecideApprovals, a.decideSource), "GET": a.need(access.ReadCatalog, a.listDecisions)})
	a.route("/api/v1/events", map[string]handler{"GET": a.need(access.ReadEvents, a.listEvents)})
	a.route("/api/v1/events/{messageId}", map[string]handler{"GET": a.need(access.ReadEvents, a.getEvent)})
	a.route("/api/v1/quarantine", map[string]handler{"GET": a.need(access.ReadQuarantine, a.listQuarantine)})
	a.route("/api/v1/quarantine/replay", map[string]handler{"POST": a.need(access.ReplayQuarantine, a.replayQuarantine)})
	a.analyticsRoutes()
	a.attributionRoutes()
	a.importRoutes()
	a.profileRoutes()
	a.consentRoutes()
	a.privacyRoutes()
	a.recordsRoutes()
	a.audienceRoutes()
	a.auditRoutes()
	a.experimentRoutes()
	a.destinationRoutes()
	a.catalogRoutes()
	a.trackingPlanRoutes()
	a.settingsRoutes()
	a.changeRoutes()
	a.mux.HandleFunc("/api/v1/", func(w http.ResponseWriter, r *http.Request) {
		apierror.Write(w, NotFound(r))
	})
	return a
}

// NotFound is the 404 for a path under /api/v1 that is no endpoint.
func NotFound(*http.Request) *apierror.Error {
	return apierror.Of(apierror.CodeNotFound, "no such endpoint; the management API's endpoints are listed in GET /api/v1/openapi.json")
}

// ServeHTTP answers the management API; any plain-text 404 or 405 from
// within (a method pattern added to the mux, say) goes out in the error
// shape.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.handler.ServeHTTP(w, r) }

// Routes lists the authenticated endpoints as "METHOD /api/v1/…" (the
// role × endpoint test walks them).
func (a *API) Routes() []string { return slices.Clone(a.routes) }

// route registers one path with a handler per method, authenticating first
// and answering unknown methods with 405 in the one error shape.
func (a *API) route(pattern string, methods map[string]handler) {
	allow := make([]string, 0, len(methods))
	for m := range methods {
		allow = append(allow, m)
	}
	slices.Sort(allow)
	for _, m := range allow {
		a.routes = append(a.routes, m+" "+pattern)
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
		if !access.Can(user.Role, access.ReadPII) {
			m, err := a.masker(r.Context())
			if err != nil {
				a.opts.Logger.Error("mask key unavailable", "err", err.Error())
				apierror.Write(w, apierror.ErrUnavailable)
				return
			}
			mw := &maskWriter{ResponseWriter: w, m: m}
			defer mw.finish()
			w = mw
		}
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
			return apierror.Of(apierror.CodeForbidden, "role "+string(userFrom(r.Context()).Role)+" may not "+string(p))
		}
		return h(w, r)
	}
}

// writeErr writes err in the one error shape (see errorShape),
// logging the cause of a 500.
func (a *API) writeErr(w http.ResponseWriter, r *http.Request, err error) {
	ae := errorShape(err)
	if ae.Code == apierror.CodeInternal {
		a.opts.Logger.Error("management API error", "path", r.URL.Path, "err", err.Error())
	}
	apierror.Write(w, ae)
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

// MaxBodyBytes bounds a management API JSON body; a larger one is refused
// with 413 too_large. (Import data is not a JSON body: it streams.)
const MaxBodyBytes = 1 << 20

// decode reads a JSON body into v, rejecting unknown fields and naming the
// field of a type error, and refusing a body over [MaxBodyBytes].
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	if r.ContentLength > MaxBodyBytes {
		return apierror.TooLarge(MaxBodyBytes)
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		// Only space may follow the value; reading it also finds a body
		// over the limit after a value that fits.
		if _, terr := dec.Token(); !errors.Is(terr, io.EOF) {
			err = terr
			if err == nil {
				err = errors.New("text after the JSON value")
			}
		}
	}
	if err != nil {
		var te *json.UnmarshalTypeError
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &mbe):
			return apierror.TooLarge(mbe.Limit)
		case errors.As(err, &te):
			return apierror.Field(te.Field, apierror.CodeInvalidType, "must be "+jsonKind(te.Type.Kind().String()))
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			f := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
			return apierror.Field(f, apierror.CodeUnknownField, "no such field")
		case errors.Is(err, io.EOF):
			return apierror.Of(apierror.CodeInvalidBody, "a JSON body is required")
		}
		return apierror.Of(apierror.CodeInvalidJSON, "body is not valid JSON")
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
			return 0, "", apierror.Field("limit", apierror.CodeInvalidField, "must be an integer from 1 to 1000")
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
		return time.Time{}, apierror.Field(name, apierror.CodeInvalidField, "not an RFC 3339 time")
	}
	return t, nil
}

func isNotFound(err error) bool {
	return errors.Is(err, statestore.ErrNotFound) || errors.Is(err, eventstore.ErrNotFound)
}
