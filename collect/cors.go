package collect

import (
	"net/http"
	"net/url"
	"strings"

	"tandem/apierror"
)

// preflightMaxAge is how long a browser may cache a preflight answer, in
// seconds (Chromium caps it at 2 hours).
const preflightMaxAge = "7200"

// allowedRequestHeaders are the request headers browser SDKs send:
// analytics-next (Content-Type text/plain, Authorization Basic,
// X-Retry-Count) and RudderStack's JavaScript SDK v3 (Accept,
// AnonymousId, SentAt and its Rsa-* delivery headers). Any other Rsa-*
// header a browser asks for is allowed too.
var allowedRequestHeaders = []string{
	"Content-Type", "Authorization", "Accept", "Content-Encoding", "X-Retry-Count",
	"AnonymousId", "SentAt",
	"Rsa-Recovered", "Rsa-Retry-Attempt", "Rsa-Since-Last-Attempt", "Rsa-Since-First-Attempt", "Rsa-Retry-Reason",
}

var allowedHeaderSet = func() map[string]bool {
	m := map[string]bool{}
	for _, h := range allowedRequestHeaders {
		m[strings.ToLower(h)] = true
	}
	return m
}()

// cors adds the CORS answer headers of a request with an Origin header to
// every answer, errors included. Every origin is allowed here; a source
// that lists its allowed origins refuses the others once its write key is
// known (see [Handler.checkOrigin]).
func cors(w http.ResponseWriter, r *http.Request) {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", origin)
	h.Add("Vary", "Origin")
	h.Set("Access-Control-Expose-Headers", "Retry-After")
}

// preflight answers a CORS preflight (any OPTIONS request) with 204.
func preflight(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Access-Control-Allow-Methods", "POST, GET, OPTIONS")
	allow := strings.Join(allowedRequestHeaders, ", ")
	// Reflect the other requested headers that are safe to take.
	for _, v := range r.Header.Values("Access-Control-Request-Headers") {
		for _, name := range strings.Split(v, ",") {
			name = strings.TrimSpace(name)
			l := strings.ToLower(name)
			if l == "" || allowedHeaderSet[l] || !strings.HasPrefix(l, "rsa-") || !tokenOK(l) {
				continue
			}
			allow += ", " + name
		}
	}
	h.Set("Access-Control-Allow-Headers", allow)
	h.Set("Access-Control-Max-Age", preflightMaxAge)
	h.Add("Vary", "Access-Control-Request-Headers")
	if r.Header.Get("Access-Control-Request-Private-Network") == "true" {
		// Chromium's Private Network Access: a public page may reach a
		// tandem on a private address.
		h.Set("Access-Control-Allow-Private-Network", "true")
	}
	w.WriteHeader(http.StatusNoContent)
}

// tokenOK reports whether s is a plain header name.
func tokenOK(s string) bool {
	if len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// CORS wraps a browser-facing handler outside collection (experiment
// assignment) in the same CORS handling: preflights answered 204, the
// answer headers on every answer, errors included. The handler checks the
// source's allowed origins itself with [CheckOrigin] once it knows the
// write key.
func CORS(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cors(w, r)
		if r.Method == http.MethodOptions {
			preflight(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// CheckOrigin is [checkOrigin] for handlers outside this package.
func CheckOrigin(r *http.Request, src Source) *apierror.Error { return checkOrigin(r, src) }

// checkOrigin refuses a request from a browser page whose origin the
// source does not allow. Requests without an Origin header (servers,
// mobile apps) are not browser requests and are not restricted: the
// allowed origins keep other sites' pages from sending with a write key
// copied from a page, they are not an authentication.
func checkOrigin(r *http.Request, src Source) *apierror.Error {
	if len(src.AllowedOrigins) == 0 {
		return nil
	}
	origin := r.Header.Get("Origin")
	if origin == "" || OriginAllowed(src.AllowedOrigins, origin) {
		return nil
	}
	return &apierror.Error{Status: 403, Code: "origin_not_allowed", Field: "Origin",
		Message: "this source does not accept events from pages of " + truncate(origin, 200)}
}

// OriginAllowed reports whether origin (scheme://host[:port], as a browser
// sends it) matches one of allowed: equal to an entry (case aside), or a
// subdomain of an entry written scheme://*.domain[:port]. "*" allows all.
func OriginAllowed(allowed []string, origin string) bool {
	origin = strings.ToLower(origin)
	u, err := url.Parse(origin)
	for _, a := range allowed {
		a = strings.ToLower(strings.TrimRight(a, "/"))
		if a == "*" || a == origin {
			return true
		}
		if err != nil || !strings.Contains(a, "://*.") {
			continue
		}
		scheme, rest, _ := strings.Cut(a, "://*.")
		if scheme != u.Scheme {
			continue
		}
		domain, port, _ := strings.Cut(rest, ":")
		if port != u.Port() {
			continue
		}
		host := u.Hostname()
		if strings.HasSuffix(host, "."+domain) {
			return true
		}
	}
	return false
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
