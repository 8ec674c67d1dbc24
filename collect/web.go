package collect

import (
	"io"
	"net/http"
	"strconv"
	"strings"

	"tandem/apierror"
	"tandem/collect/websdk"
)

// Paths are the path prefixes the collection handler serves; the server
// routes each of them to it.
var Paths = []string{"/v1/", "/sourceConfig", "/sourceConfig/", "/beacon/", "/analytics.js/", "/analytics-next/", "/rsaMetrics"}

// shortPaths are analytics.js's one-letter paths for each event type.
var shortPaths = map[string]string{"t": "track", "i": "identify", "p": "page", "s": "screen", "g": "group", "a": "alias"}

// sdkMetricsBytes bounds how much of an SDK metrics report is read.
const sdkMetricsBytes = 1 << 20

// webRoutes adds the paths browser SDKs use to h.mux.
func (h *Handler) webRoutes() {
	// Segment analytics.js / analytics-next.
	for letter, typ := range shortPaths {
		h.mux.HandleFunc("/v1/"+letter, h.serve(endpoint{name: typ, typ: typ, enrich: true}))
	}
	h.mux.HandleFunc("/v1/b", h.serve(endpoint{name: "batch", enrich: true}))
	h.mux.HandleFunc("/v1/m", h.sdkMetricsReport("m"))
	h.mux.HandleFunc("GET /v1/projects/{writeKey}/settings", h.segmentSettings)
	h.mux.HandleFunc("GET /v1/projects/{writeKey}/integrations", h.segmentSettings)
	h.mux.HandleFunc("GET /analytics.js/v1/{writeKey}/analytics.min.js", h.segmentBundle)
	h.mux.HandleFunc("GET /analytics.js/v1/{writeKey}/analytics.js", h.segmentBundle)
	h.mux.HandleFunc("GET /analytics-next/bundles/{file}", h.segmentChunk)
	h.mux.HandleFunc("GET /analytics-next/LICENSE", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, websdk.License)
	})

	// RudderStack JavaScript SDK v3.
	h.mux.HandleFunc("GET /sourceConfig", h.rudderSourceConfig)
	h.mux.HandleFunc("GET /sourceConfig/", h.rudderSourceConfig)
	h.mux.HandleFunc("/beacon/v1/batch", h.serve(endpoint{name: "beacon", enrich: true, queryKey: true}))
	h.mux.HandleFunc("/rsaMetrics", h.sdkMetricsReport("rsaMetrics"))
	// No catch-all: the mux's own 404s and 405s (with Allow) are turned
	// into the error shape, naming the collection endpoints, by the
	// server's apierror.Handler.
}

// sdkMetricsReport accepts an SDK's report of its own metrics, whatever
// it holds, and counts it: the SDK must never see an error for it.
func (h *Handler) sdkMetricsReport(name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.CopyN(io.Discard, r.Body, sdkMetricsBytes)
		if n >= sdkMetricsBytes {
			w.Header().Set("Connection", "close")
		}
		h.sdkMetrics.Add(1, name)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"success":true}`)
		h.requests.Add(1, name, "200")
	}
}

// source resolves a write key named in a GET request (path, query or Basic
// auth) and checks the request's origin.
func (h *Handler) source(r *http.Request, key string) (Source, *apierror.Error) {
	if key == "" {
		return Source{}, &apierror.Error{Status: 401, Code: "unauthenticated", Field: "writeKey", Message: "no write key"}
	}
	src, e := h.lookup(r.Context(), key)
	if e != nil {
		return Source{}, e
	}
	if e := checkOrigin(r, src); e != nil {
		return Source{}, e
	}
	return src, nil
}

// segmentSettings serves analytics-next's settings document.
func (h *Handler) segmentSettings(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("writeKey")
	if _, e := h.source(r, key); e != nil {
		h.answer(w, "settings", e)
		return
	}
	doc, err := websdk.SegmentSettings(key, h.publicBase(r))
	if err != nil {
		h.answer(w, "settings", &apierror.Error{Status: 500, Code: "internal", Message: "the public URL is not a valid URL"})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "private, max-age=60")
	_, _ = w.Write(doc)
	h.requests.Add(1, "settings", "200")
}

// segmentBundle serves the analytics-next bundle to a snippet.
func (h *Handler) segmentBundle(w http.ResponseWriter, r *http.Request) {
	if _, e := h.source(r, r.PathValue("writeKey")); e != nil {
		h.answer(w, "bundle", e)
		return
	}
	base := h.publicBase(r)
	hd := w.Header()
	hd.Set("Content-Type", "text/javascript; charset=utf-8")
	// Short: a source that is suspended should stop loading soon.
	hd.Set("Cache-Control", "public, max-age=300")
	hd.Set("ETag", websdk.BundleETag(base))
	hd.Set("X-Content-Type-Options", "nosniff")
	if match := r.Header.Get("If-None-Match"); match != "" && strings.Contains(match, websdk.BundleETag(base)) {
		w.WriteHeader(http.StatusNotModified)
		h.requests.Add(1, "bundle", "304")
		return
	}
	_, _ = w.Write(websdk.Bundle(base))
	h.requests.Add(1, "bundle", "200")
}

// segmentChunk serves the chunks the bundle loads on demand.
func (h *Handler) segmentChunk(w http.ResponseWriter, r *http.Request) {
	b, ok := websdk.Chunk(r.PathValue("file"))
	if !ok {
		h.answer(w, "bundle", &apierror.Error{Status: 404, Code: "not_found", Message: "no such analytics-next chunk in analytics-next " + websdk.Version})
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "text/javascript; charset=utf-8")
	// Chunk names carry a content hash: they never change.
	hd.Set("Cache-Control", "public, max-age=31536000, immutable")
	hd.Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(b)
	h.requests.Add(1, "bundle", "200")
}

// rudderSourceConfig serves RudderStack's source configuration; the SDK
// sends the write key in the query and as Basic auth.
func (h *Handler) rudderSourceConfig(w http.ResponseWriter, r *http.Request) {
	key := r.URL.Query().Get("writeKey")
	if key == "" {
		var e *apierror.Error
		if key, _, e = basicUser(r); e != nil {
			h.answer(w, "sourceConfig", e)
			return
		}
	}
	src, e := h.source(r, key)
	if e != nil {
		h.answer(w, "sourceConfig", e)
		return
	}
	name := src.Name
	if name == "" {
		name = src.ID
	}
	doc, err := websdk.RudderSourceConfig(websdk.RudderSource{ID: src.ID, Name: name, WriteKey: key})
	if err != nil {
		h.answer(w, "sourceConfig", apierror.ErrInternal)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "private, max-age=60")
	_, _ = w.Write(doc)
	h.requests.Add(1, "sourceConfig", "200")
}

// answer writes the error e of a GET endpoint and counts it.
func (h *Handler) answer(w http.ResponseWriter, name string, e *apierror.Error) {
	apierror.Write(w, e)
	h.requests.Add(1, name, strconv.Itoa(e.Status))
}
