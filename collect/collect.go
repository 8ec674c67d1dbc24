package collect

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"encoding/json"

	"tandem/apierror"
	"tandem/event"
	"tandem/eventlog"
	"tandem/metrics"
)

// Source is what collection needs to know of the source a write key names.
type Source struct {
	ID       string
	Name     string
	Approval string // only "approved" sources may send
	// AllowedOrigins, when not empty, are the only browser origins (see
	// [OriginAllowed]) whose pages may send with this source's key.
	AllowedOrigins []string
	// IPPolicy is what becomes of context.ip before the log:
	// event.IPTruncate (also for ""), event.IPDrop or event.IPKeep.
	IPPolicy string
}

// ErrUnknownKey is returned by a [Sources] lookup for a key no source has.
var ErrUnknownKey = errors.New("collect: unknown write key")

// Sources resolves write keys. Implementations compare keys in constant time
// and may cache.
type Sources interface {
	LookupWriteKey(ctx context.Context, key string) (Source, error)
}

// Appender makes a chunk of log entries durable; it is usually an
// [eventlog.Committer], which groups concurrent requests into one fsync.
// Append must not keep entries once it has returned: the handler reuses
// the buffer.
type Appender interface {
	Append(ctx context.Context, entries []byte) error
}

// Options configure a [Handler].
type Options struct {
	Sources Sources
	Log     Appender
	Limiter *Limiter          // per-source rate limit; nil means none
	Metrics *metrics.Registry // nil means a private registry
	Logger  *slog.Logger
	Now     func() time.Time

	// PublicURL is the address browsers reach tandem at, for the SDK
	// settings documents; empty means each request's own scheme and host.
	PublicURL string
	// TrustedProxies are the proxies whose X-Forwarded-For (for
	// context.ip) and X-Forwarded-Proto are believed.
	TrustedProxies []netip.Prefix
	// Backpressure, when set, is asked before each request is read: a
	// non-nil error (503 overloaded, with Retry-After) refuses it.
	Backpressure func() *apierror.Error
}

// Handler serves the collection endpoints.
type Handler struct {
	opts Options
	mux  *http.ServeMux

	requests    *metrics.CounterVec
	accepted    *metrics.CounterVec
	quarantined *metrics.CounterVec
	sdkMetrics  *metrics.CounterVec
	bufs        sync.Pool
}

// New returns the collection handler.
func New(opts Options) *Handler {
	if opts.Metrics == nil {
		opts.Metrics = metrics.NewRegistry()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	h := &Handler{opts: opts, mux: http.NewServeMux()}
	h.requests = opts.Metrics.NewCounterVec("tandem_collect_requests_total", "Collection requests by endpoint and HTTP status.", "endpoint", "status")
	h.accepted = opts.Metrics.NewCounterVec("tandem_events_accepted_total", "Valid events made durable in the event log, by source.", "source")
	h.quarantined = opts.Metrics.NewCounterVec("tandem_events_quarantined_total", "Invalid events made durable and sent to the quarantine, by reason.", "code")
	h.sdkMetrics = opts.Metrics.NewCounterVec("tandem_collect_sdk_metrics_total", "Requests of browser SDKs reporting their own metrics (/v1/m, /rsaMetrics), accepted and not stored.", "endpoint")
	for _, t := range event.Types {
		h.mux.HandleFunc("/v1/"+t, h.serve(endpoint{name: t, typ: t, enrich: true}))
	}
	h.mux.HandleFunc("/v1/batch", h.serve(endpoint{name: "batch", enrich: true}))
	h.mux.HandleFunc("/v1/import", h.serve(endpoint{name: "import"}))
	h.webRoutes()
	return h
}

// ServeHTTP serves the collection endpoints, with CORS on all of them: a
// preflight (OPTIONS) is answered here, and every other answer carries the
// CORS headers of a request with an Origin.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	cors(w, r)
	if r.Method == http.MethodOptions {
		preflight(w, r)
		return
	}
	h.mux.ServeHTTP(w, r)
}

// endpoint describes an event-collecting path.
type endpoint struct {
	name     string // the metric label
	typ      string // the event type of a single-event endpoint; "" for batches
	enrich   bool   // add context.ip and context.userAgent where absent
	queryKey bool   // the write key may be in the query (?writeKey=)
}

// reply is the 200 body.
type reply struct {
	Success     bool          `json:"success"`
	Quarantined []quarantined `json:"quarantined,omitempty"`
}

type quarantined struct {
	Index   int    `json:"index"`
	Code    string `json:"code"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

func (h *Handler) serve(ep endpoint) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		status := h.handle(w, r, ep)
		h.requests.Add(1, ep.name, strconv.Itoa(status))
	}
}

func (h *Handler) handle(w http.ResponseWriter, r *http.Request, ep endpoint) int {
	body := &trackedBody{ReadCloser: r.Body}
	r.Body = body
	fail := func(e *apierror.Error) int { return refuse(w, r, body, e) }
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		return fail(apierror.ErrMethod)
	}
	if h.opts.Backpressure != nil {
		if e := h.opts.Backpressure(); e != nil {
			return fail(e)
		}
	}
	receivedAt := h.opts.Now().UTC()
	ctx := r.Context()

	// A key in the Authorization header (or, for the beacon, the query) is
	// checked before the body is read, so a wrong key costs nothing.
	key, hasKey, aerr := basicUser(r)
	if aerr != nil {
		return fail(aerr)
	}
	if !hasKey && ep.queryKey {
		if key = r.URL.Query().Get("writeKey"); key != "" {
			hasKey = true
		}
	}
	var src Source
	if hasKey {
		var e *apierror.Error
		if src, e = h.lookup(ctx, key); e != nil {
			return fail(e)
		}
		if e := checkOrigin(r, src); e != nil {
			return fail(e)
		}
	}

	buf := h.getBuf()
	defer h.putBuf(buf)
	if e := readBody(r, buf); e != nil {
		return fail(e)
	}
	// The write key may be in the body, so the source (and its IP
	// policy) may be known only after parsing: then the server's defaults
	// carry the address as found, and minimisation below edits it with
	// every address the events carry themselves.
	var ctxDefaults []byte
	if ep.enrich {
		ctxDefaults = h.contextDefaults(r, src.IPPolicy, hasKey)
	}
	// A source known already has its events minimised as they are
	// parsed (most need nothing, which the parse sees on the way).
	var policy string
	if hasKey {
		if policy = src.IPPolicy; policy == "" {
			policy = event.IPTruncate
		}
	}
	// The appender copies the chunk into its record before it returns, so
	// the chunk's buffer goes back to the pool with the body's.
	chunkBuf := h.getBuf()
	defer h.putBuf(chunkBuf)
	chunkBuf.Grow(2*buf.Len() + 4096)
	var chunk []byte
	var req *event.Request
	var err error
	switch {
	case ep.typ == "" && hasKey:
		// The valid events' log entries are encoded as they are parsed.
		req, chunk, err = event.EncodeBatch(chunkBuf.AvailableBuffer(), src.ID, buf.Bytes(), receivedAt, ctxDefaults, policy)
	case ep.typ == "":
		req, err = event.ParseBatchContext(buf.Bytes(), receivedAt, ctxDefaults, policy)
	default:
		req, err = event.ParseSingleContext(ep.typ, buf.Bytes(), receivedAt, ctxDefaults, policy)
	}
	if err != nil {
		var re *event.RequestError
		if errors.As(err, &re) {
			return fail(&apierror.Error{Status: re.Status, Code: re.Code, Field: re.Field, Message: re.Message})
		}
		return fail(apierror.ErrInternal)
	}
	if !hasKey {
		if req.WriteKey == "" {
			return fail(&apierror.Error{Status: 401, Code: "unauthenticated", Message: "no write key: send it as the Basic-auth user name or as writeKey in the body"})
		}
		var e *apierror.Error
		if src, e = h.lookup(ctx, req.WriteKey); e != nil {
			return fail(e)
		}
		if e := checkOrigin(r, src); e != nil {
			return fail(e)
		}
	}
	n := req.Count()
	if h.opts.Limiter != nil {
		if ok, retry := h.opts.Limiter.Allow(src.ID, n, receivedAt); !ok {
			return fail(&apierror.Error{Status: 429, Code: "rate_limited",
				Message: "this source is sending faster than its rate limit", RetryAfter: retry})
		}
	}
	// Minimisation, before anything is durable: the raw address never
	// reaches the log.
	if policy == "" {
		for i := range req.Events {
			req.Events[i].Raw = event.MinimiseEvent(req.Events[i].Raw, src.IPPolicy)
		}
	}
	for i := range req.Problems {
		req.Problems[i].SourceID = src.ID
		req.Problems[i].Raw = event.MinimiseEvent(req.Problems[i].Raw, src.IPPolicy)
	}
	if chunk == nil {
		chunk = chunkBuf.AvailableBuffer()
	}
	chunk = event.AppendEntries(chunk, src.ID, req.Events, req.Problems)
	if err := h.opts.Log.Append(ctx, chunk); err != nil {
		if errors.Is(err, eventlog.ErrOverloaded) {
			return fail(ErrOverloaded) // nothing was queued
		}
		if ctx.Err() != nil {
			// The client went away; it will retry and dedup keeps one copy.
			return 499
		}
		if errors.Is(err, eventlog.ErrUnavailable) || errors.Is(err, eventlog.ErrClosed) {
			h.opts.Logger.Warn("event log cannot take writes", "err", err.Error())
		} else {
			h.opts.Logger.Error("event log append failed", "err", err.Error())
		}
		return fail(apierror.ErrUnavailable)
	}
	if v := req.Valid(); v > 0 {
		h.accepted.Add(uint64(v), src.ID)
	}
	out := reply{Success: true}
	for _, p := range req.Problems {
		h.quarantined.Add(1, p.Code)
		out.Quarantined = append(out.Quarantined, quarantined{Index: p.Index, Code: p.Code, Field: p.Field, Message: p.Message})
	}
	w.Header().Set("Content-Type", "application/json")
	if len(out.Quarantined) == 0 {
		_, _ = io.WriteString(w, `{"success":true}`)
		return 200
	}
	b, _ := json.Marshal(out)
	_, _ = w.Write(b)
	return 200
}

func (h *Handler) lookup(ctx context.Context, key string) (Source, *apierror.Error) {
	src, err := h.opts.Sources.LookupWriteKey(ctx, key)
	if errors.Is(err, ErrUnknownKey) {
		return Source{}, &apierror.Error{Status: 401, Code: "unauthenticated", Message: "unknown write key"}
	}
	if err != nil {
		h.opts.Logger.Error("write key lookup failed", "err", err.Error())
		return Source{}, apierror.ErrUnavailable
	}
	if src.Approval != "approved" {
		return Source{}, &apierror.Error{Status: 403, Code: "source_not_approved",
			Message: "this source is " + src.Approval + "; it may send data once approved"}
	}
	return src, nil
}

// basicUser returns the Basic-auth user name, if the request has a Basic
// Authorization header.
func basicUser(r *http.Request) (string, bool, *apierror.Error) {
	auth := r.Header.Get("Authorization")
	if auth == "" {
		return "", false, nil
	}
	const prefix = "Basic "
	if len(auth) < len(prefix) || !strings.EqualFold(auth[:len(prefix)], prefix) {
		return "", false, &apierror.Error{Status: 401, Code: "unauthenticated", Field: "Authorization", Message: "use Basic auth with the write key as user name"}
	}
	dec, err := base64.StdEncoding.DecodeString(strings.TrimSpace(auth[len(prefix):]))
	if err != nil {
		return "", false, &apierror.Error{Status: 401, Code: "unauthenticated", Field: "Authorization", Message: "Basic credentials are not valid base64"}
	}
	user, _, _ := strings.Cut(string(dec), ":")
	if user == "" {
		return "", false, &apierror.Error{Status: 401, Code: "unauthenticated", Field: "Authorization", Message: "empty write key"}
	}
	return user, true, nil
}

// readBody reads the request body into buf, gunzipping by Content-Encoding
// (whatever the Content-Type says: some SDKs send gzip under a form type).
func readBody(r *http.Request, buf *bytes.Buffer) *apierror.Error {
	tooLarge := &apierror.Error{Status: 413, Code: "too_large",
		Message: "request body over " + strconv.Itoa(event.MaxRequestBytes/1024) + " KB"}
	if r.ContentLength > event.MaxRequestBytes {
		return tooLarge
	}
	body := io.LimitReader(r.Body, event.MaxRequestBytes+1)
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
		if _, err := buf.ReadFrom(body); err != nil {
			return &apierror.Error{Status: 400, Code: "invalid_body", Message: "could not read body"}
		}
	case "gzip":
		zr, err := gzip.NewReader(body)
		if err != nil {
			return &apierror.Error{Status: 400, Code: "invalid_gzip", Field: "Content-Encoding", Message: "body is not valid gzip"}
		}
		if _, err := buf.ReadFrom(io.LimitReader(zr, event.MaxRequestBytes+1)); err != nil {
			if buf.Len() > event.MaxRequestBytes {
				return tooLarge
			}
			return &apierror.Error{Status: 400, Code: "invalid_gzip", Field: "Content-Encoding", Message: "body is not valid gzip"}
		}
	default:
		return &apierror.Error{Status: 400, Code: "unsupported_encoding", Field: "Content-Encoding", Message: "only gzip is supported, not " + strconv.Quote(enc)}
	}
	if buf.Len() > event.MaxRequestBytes {
		return tooLarge
	}
	return nil
}

func (h *Handler) getBuf() *bytes.Buffer {
	if b, ok := h.bufs.Get().(*bytes.Buffer); ok {
		b.Reset()
		return b
	}
	return new(bytes.Buffer)
}

func (h *Handler) putBuf(b *bytes.Buffer) {
	if b.Cap() <= 2*event.MaxRequestBytes {
		h.bufs.Put(b)
	}
}
