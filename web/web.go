// Package web is tandem's dashboard: static pages (HTML, CSS and plain ES
// modules, no build step) embedded in the binary and served by `tandem
// serve` at "/" and under "/ui/". The pages hold no data of their own:
// they call the management API (/api/v1) with the signed-in user's token,
// so the API's roles decide what each page shows. See docs/dashboard.md.
package web

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"sync"
)

//go:embed assets
var assets embed.FS

// Files returns the embedded files (index.html, ui/…).
func Files() fs.FS {
	sub, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err) // the embedded directory exists: go:embed checked it
	}
	return sub
}

// securityHeaders are set on every dashboard answer: the pages load
// nothing from elsewhere and may not be framed.
func securityHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-cache")
}

// Index serves the dashboard's page; mount it at "GET /{$}".
func Index() http.Handler {
	page, err := fs.ReadFile(Files(), "index.html")
	if err != nil {
		panic(err)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		securityHeaders(w)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(page)
	})
}

// Assets serves the dashboard's scripts and styles; mount it at
// "GET /ui/". A missing file is the mux's 404 (in the error shape, by the
// server's wrapper) rather than a directory listing.
func Assets() http.Handler {
	files := http.FileServerFS(Files())
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		securityHeaders(w)
		if f, err := Files().Open(r.URL.Path[1:]); err != nil {
			http.NotFound(w, r)
			return
		} else if st, err := f.Stat(); err != nil || st.IsDir() {
			f.Close()
			http.NotFound(w, r)
			return
		} else {
			f.Close()
		}
		// Embedded files have no modification time: an ETag of their
		// content lets the browser keep them (the charting library is
		// 1 MB) and still see a new binary's files at once.
		if tag := etag(r.URL.Path[1:]); tag != "" {
			w.Header().Set("ETag", tag)
		}
		files.ServeHTTP(w, r)
	})
}

var etags sync.Map // path → `"sha256 prefix"`

// etag is the ETag of the embedded file at path, computed once.
func etag(path string) string {
	if t, ok := etags.Load(path); ok {
		return t.(string)
	}
	b, err := fs.ReadFile(Files(), path)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(b)
	t := `"` + hex.EncodeToString(sum[:12]) + `"`
	etags.Store(path, t)
	return t
}
