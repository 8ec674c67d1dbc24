package apierror_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"tandem/apierror"
)

type shape struct {
	Error struct {
		Code    string           `json:"code"`
		Message string           `json:"message"`
		Field   string           `json:"field"`
		Matches []apierror.Match `json:"matches"`
	} `json:"error"`
}

func serve(t *testing.T, h http.Handler, method, path string) (*http.Response, shape, string) {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	req, _ := http.NewRequest(method, srv.URL+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var s shape
	if resp.StatusCode >= 400 {
		if err := json.Unmarshal(b, &s); err != nil || s.Error.Code == "" || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s %s: %d %s %q is not the error shape", method, path, resp.StatusCode, resp.Header.Get("Content-Type"), b)
		}
	}
	return resp, s, string(b)
}

// TestHandler: the plain-text 404s and 405s of muxes, nested or not, go
// out in the error shape; the answers handlers make themselves pass as
// they are.
func TestHandler(t *testing.T) {
	inner := http.NewServeMux()
	inner.HandleFunc("POST /in/thing", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "made") })
	inner.HandleFunc("/in/gone", func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) })
	outer := http.NewServeMux()
	outer.Handle("/in/", inner)
	outer.HandleFunc("GET /ok", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "fine")
	})
	outer.HandleFunc("GET /own", func(w http.ResponseWriter, r *http.Request) {
		apierror.Write(w, apierror.Of(apierror.CodeNotFound, "no such widget"))
	})
	outer.HandleFunc("GET /hints", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, "404 page not found\n")
	})
	outer.HandleFunc("GET /stream", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "a")
		if err := http.NewResponseController(w).Flush(); err != nil {
			t.Errorf("flush through the wrapper: %v", err)
		}
		io.WriteString(w, "b")
	})
	h := apierror.Handler(outer, func(r *http.Request) *apierror.Error {
		return apierror.Of(apierror.CodeNotFound, "nothing at "+r.URL.Path)
	})

	for _, tc := range []struct {
		method, path string
		status       int
		code, msg    string
		allow        string
	}{
		{"GET", "/nope", 404, "not_found", "nothing at /nope", ""},
		{"GET", "/in/nope", 404, "not_found", "nothing at /in/nope", ""},
		{"GET", "/in/gone", 404, "not_found", "nothing at /in/gone", ""},
		{"POST", "/ok", 405, "method_not_allowed", "", "GET, HEAD"},
		{"GET", "/in/thing", 405, "method_not_allowed", "", "POST"},
		{"GET", "/own", 404, "not_found", "no such widget", ""},
		{"GET", "/hints", 404, "not_found", "nothing at /hints", ""},
	} {
		resp, s, body := serve(t, h, tc.method, tc.path)
		if resp.StatusCode != tc.status || s.Error.Code != tc.code || (tc.msg != "" && s.Error.Message != tc.msg) {
			t.Errorf("%s %s: %d %s, want %d %s %q", tc.method, tc.path, resp.StatusCode, body, tc.status, tc.code, tc.msg)
		}
		if got := resp.Header.Get("Allow"); got != tc.allow {
			t.Errorf("%s %s: Allow %q, want %q", tc.method, tc.path, got, tc.allow)
		}
		if strings.Contains(body, "page not found") || strings.Count(body, "{\"error\"") != 1 {
			t.Errorf("%s %s: body %q", tc.method, tc.path, body)
		}
	}
	for path, want := range map[string]string{"/ok": "fine", "/stream": "ab"} {
		if resp, _, body := serve(t, h, "GET", path); resp.StatusCode != 200 || body != want {
			t.Errorf("GET %s: %d %q, want 200 %q", path, resp.StatusCode, body, want)
		}
	}
	if resp, _, body := serve(t, h, "POST", "/in/thing"); resp.StatusCode != 200 || body != "made" {
		t.Errorf("POST /in/thing: %d %q", resp.StatusCode, body)
	}
	// Without a notFound func, the generic 404.
	if _, s, _ := serve(t, apierror.Handler(outer, nil), "GET", "/nope"); s.Error.Message != apierror.ErrNotFound.Message {
		t.Errorf("default 404 message %q", s.Error.Message)
	}
}

// TestWriteEscapes: the shape is valid JSON whatever the message holds
// (Go's %q, used by hand before, is not JSON for every string).
func TestWriteEscapes(t *testing.T) {
	msg := "log \x00 away: \"quoted\" \u2028 \xff <tag> é"
	w := httptest.NewRecorder()
	e := apierror.Of(apierror.CodeNotReady, msg)
	e.RetryAfter = 2
	e.Matches = []apierror.Match{{Source: "src_a", MessageID: "m1"}}
	apierror.Write(w, e)
	var s shape
	if err := json.Unmarshal(w.Body.Bytes(), &s); err != nil {
		t.Fatalf("%v: %q", err, w.Body.Bytes())
	}
	if w.Code != 503 || s.Error.Code != "not_ready" || !strings.Contains(s.Error.Message, `"quoted"`) || w.Header().Get("Retry-After") != "2" {
		t.Errorf("%d %q %v", w.Code, w.Body.Bytes(), w.Header())
	}
	if len(s.Error.Matches) != 1 || s.Error.Matches[0].MessageID != "m1" {
		t.Errorf("matches %v", s.Error.Matches)
	}
	w = httptest.NewRecorder()
	apierror.Write(w, apierror.ErrNotFound)
	if strings.Contains(w.Body.String(), "matches") || strings.Contains(w.Body.String(), "field") {
		t.Errorf("empty optional members written: %s", w.Body.String())
	}
}
