package web

import (
	"io/fs"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// xmlNamespaces are URLs that name something and are never fetched: XML
// namespaces, and the licences the vendored library's files cite.
var xmlNamespaces = map[string]bool{
	"http://www.w3.org/2000/svg":                            true,
	"http://www.w3.org/1999/xlink":                          true,
	"http://www.w3.org/2000/xmlns/":                         true,
	"http://www.w3.org/XML/1998/namespace":                  true,
	"http://www.apache.org/licenses/LICENSE-2.0":            true,
	"https://github.com/ecomfe/zrender/blob/master/LICENSE": true,
}

// TestNoOutsideURL: the dashboard works offline, so no embedded page,
// script or style may
// point at another host: no http(s) URL (but XML namespace names), no
// protocol-relative src/href/url(), no @import of a remote sheet.
func TestNoOutsideURL(t *testing.T) {
	abs := regexp.MustCompile(`(?i)\bhttps?://[^\s"'` + "`" + `)<>]+`)
	rel := regexp.MustCompile(`(?i)(src|href|action)\s*=\s*["']?//|url\(\s*["']?//|@import`)
	n := 0
	err := fs.WalkDir(Files(), ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		switch filepath.Ext(path) {
		case ".js", ".css", ".html":
		default:
			return nil // LICENSE, NOTICE, VERSION: read by people, never loaded
		}
		n++
		b, err := fs.ReadFile(Files(), path)
		if err != nil {
			return err
		}
		for _, u := range abs.FindAllString(string(b), -1) {
			if !xmlNamespaces[u] {
				t.Errorf("%s refers to %s: the dashboard must load nothing from elsewhere", path, u)
			}
		}
		for _, m := range rel.FindAllString(string(b), -1) {
			t.Errorf("%s has %q: a protocol-relative or imported outside resource", path, m)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 3 {
		t.Fatalf("only %d embedded files; is the embed pattern right?", n)
	}
}

// TestOutsideURLIsCaught: the check above finds what it must find.
func TestOutsideURLIsCaught(t *testing.T) {
	abs := regexp.MustCompile(`(?i)\bhttps?://[^\s"'` + "`" + `)<>]+`)
	if got := abs.FindString(`<script src="https://cdn.example.com/x.js">`); got != "https://cdn.example.com/x.js" {
		t.Errorf("found %q", got)
	}
}

// TestServes: the page at "/", its files under /ui/ with the right types,
// a CSP that keeps the page to its own origin, and no directory listing.
func TestServes(t *testing.T) {
	mux := http.NewServeMux()
	mux.Handle("GET /{$}", Index())
	mux.Handle("GET /ui/", Assets())
	for _, tc := range []struct {
		path, ctype string
		status      int
	}{
		{"/", "text/html", 200},
		{"/ui/app.js", "text/javascript", 200},
		{"/ui/app.css", "text/css", 200},
		{"/ui/charts.js", "text/javascript", 200},
		{"/ui/vendor/echarts/echarts.esm.min.js", "text/javascript", 200},
		{"/ui/", "", 404},
		{"/ui/nope.js", "", 404},
	} {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest("GET", tc.path, nil))
		if rec.Code != tc.status {
			t.Errorf("GET %s: %d, want %d", tc.path, rec.Code, tc.status)
			continue
		}
		if tc.status != 200 {
			continue
		}
		if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, tc.ctype) {
			t.Errorf("GET %s: Content-Type %q, want %s", tc.path, ct, tc.ctype)
		}
		if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
			t.Errorf("GET %s: CSP %q", tc.path, csp)
		}
	}
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if !strings.Contains(rec.Body.String(), `src="/ui/app.js"`) {
		t.Errorf("the page does not load /ui/app.js")
	}
}

// TestETag: an asset carries an ETag of its content, and asking again with
// it answers 304 without the body.
func TestETag(t *testing.T) {
	mux := http.NewServeMux()
	mux.Handle("GET /ui/", Assets())
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("GET", "/ui/vendor/echarts/echarts.esm.min.js", nil))
	tag := rec.Header().Get("ETag")
	if rec.Code != 200 || tag == "" || rec.Body.Len() < 100000 {
		t.Fatalf("first GET: %d, ETag %q, %d bytes", rec.Code, tag, rec.Body.Len())
	}
	req := httptest.NewRequest("GET", "/ui/vendor/echarts/echarts.esm.min.js", nil)
	req.Header.Set("If-None-Match", tag)
	rec = httptest.NewRecorder()
	mux.ServeHTTP(rec, req)
	if rec.Code != http.StatusNotModified || rec.Body.Len() != 0 {
		t.Errorf("GET with If-None-Match: %d, %d bytes; want 304 and none", rec.Code, rec.Body.Len())
	}
	rec = httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("GET", "/ui/app.js", nil))
	if other := rec.Header().Get("ETag"); other == "" || other == tag {
		t.Errorf("app.js ETag %q (the library's %q)", other, tag)
	}
}

// TestVendoredVersion: the vendored ECharts is the version its VERSION
// file names (scripts/update-echarts writes both), with its licence.
func TestVendoredVersion(t *testing.T) {
	v, err := fs.ReadFile(Files(), "ui/vendor/echarts/VERSION")
	if err != nil {
		t.Fatal(err)
	}
	lib, err := fs.ReadFile(Files(), "ui/vendor/echarts/echarts.esm.min.js")
	if err != nil {
		t.Fatal(err)
	}
	want := strings.TrimSpace(string(v))
	if !regexp.MustCompile(`="` + regexp.QuoteMeta(want) + `"`).Match(lib) {
		t.Errorf("echarts.esm.min.js does not hold version %q", want)
	}
	if lic, err := fs.ReadFile(Files(), "ui/vendor/echarts/LICENSE"); err != nil || !strings.Contains(string(lic), "Apache License") {
		t.Errorf("no Apache licence beside the library: %v", err)
	}
}
