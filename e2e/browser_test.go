package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// The vendors' own browser SDKs, at the versions docs/collection.md lists,
// against a real tandem: a page on one loopback origin loads the SDK from
// tandem (Segment) or from the page's server (RudderStack), the SDK
// fetches its settings from tandem and sends there, and every event must
// be stored with the context the browser gave it. See
// browser_harness_test.go for how Chromium is run and watched.
// The SDK versions, which the stored context.library must show, are the
// one tandem embeds and serves (collect/websdk/assets/VERSION) and the one
// vendored here (e2e/testdata/rudderstack/VERSION, scripts/update-test-sdks).

// pageServer serves the test's web pages from an origin other than
// tandem's: same loopback address, another port.
type pageServer struct {
	*httptest.Server
	tandem   string // tandem's base URL
	writeKey string
}

func newPageServer(t *testing.T, tandem, writeKey string) *pageServer {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	snippet, err := os.ReadFile(filepath.Join(root, "e2e", "testdata", "segment", "snippet.min.js"))
	if err != nil {
		t.Fatal(err)
	}
	rsa := filepath.Join(root, "e2e", "testdata", "rudderstack", "rsa.js")
	p := &pageServer{tandem: tandem, writeKey: writeKey}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /segment", func(w http.ResponseWriter, r *http.Request) {
		p.segmentPage(w, r, string(snippet))
	})
	mux.HandleFunc("GET /rudderstack", p.rudderStackPage)
	mux.HandleFunc("GET /rsa.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript")
		http.ServeFile(w, r, rsa)
	})
	mux.HandleFunc("GET /elsewhere", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<!doctype html><html><head><title>Elsewhere</title></head><body><p>Another page.</p></body></html>`)
	})
	mux.HandleFunc("GET /favicon.ico", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	p.Server = httptest.NewServer(mux)
	t.Cleanup(p.Close)
	return p
}

func js(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// segmentPage is a shop page with Segment's standard snippet, changed only
// in its host (and, for mode=batching, in the load options the snippet
// generator renders as analytics.load's second argument). The snippet
// calls page(); the page then identifies and tracks.
func (p *pageServer) segmentPage(w http.ResponseWriter, r *http.Request, snippet string) {
	q := r.URL.Query()
	s := strings.ReplaceAll(snippet, "https://cdn.segment.com", p.tandem)
	s = strings.ReplaceAll(s, "YOUR_WRITE_KEY", p.writeKey)
	if q.Get("mode") == "batching" {
		load := fmt.Sprintf(`analytics.load(%s);`, js(p.writeKey))
		opts := fmt.Sprintf(`analytics.load(%s, {"integrations":{"Segment.io":{"deliveryStrategy":{"strategy":"batching","config":{"size":3,"timeout":1000}}}}});`, js(p.writeKey))
		if !strings.Contains(s, load) {
			http.Error(w, "snippet has no load call", 500)
			return
		}
		s = strings.Replace(s, load, opts, 1)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	fmt.Fprintf(w, `<!doctype html>
<html><head><meta charset="utf-8"><title>Cosy Socks – Shop</title>
<script>
%s
</script>
</head><body><h1>Cosy Socks</h1>
<script>
analytics.identify(%s, {"email": "ada@example.com", "plan": "pro"});
analytics.track("Order Completed", {"orderId": %s, "revenue": 42.5, "currency": "EUR"});
analytics.ready(function () { window.__anonymousId = analytics.user().anonymousId(); });
</script></body></html>`, s, js(q.Get("user")), js(q.Get("order")))
}

// rudderStackPage is a shop page with RudderStack's SDK v3, self-hosted:
// the bundled build from the page's own server, the data plane and the
// configuration from tandem. mode=beacon sends with the beacon transport
// and tracks the page's unloading; mode=batch sends with the XHR queue's
// batching.
func (p *pageServer) rudderStackPage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	opts := map[string]any{"configUrl": p.tandem}
	switch q.Get("mode") {
	case "beacon":
		opts["useBeacon"] = true
		opts["autoTrack"] = map[string]any{"pageLifecycle": map[string]any{"enabled": true}}
	case "batch":
		opts["queueOptions"] = map[string]any{"batch": map[string]any{"enabled": true, "maxItems": 3, "flushInterval": 1000}}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	fmt.Fprintf(w, `<!doctype html>
<html><head><meta charset="utf-8"><title>Cosy Socks – Shop</title>
<script src="/rsa.js"></script>
</head><body><h1>Cosy Socks</h1>
<script>
var rudder = new rudderanalytics.RudderAnalytics();
rudder.load(%s, %s, %s);
rudder.page("Shop", "Home");
rudder.identify(%s, {"email": "grace@example.com", "plan": "team"});
rudder.track("Product Viewed", {"sku": %s, "price": 19.99});
rudder.ready(function () { window.__anonymousId = rudder.getAnonymousId(); });
</script></body></html>`, js(p.writeKey), js(p.tandem), js(opts), js(q.Get("user")), js(q.Get("order")))
}

type sdkVersions struct{ analyticsNext, rudderStack string }

// pageInfo is what the browser itself says, to compare the stored context
// with.
type pageInfo struct {
	AnonymousID string `json:"anonymousId"`
	UserAgent   string `json:"userAgent"`
	Language    string `json:"language"`
	TimeZone    string `json:"timeZone"`
	GMTOffset   string `json:"gmtOffset"` // "GMT+0100", RudderStack's form of the time zone
	URL         string `json:"url"`
	Path        string `json:"path"`
	Search      string `json:"search"`
	Title       string `json:"title"`
}

const pageInfoJS = `({
  anonymousId: window.__anonymousId,
  userAgent: navigator.userAgent,
  language: navigator.language,
  timeZone: Intl.DateTimeFormat().resolvedOptions().timeZone,
  gmtOffset: (String(new Date()).match(/GMT[+-]\d{4}/) || [""])[0],
  url: location.href,
  path: location.pathname,
  search: location.search,
  title: document.title
})`

// wantEvent is one call the page makes, as tandem must store it.
type wantEvent struct {
	typ, event, name, userID string
	properties, traits       map[string]any // the properties/traits the call set (stored ones may have more)
}

func TestBrowserSDKs(t *testing.T) {
	t.Parallel()
	exe := chromiumPath(t)
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	version := func(path ...string) string {
		v, err := os.ReadFile(filepath.Join(append([]string{root}, path...)...))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(v))
	}
	versions := sdkVersions{
		analyticsNext: version("collect", "websdk", "assets", "VERSION"),
		rudderStack:   version("e2e", "testdata", "rudderstack", "VERSION"),
	}
	s := startServer(t, "", serverOpts{})
	srcID := defaultSourceID(t, s)
	tandemURL := s.url
	pages := newPageServer(t, tandemURL, s.writeKey)
	tandemHost := strings.TrimPrefix(tandemURL, "http://")
	pageHost := strings.TrimPrefix(pages.URL, "http://")

	run := fmt.Sprintf("%d", time.Now().UnixNano())
	type variant struct {
		name, path, mode string
		// wantPaths are the collection requests (method and path) the SDK
		// must have sent through the tab; wantNoPaths must not appear.
		wantPaths, wantNoPaths []string
		unload                 bool // navigate away and expect the beacon
		// ajsAID sets the anonymousId through the page URL's ajs_aid
		// parameter, which makes analytics-next load one of its lazy
		// chunks (queryString) from tandem.
		ajsAID bool
	}
	variants := []variant{
		{name: "segment/default", path: "/segment", mode: "default",
			wantPaths:   []string{"GET /analytics.js/v1/" + s.writeKey + "/analytics.min.js", "GET /v1/projects/" + s.writeKey + "/settings", "POST /v1/p", "POST /v1/i", "POST /v1/t"},
			wantNoPaths: []string{"POST /v1/b"}, ajsAID: true},
		{name: "segment/batching", path: "/segment", mode: "batching",
			wantPaths:   []string{"GET /analytics.js/v1/" + s.writeKey + "/analytics.min.js", "GET /v1/projects/" + s.writeKey + "/settings", "POST /v1/b"},
			wantNoPaths: []string{"POST /v1/p", "POST /v1/i", "POST /v1/t"}},
		{name: "rudderstack/xhr", path: "/rudderstack", mode: "xhr",
			wantPaths:   []string{"GET /sourceConfig/", "POST /v1/page", "POST /v1/identify", "POST /v1/track"},
			wantNoPaths: []string{"POST /beacon/v1/batch"}},
		{name: "rudderstack/batch", path: "/rudderstack", mode: "batch",
			wantPaths:   []string{"GET /sourceConfig/", "POST /v1/batch"},
			wantNoPaths: []string{"POST /v1/page", "POST /v1/identify", "POST /v1/track", "POST /beacon/v1/batch"}},
		{name: "rudderstack/beacon_unload", path: "/rudderstack", mode: "beacon", unload: true,
			wantPaths:   []string{"GET /sourceConfig/"},
			wantNoPaths: []string{"POST /v1/page", "POST /v1/identify", "POST /v1/track", "POST /v1/batch"}},
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			segment := v.path == "/segment"
			user := fmt.Sprintf("browser-%s-%s", strings.ReplaceAll(v.name, "/", "-"), run)
			order := "order-" + user
			want := []wantEvent{
				{typ: "page"},
				{typ: "identify", userID: user, traits: map[string]any{"email": "ada@example.com", "plan": "pro"}},
				{typ: "track", event: "Order Completed", userID: user, properties: map[string]any{"orderId": order, "revenue": 42.5, "currency": "EUR"}},
			}
			if !segment {
				want = []wantEvent{
					{typ: "page", name: "Home", properties: map[string]any{"name": "Home", "category": "Shop"}},
					{typ: "identify", userID: user, traits: map[string]any{"email": "grace@example.com", "plan": "team"}},
					{typ: "track", event: "Product Viewed", userID: user, properties: map[string]any{"sku": order, "price": 19.99}},
				}
				if v.unload {
					want = append(want, wantEvent{typ: "track", event: "Page Unloaded", userID: user})
				}
			}
			params := url.Values{"mode": {v.mode}, "user": {user}, "order": {order}}
			if v.ajsAID {
				params.Set("ajs_aid", "anon-"+user)
			}
			pageURL := pages.URL + v.path + "?" + params.Encode()

			b := startBrowser(t, exe)
			if err := b.do(20*time.Second, chromedp.Navigate(pageURL)); err != nil {
				b.close()
				b.checkRequests(pageHost, tandemHost)
				t.Fatalf("open %s: %v", pageURL, err)
			}
			if _, err := waitFor[string](b, 15*time.Second, "window.__anonymousId"); err != nil {
				b.close()
				b.checkRequests(pageHost, tandemHost)
				t.Fatalf("the SDK did not get ready: %v", err)
			}
			info, err := evalIn[pageInfo](b, 5*time.Second, pageInfoJS)
			if err != nil {
				t.Fatal(err)
			}
			if info.TimeZone != browserTimeZone {
				t.Errorf("the browser's time zone is %q, want %q (the check of context.timezone would prove nothing)", info.TimeZone, browserTimeZone)
			}
			if info.Language != browserLanguage {
				t.Errorf("the browser's language is %q, want %q (the check of context.locale would prove little)", info.Language, browserLanguage)
			}
			if v.unload {
				// The beacon queue holds the events (it flushes after 10
				// events or 10 minutes) until the page is left.
				if got := storedFor(t, s, info.AnonymousID); len(got) > 0 {
					t.Errorf("%d events stored before the page was left; the test would not show the unload beacon", len(got))
				}
				if err := b.do(20*time.Second, chromedp.Navigate(pages.URL+"/elsewhere")); err != nil {
					t.Fatalf("leave the page: %v", err)
				}
			}
			stored, waitErr := waitStored(t, s, info.AnonymousID, len(want), 30*time.Second)
			b.close()
			// The browser's side first: a refused or misdirected request
			// explains a missing event.
			reqs, netReqs := b.checkRequests(pageHost, tandemHost)
			if waitErr != nil {
				t.Fatal(waitErr)
			}

			// What went over the wire.
			sent := map[string]bool{}
			bodies := map[string]map[string]any{} // messageId → the event as the browser sent it
			for _, r := range reqs {
				u, err := url.Parse(r.url)
				if err != nil || u.Host != tandemHost {
					continue
				}
				sent[r.method+" "+u.Path] = true
				collectSent(r.body, bodies)
			}
			if v.ajsAID {
				if info.AnonymousID != "anon-"+user {
					t.Errorf("anonymousId %q, want %q from the URL's ajs_aid", info.AnonymousID, "anon-"+user)
				}
				chunk := false
				for p := range sent {
					chunk = chunk || strings.HasPrefix(p, "GET /analytics-next/bundles/queryString.bundle.")
				}
				if !chunk {
					t.Errorf("analytics-next did not load its queryString chunk from tandem (sent %v)", keys(sent))
				}
			}
			for _, p := range v.wantPaths {
				if !sent[p] {
					t.Errorf("the SDK did not send %s to tandem (sent %v)", p, keys(sent))
				}
			}
			for _, p := range v.wantNoPaths {
				if sent[p] {
					t.Errorf("the SDK sent %s, which this mode must not use", p)
				}
			}
			beacons := 0
			for _, r := range netReqs {
				if r.Method == "POST" && r.URL == tandemURL+"/beacon/v1/batch?writeKey="+url.QueryEscape(s.writeKey) {
					beacons++
				}
			}
			if v.unload && beacons == 0 {
				t.Errorf("no POST /beacon/v1/batch?writeKey=… in Chromium's network log")
			}
			if !v.unload && beacons > 0 {
				t.Errorf("%d beacons, but this mode sends with fetch/XHR", beacons)
			}

			// What tandem stored.
			for _, w := range want {
				e := findStored(stored, w)
				if e == nil {
					t.Errorf("no stored %s event %q (user %q) among %d", w.typ, w.event, w.userID, len(stored))
					continue
				}
				id := str(e, "messageId")
				label := w.typ + " " + w.event
				if str(e, "sourceId") != srcID {
					t.Errorf("%s: sourceId %q, want %q", label, str(e, "sourceId"), srcID)
				}
				if w.userID != "" && str(e, "userId") != w.userID {
					t.Errorf("%s: userId %q, want %q", label, str(e, "userId"), w.userID)
				}
				if w.name != "" && str(e, "name") != w.name {
					t.Errorf("%s: name %q, want %q", label, str(e, "name"), w.name)
				}
				subset(t, label+": properties", e["properties"], w.properties)
				subset(t, label+": traits", traitsOf(e, segment), w.traits)
				if w.event == "Page Unloaded" {
					props, _ := e["properties"].(map[string]any)
					if n, ok := props["timeOnPage"].(float64); !ok || n <= 0 {
						t.Errorf("%s: properties.timeOnPage = %v, want a positive number", label, props["timeOnPage"])
					}
				}
				checkBrowserContext(t, label, e, info, segment, versions)
				// Everything the browser put in the context is stored as
				// sent; the server only adds ip.
				if sentEvent, ok := bodies[id]; ok {
					got, _ := e["context"].(map[string]any)
					wantCtx, _ := sentEvent["context"].(map[string]any)
					trimmed := map[string]any{}
					for k, v := range got {
						if k != "ip" {
							trimmed[k] = v
						}
					}
					if !reflect.DeepEqual(trimmed, wantCtx) {
						t.Errorf("%s: stored context differs from the one sent:\nstored %s\nsent   %s", label, js(trimmed), js(wantCtx))
					}
				} else if !v.unload {
					t.Errorf("%s: the tab's requests do not show the body that carried messageId %s", label, id)
				}
			}
		})
	}
}

// storedFor returns the stored events of one anonymousId.
func storedFor(t *testing.T, s *server, anonymousID string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, e := range s.events() {
		if str(e, "anonymousId") == anonymousID {
			out = append(out, e)
		}
	}
	return out
}

// waitStored polls the management API until n events of anonymousId are
// stored; on time-out the error shows the quarantine, where a refused
// event goes.
func waitStored(t *testing.T, s *server, anonymousID string, n int, d time.Duration) ([]map[string]any, error) {
	t.Helper()
	if anonymousID == "" {
		return nil, fmt.Errorf("the page reported no anonymousId")
	}
	deadline := time.Now().Add(d)
	for {
		got := storedFor(t, s, anonymousID)
		if len(got) >= n {
			return got, nil
		}
		if time.Now().After(deadline) {
			_, q := s.admin("GET", "/api/v1/quarantine", nil)
			return nil, fmt.Errorf("after %s, %d of %d events of anonymousId %s are stored: %s\nquarantine: %.3000s", d, len(got), n, anonymousID, js(got), q)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func findStored(stored []map[string]any, w wantEvent) map[string]any {
	for _, e := range stored {
		if str(e, "type") == w.typ && str(e, "event") == w.event && (w.userID == "" || str(e, "userId") == w.userID) {
			return e
		}
	}
	return nil
}

// traitsOf returns an identify's traits: top-level for Segment,
// context.traits for RudderStack, which sends them there.
func traitsOf(e map[string]any, segment bool) any {
	if segment {
		return e["traits"]
	}
	if t, ok := e["traits"]; ok {
		return t
	}
	ctx, _ := e["context"].(map[string]any)
	return ctx["traits"]
}

// subset checks that every key of want is in got with the same value.
func subset(t *testing.T, what string, got any, want map[string]any) {
	t.Helper()
	if len(want) == 0 {
		return
	}
	m, _ := got.(map[string]any)
	for k, v := range want {
		if !reflect.DeepEqual(m[k], v) {
			t.Errorf("%s.%s = %v, want %v (all: %s)", what, k, m[k], v, js(got))
		}
	}
}

// checkBrowserContext compares a stored event's context with what the
// browser says about itself.
func checkBrowserContext(t *testing.T, label string, e map[string]any, info pageInfo, segment bool, versions sdkVersions) {
	t.Helper()
	ctx, ok := e["context"].(map[string]any)
	if !ok {
		t.Errorf("%s: no context in %s", label, js(e))
		return
	}
	if str(e, "anonymousId") != info.AnonymousID {
		t.Errorf("%s: anonymousId %q, want %q", label, str(e, "anonymousId"), info.AnonymousID)
	}
	page, _ := ctx["page"].(map[string]any)
	for k, want := range map[string]string{"url": info.URL, "path": info.Path, "title": info.Title, "search": info.Search} {
		if str(page, k) != want {
			t.Errorf("%s: context.page.%s = %q, want %q", label, k, str(page, k), want)
		}
	}
	if str(ctx, "userAgent") != info.UserAgent {
		t.Errorf("%s: context.userAgent = %q, want the browser's %q", label, str(ctx, "userAgent"), info.UserAgent)
	}
	if str(ctx, "locale") != info.Language {
		t.Errorf("%s: context.locale = %q, want the browser's %q", label, str(ctx, "locale"), info.Language)
	}
	wantTZ, lib, version := info.TimeZone, "analytics.js", "next-"+versions.analyticsNext
	if !segment {
		wantTZ, lib, version = info.GMTOffset, "RudderLabs JavaScript SDK", versions.rudderStack
	}
	if str(ctx, "timezone") != wantTZ {
		t.Errorf("%s: context.timezone = %q, want %q", label, str(ctx, "timezone"), wantTZ)
	}
	library, _ := ctx["library"].(map[string]any)
	if str(library, "name") != lib || str(library, "version") != version {
		t.Errorf("%s: context.library = %v, want %s %s", label, library, lib, version)
	}
	if str(ctx, "ip") != "127.0.0.0" {
		t.Errorf("%s: context.ip = %q, want 127.0.0.0 (the connection's address, added by tandem, truncated to its /24)", label, str(ctx, "ip"))
	}
}

// collectSent indexes the events of one request body by messageId: a
// single event, or a {batch: […]}.
func collectSent(body []byte, into map[string]map[string]any) {
	var m map[string]any
	if json.Unmarshal(body, &m) != nil {
		return
	}
	if batch, ok := m["batch"].([]any); ok {
		for _, e := range batch {
			if em, ok := e.(map[string]any); ok && str(em, "messageId") != "" {
				into[str(em, "messageId")] = em
			}
		}
		return
	}
	if str(m, "messageId") != "" {
		into[str(m, "messageId")] = m
	}
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
