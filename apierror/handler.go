package apierror

import (
	"net/http"
	"strings"
)

// Handler wraps h so that the plain-text 404 and 405 answers made inside
// it — those of every http.ServeMux, at any depth (no pattern matches the
// path; a pattern matches it but not the method), and any other
// http.NotFound or http.Error with those statuses — go out in the error
// shape: notFound(r) for a 404 (ErrNotFound if notFound is nil), and
// ErrMethod for a 405, with the Allow header the mux set. Answers a
// handler writes as JSON pass untouched, as does every other status.
func Handler(h http.Handler, notFound func(*http.Request) *Error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(&shapeWriter{ResponseWriter: w, r: r, notFound: notFound}, r)
	})
}

// shapeWriter replaces a plain-text 404 or 405 by the error shape and
// swallows the plain text written after it.
type shapeWriter struct {
	http.ResponseWriter
	r        *http.Request
	notFound func(*http.Request) *Error
	wrote    bool
	swallow  bool
}

func (w *shapeWriter) WriteHeader(status int) {
	if w.wrote {
		return
	}
	if status < 200 {
		w.ResponseWriter.WriteHeader(status) // informational: the answer follows
		return
	}
	w.wrote = true
	if (status == http.StatusNotFound || status == http.StatusMethodNotAllowed) &&
		strings.HasPrefix(w.Header().Get("Content-Type"), "text/plain") {
		w.swallow = true
		e := ErrMethod
		if status == http.StatusNotFound {
			e = ErrNotFound
			if w.notFound != nil {
				e = w.notFound(w.r)
			}
		}
		Write(w.ResponseWriter, e)
		return
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *shapeWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	if w.swallow {
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}

// Flush passes on to the writer wrapped, for handlers that stream.
func (w *shapeWriter) Flush() {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection (deadlines,
// flushes) through the wrapper.
func (w *shapeWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
