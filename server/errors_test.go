package server

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestEveryMissIsInTheErrorShape: unknown paths and methods anywhere on a
// node (the root, collection, management, operations) answer the one error
// shape, with a hint where one helps; /readyz's 503 too.
func TestEveryMissIsInTheErrorShape(t *testing.T) {
	n := startNode(t, "", nil)
	for _, tc := range []struct {
		method, path string
		status       int
		code, hint   string
	}{
		{"POST", "/", 405, "method_not_allowed", ""},
		{"DELETE", "/ui/app.js", 405, "method_not_allowed", ""},
		{"GET", "/ui/nope.js", 404, "not_found", "/api/v1/openapi.json"},
		{"GET", "/ui/", 404, "not_found", "/api/v1/openapi.json"},
		{"GET", "/nope", 404, "not_found", "/api/v1/openapi.json"},
		{"GET", "/v1", 404, "not_found", "/v1/track"},
		{"POST", "/v1/", 404, "not_found", "/v1/batch"},
		{"POST", "/v1/nope", 404, "not_found", "/v1/identify"},
		{"POST", "/v1/track/", 404, "not_found", "/v1/track"},
		{"GET", "/api/v1", 404, "not_found", "/api/v1/openapi.json"},
		{"GET", "/api/v1/", 404, "not_found", "/api/v1/openapi.json"},
		{"GET", "/api/v1/nope", 404, "not_found", "/api/v1/openapi.json"},
		{"POST", "/healthz", 405, "method_not_allowed", ""},
		{"DELETE", "/readyz", 405, "method_not_allowed", ""},
		{"PUT", "/metrics", 405, "method_not_allowed", ""},
		{"GET", "/v1/track", 405, "method_not_allowed", ""},
	} {
		r := n.do(tc.method, tc.path, "", nil, nil)
		checkError(t, r, tc.status, tc.code, "")
		if msg, _ := r.json(t)["error"].(map[string]any)["message"].(string); !strings.Contains(msg, tc.hint) {
			t.Errorf("%s %s: message %q does not say %q", tc.method, tc.path, msg, tc.hint)
		}
		if tc.status == 405 && r.header.Get("Allow") == "" {
			t.Errorf("%s %s: 405 without Allow", tc.method, tc.path)
		}
		if r.header.Get("Location") != "" {
			t.Errorf("%s %s: redirected to %s", tc.method, tc.path, r.header.Get("Location"))
		}
	}
	if r := n.do("POST", "/healthz", "", nil, nil); r.header.Get("Allow") != "GET, HEAD" {
		t.Errorf("Allow %q", r.header.Get("Allow"))
	}

	// The dashboard answers "/" (see package web).
	if r := n.do("GET", "/", "", nil, nil); r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") ||
		!strings.Contains(string(r.body), "tandem dashboard") {
		t.Errorf("GET /: %d %s %.200q", r.status, r.header.Get("Content-Type"), r.body)
	}

	// The known endpoints still answer.
	for _, path := range []string{"/healthz", "/readyz"} {
		r := n.do("GET", path, "", nil, nil)
		var body struct{ Status string }
		if err := json.Unmarshal(r.body, &body); r.status != 200 || err != nil || body.Status == "" {
			t.Errorf("GET %s: %d %q", path, r.status, r.body)
		}
	}
	if r := n.do("GET", "/metrics", "", nil, nil); r.status != 200 {
		t.Errorf("GET /metrics: %d", r.status)
	}

	// Not ready: 503 not_ready with Retry-After, in the shape.
	n.srv.lastAppendFailure.Store(time.Now().UnixNano())
	r := n.do("GET", "/readyz", "", nil, nil)
	checkError(t, r, 503, "not_ready", "")
	if r.header.Get("Retry-After") != "1" {
		t.Errorf("readyz 503 without Retry-After: %v", r.header)
	}
}
