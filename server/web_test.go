package server

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"tandem/config"
)

// Tests of what browser and mobile SDKs need from collection (the
// headless-browser tests drive the real SDKs; these pin the HTTP contract).

const pageOrigin = "http://shop.example.test:8000"

func TestCORSPreflightOnEveryCollectionPath(t *testing.T) {
	n := startNode(t, "", nil)
	for _, path := range []string{"/v1/t", "/v1/track", "/v1/batch", "/v1/b", "/v1/m", "/v1/projects/" + n.writeKey + "/settings",
		"/sourceConfig/?writeKey=" + n.writeKey, "/beacon/v1/batch?writeKey=" + n.writeKey, "/rsaMetrics",
		"/analytics.js/v1/" + n.writeKey + "/analytics.min.js"} {
		r := n.do("OPTIONS", path, "", nil, map[string]string{
			"Origin":                         pageOrigin,
			"Access-Control-Request-Method":  "POST",
			"Access-Control-Request-Headers": "authorization,anonymousid,content-type,sentat,rsa-retry-attempt,rsa-something-new,x-retry-count,x-evil",
		})
		if r.status != 204 {
			t.Errorf("OPTIONS %s: %d %s", path, r.status, r.body)
			continue
		}
		if got := r.header.Get("Access-Control-Allow-Origin"); got != pageOrigin {
			t.Errorf("OPTIONS %s: Allow-Origin %q", path, got)
		}
		if !strings.Contains(strings.Join(r.header.Values("Vary"), ","), "Origin") {
			t.Errorf("OPTIONS %s: Vary %q", path, r.header.Values("Vary"))
		}
		if got := r.header.Get("Access-Control-Allow-Methods"); got != "POST, GET, OPTIONS" {
			t.Errorf("OPTIONS %s: Allow-Methods %q", path, got)
		}
		allow := strings.ToLower(r.header.Get("Access-Control-Allow-Headers"))
		for _, h := range []string{"authorization", "anonymousid", "content-type", "sentat", "rsa-retry-attempt", "rsa-something-new", "x-retry-count"} {
			if !strings.Contains(allow, h) {
				t.Errorf("OPTIONS %s: %s not in Allow-Headers %q", path, h, allow)
			}
		}
		if strings.Contains(allow, "x-evil") {
			t.Errorf("OPTIONS %s: x-evil allowed: %q", path, allow)
		}
		if r.header.Get("Access-Control-Max-Age") == "" {
			t.Errorf("OPTIONS %s: no Max-Age", path)
		}
		if r.header.Get("Access-Control-Allow-Credentials") != "" {
			t.Errorf("OPTIONS %s: credentials allowed", path)
		}
	}

	// The real answers carry the CORS headers too, errors included.
	ok := n.do("POST", "/v1/t", "basic:"+n.writeKey, []byte(`{"userId":"u","event":"E"}`), map[string]string{"Origin": pageOrigin})
	if ok.status != 200 || ok.header.Get("Access-Control-Allow-Origin") != pageOrigin {
		t.Errorf("POST /v1/t: %d, Allow-Origin %q", ok.status, ok.header.Get("Access-Control-Allow-Origin"))
	}
	bad := n.do("POST", "/v1/t", "basic:wk_nope", []byte(`{"userId":"u","event":"E"}`), map[string]string{"Origin": pageOrigin})
	checkError(t, bad, 401, "unauthenticated", "")
	if bad.header.Get("Access-Control-Allow-Origin") != pageOrigin {
		t.Errorf("401 without Allow-Origin: %v", bad.header)
	}
	// No Origin, no CORS headers.
	if h := n.do("POST", "/v1/t", "basic:"+n.writeKey, []byte(`{"userId":"u","event":"E"}`), nil).header.Get("Access-Control-Allow-Origin"); h != "" {
		t.Errorf("Allow-Origin %q on a request without Origin", h)
	}

	// The management API stays same-origin only.
	pre := n.do("OPTIONS", "/api/v1/sources", "", nil, map[string]string{"Origin": pageOrigin, "Access-Control-Request-Method": "GET"})
	if pre.status == 204 || pre.header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("management API preflight: %d %v", pre.status, pre.header)
	}
	get := n.do("GET", "/api/v1/sources", "bearer:"+n.token, nil, map[string]string{"Origin": pageOrigin})
	if get.status != 200 || get.header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("management API answer: %d, Allow-Origin %q", get.status, get.header.Get("Access-Control-Allow-Origin"))
	}
}

// browserEvent is an event as analytics-next sends it, with the browser
// context tandem must keep as sent.
func browserEvent(typ, extra string) string {
	return `{"type":"` + typ + `","anonymousId":"anon-1",` + extra + `"messageId":"ajs-next-` + typ + `-` + fmt.Sprint(time.Now().UnixNano()) + `",` +
		`"context":{"page":{"path":"/shoes","url":"http://shop.example.test:8000/shoes?utm_source=news","title":"Shoes"},` +
		`"campaign":{"source":"news"},"library":{"name":"analytics.js","version":"next-1.84.3"},"locale":"de-DE","timezone":"Europe/Berlin"},` +
		`"_metadata":{"bundled":["Segment.io"]},"sentAt":"` + time.Now().UTC().Format(time.RFC3339Nano) + `"}`
}

func TestAnalyticsJSShortPathsTextPlainAndBatching(t *testing.T) {
	n := startNode(t, "", nil)
	textPlain := map[string]string{"Content-Type": "text/plain", "Origin": pageOrigin, "User-Agent": "Mozilla/5.0 (test browser)"}
	for path, extra := range map[string]string{
		"/v1/t": `"event":"Viewed Shoes",`, "/v1/i": `"userId":"u-web",`, "/v1/p": `"name":"Shoes",`,
		"/v1/s": `"name":"Home",`, "/v1/g": `"groupId":"g1",`, "/v1/a": `"userId":"u-web","previousId":"anon-1",`,
	} {
		typ := map[string]string{"t": "track", "i": "identify", "p": "page", "s": "screen", "g": "group", "a": "alias"}[path[4:]]
		r := n.do("POST", path, "basic:"+n.writeKey, []byte(browserEvent(typ, extra)), textPlain)
		if r.status != 200 || string(r.body) != `{"success":true}` {
			t.Errorf("POST %s: %d %s", path, r.status, r.body)
		}
	}
	// Batching mode: the write key in the body, no Authorization.
	b := `{"writeKey":"` + n.writeKey + `","sentAt":"` + time.Now().UTC().Format(time.RFC3339Nano) + `","batch":[` +
		browserEvent("track", `"event":"Added To Cart",`) + `,` + browserEvent("page", `"name":"Cart",`) + `]}`
	if r := n.do("POST", "/v1/b", "", []byte(b), textPlain); r.status != 200 {
		t.Fatalf("POST /v1/b: %d %s", r.status, r.body)
	}
	n.drain()
	evs := n.events("")
	if len(evs) != 8 {
		t.Fatalf("want 8 events, got %d", len(evs))
	}
	types := map[string]int{}
	for _, e := range evs {
		types[e["type"].(string)]++
		c, _ := e["context"].(map[string]any)
		page, _ := c["page"].(map[string]any)
		lib, _ := c["library"].(map[string]any)
		camp, _ := c["campaign"].(map[string]any)
		if page["path"] != "/shoes" || lib["name"] != "analytics.js" || camp["source"] != "news" ||
			c["locale"] != "de-DE" || c["timezone"] != "Europe/Berlin" {
			t.Errorf("browser context not kept as sent: %v", c)
		}
		if c["userAgent"] != "Mozilla/5.0 (test browser)" || c["ip"] != "127.0.0.0" {
			t.Errorf("context.userAgent/ip (truncated to its /24) not added: %v", c)
		}
	}
	if types["track"] != 2 || types["page"] != 2 || types["identify"] != 1 || types["screen"] != 1 || types["group"] != 1 || types["alias"] != 1 {
		t.Errorf("types stored: %v", types)
	}
}

func TestSDKMetricsAlwaysAccepted(t *testing.T) {
	n := startNode(t, "", nil)
	for _, c := range []struct{ path, body string }{
		{"/v1/m", `{"series":[{"type":"Counter","metric":"analytics_js.invoke","value":1,"tags":{}}]}`},
		{"/v1/m", `not json at all`},
		{"/v1/m", ``},
		{"/rsaMetrics", `{"version":"1","source":{},"errors":[]}`},
	} {
		r := n.do("POST", c.path, "", []byte(c.body), map[string]string{"Content-Type": "text/plain", "Origin": pageOrigin})
		if r.status != 200 || r.header.Get("Access-Control-Allow-Origin") != pageOrigin {
			t.Errorf("POST %s %q: %d %s", c.path, c.body, r.status, r.body)
		}
	}
	m := n.do("GET", "/metrics", "", nil, nil)
	if !strings.Contains(string(m.body), `tandem_collect_sdk_metrics_total{endpoint="m"} 3`) ||
		!strings.Contains(string(m.body), `tandem_collect_sdk_metrics_total{endpoint="rsaMetrics"} 1`) {
		t.Errorf("SDK metrics not counted:\n%s", grepLines(string(m.body), "sdk_metrics"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// createSource makes a source through the management API and returns its
// id and write key.
func (n *node) createSource(name string, origins []string) (string, string) {
	n.t.Helper()
	body := map[string]any{"name": name, "kind": "web", "owner": "marketing", "purpose": "shop tracking", "dataCategories": []string{"behavioural"}}
	if origins != nil {
		body["allowedOrigins"] = origins
	}
	r := n.admin("POST", "/api/v1/sources", body)
	if r.status != 201 {
		n.t.Fatalf("create source: %d %s", r.status, r.body)
	}
	m := r.json(n.t)
	return m["id"].(string), m["writeKey"].(string)
}

func TestSegmentSettingsDocument(t *testing.T) {
	n := startNode(t, "", nil)
	for _, doc := range []string{"settings", "integrations"} {
		r := n.do("GET", "/v1/projects/"+n.writeKey+"/"+doc, "", nil, map[string]string{"Origin": pageOrigin})
		if r.status != 200 || r.header.Get("Access-Control-Allow-Origin") != pageOrigin {
			t.Fatalf("GET %s: %d %s", doc, r.status, r.body)
		}
		var s struct {
			Integrations map[string]struct {
				APIKey   string `json:"apiKey"`
				APIHost  string `json:"apiHost"`
				Protocol string `json:"protocol"`
			} `json:"integrations"`
			Metrics struct {
				SampleRate *float64 `json:"sampleRate"`
			} `json:"metrics"`
			RemotePlugins []any `json:"remotePlugins"`
		}
		if err := json.Unmarshal(r.body, &s); err != nil {
			t.Fatal(err)
		}
		seg := s.Integrations["Segment.io"]
		host := strings.TrimPrefix(n.url, "http://")
		if len(s.Integrations) != 1 || seg.APIKey != n.writeKey || seg.APIHost != host+"/v1" || seg.Protocol != "http" {
			t.Errorf("%s: integrations %+v, want only Segment.io at %s/v1 over http", doc, s.Integrations, host)
		}
		if s.Metrics.SampleRate == nil || *s.Metrics.SampleRate != 0 || len(s.RemotePlugins) != 0 {
			t.Errorf("%s: remote metrics or plugins on: %s", doc, r.body)
		}
	}
	checkError(t, n.do("GET", "/v1/projects/wk_unknown/settings", "", nil, nil), 401, "unauthenticated", "")

	// A pending source (proposed by marketing, waiting for IT) may not
	// load the SDK.
	u := n.admin("POST", "/api/v1/users", map[string]any{"name": "marketing-person", "role": "marketing"})
	if u.status != 201 {
		t.Fatalf("create user: %d %s", u.status, u.body)
	}
	tok := u.json(t)["token"].(string)
	p := n.do("POST", "/api/v1/sources", "bearer:"+tok, []byte(`{"name":"pending web","kind":"web","owner":"marketing","purpose":"x","dataCategories":["contact"]}`), nil)
	if p.status != 201 {
		t.Fatalf("create pending source: %d %s", p.status, p.body)
	}
	pk := p.json(t)["writeKey"].(string)
	checkError(t, n.do("GET", "/v1/projects/"+pk+"/settings", "", nil, nil), 403, "source_not_approved", "")
	checkError(t, n.do("GET", "/analytics.js/v1/"+pk+"/analytics.min.js", "", nil, nil), 403, "source_not_approved", "")
}

func TestSettingsUsePublicURL(t *testing.T) {
	n := startNode(t, "", func(c *config.Config) { c.PublicURL = "https://collect.example.com/" })
	r := n.do("GET", "/v1/projects/"+n.writeKey+"/settings", "", nil, nil)
	if r.status != 200 || !strings.Contains(string(r.body), `"apiHost":"collect.example.com/v1"`) || !strings.Contains(string(r.body), `"protocol":"https"`) {
		t.Errorf("settings with a public URL: %d %s", r.status, r.body)
	}
	js := n.do("GET", "/analytics.js/v1/"+n.writeKey+"/analytics.min.js", "", nil, nil)
	if !strings.Contains(string(js.body[:400]), `"https://collect.example.com"`) {
		t.Errorf("bundle prelude does not name the public URL: %.300s", js.body)
	}
}

func TestAnalyticsJSBundleServed(t *testing.T) {
	n := startNode(t, "", nil)
	want, err := os.ReadFile("../collect/websdk/assets/standalone.js")
	if err != nil {
		t.Fatal(err)
	}
	r := n.do("GET", "/analytics.js/v1/"+n.writeKey+"/analytics.min.js", "", nil, nil)
	if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/javascript") {
		t.Fatalf("bundle: %d %s", r.status, r.header)
	}
	first, rest, _ := strings.Cut(string(r.body), "\n")
	if !strings.Contains(first, `a._cdn="`+n.url+`"`) {
		t.Errorf("prelude does not point the SDK at tandem: %s", first)
	}
	body, _, _ := strings.Cut(string(want), "\n//# sourceMappingURL=")
	if strings.TrimSpace(rest) != strings.TrimSpace(body) {
		t.Errorf("bundle is not analytics-next's standalone.js (got %d bytes, want %d)", len(rest), len(body))
	}
	if r.header.Get("Cache-Control") == "" || r.header.Get("ETag") == "" {
		t.Errorf("no cache headers: %v", r.header)
	}
	if nm := n.do("GET", "/analytics.js/v1/"+n.writeKey+"/analytics.min.js", "", nil, map[string]string{"If-None-Match": r.header.Get("ETag")}); nm.status != 304 {
		t.Errorf("If-None-Match: %d", nm.status)
	}
	checkError(t, n.do("GET", "/analytics.js/v1/wk_unknown/analytics.min.js", "", nil, nil), 401, "unauthenticated", "")

	// The chunks the bundle loads on demand are served from tandem too.
	entries, _ := os.ReadDir("../collect/websdk/assets/bundles")
	if len(entries) == 0 {
		t.Fatal("no chunks vendored")
	}
	for _, e := range entries {
		c := n.do("GET", "/analytics-next/bundles/"+e.Name(), "", nil, nil)
		if c.status != 200 || len(c.body) == 0 {
			t.Errorf("chunk %s: %d", e.Name(), c.status)
		}
	}
	checkError(t, n.do("GET", "/analytics-next/bundles/nope.js", "", nil, nil), 404, "not_found", "")
	if l := n.do("GET", "/analytics-next/LICENSE", "", nil, nil); l.status != 200 || !strings.Contains(string(l.body), "MIT") {
		t.Errorf("licence: %d", l.status)
	}
}

func TestRudderStackSourceConfigAndBeacon(t *testing.T) {
	n := startNode(t, "", nil)
	q := "/sourceConfig/?p=npm&v=3.34.1&build=modern&writeKey=" + n.writeKey + "&lockIntegrationsVersion=true&lockPluginsVersion=true"
	r := n.do("GET", q, "basic:"+n.writeKey, nil, map[string]string{"Origin": pageOrigin, "Accept": "application/json"})
	if r.status != 200 || r.header.Get("Access-Control-Allow-Origin") != pageOrigin {
		t.Fatalf("sourceConfig: %d %s", r.status, r.body)
	}
	var sc struct {
		Source struct {
			ID           string         `json:"id"`
			Enabled      bool           `json:"enabled"`
			Config       map[string]any `json:"config"`
			Destinations []any          `json:"destinations"`
		} `json:"source"`
	}
	if err := json.Unmarshal(r.body, &sc); err != nil || sc.Source.ID == "" || !sc.Source.Enabled || sc.Source.Config == nil ||
		sc.Source.Destinations == nil || len(sc.Source.Destinations) != 0 {
		t.Errorf("sourceConfig shape: %s", r.body)
	}
	// The key as Basic auth only, and the path without its slash.
	if r := n.do("GET", "/sourceConfig?p=npm", "basic:"+n.writeKey, nil, nil); r.status != 200 {
		t.Errorf("sourceConfig by Basic auth: %d %s", r.status, r.body)
	}
	checkError(t, n.do("GET", "/sourceConfig/?writeKey=wk_unknown", "", nil, nil), 401, "unauthenticated", "")

	// The page-unload beacon: text/plain, the key only in the query.
	ev := func(typ, extra string) string {
		return `{"type":"` + typ + `","anonymousId":"rs-anon","userId":"",` + extra + `"channel":"web","context":{"library":{"name":"RudderLabs JavaScript SDK"}},"sentAt":"` +
			time.Now().UTC().Format(time.RFC3339Nano) + `","originalTimestamp":"` + time.Now().UTC().Format(time.RFC3339Nano) + `"}`
	}
	b := `{"batch":[` + ev("track", `"event":"Page Unloaded",`) + `,` + ev("page", `"name":"Checkout",`) + `],"sentAt":"` + time.Now().UTC().Format(time.RFC3339Nano) + `"}`
	br := n.do("POST", "/beacon/v1/batch?writeKey="+n.writeKey, "", []byte(b), map[string]string{"Content-Type": "text/plain;charset=UTF-8", "Origin": pageOrigin})
	if br.status != 200 {
		t.Fatalf("beacon: %d %s", br.status, br.body)
	}
	checkError(t, n.do("POST", "/beacon/v1/batch?writeKey=wk_unknown", "", []byte(b), nil), 401, "unauthenticated", "")
	// RudderStack's per-event XHR path, with its headers.
	x := n.do("POST", "/v1/identify", "basic:"+n.writeKey, []byte(ev("identify", `"traits":{"plan":"pro"},`)), map[string]string{
		"Content-Type": "application/json;charset=UTF-8", "AnonymousId": base64.StdEncoding.EncodeToString([]byte("rs-anon")), "SentAt": time.Now().UTC().Format(time.RFC3339)})
	if x.status != 200 {
		t.Fatalf("identify: %d %s", x.status, x.body)
	}
	n.drain()
	if evs := n.events(""); len(evs) != 3 {
		t.Errorf("want 3 events stored, got %d", len(evs))
	}
}

func TestContextIPAndUserAgent(t *testing.T) {
	post := func(n *node, path string, body string, hdr map[string]string) {
		t.Helper()
		if r := n.do("POST", path, "basic:"+n.writeKey, []byte(body), hdr); r.status != 200 {
			t.Fatalf("POST %s: %d %s", path, r.status, r.body)
		}
	}
	ctxOf := func(n *node, id string) map[string]any {
		t.Helper()
		r := n.admin("GET", "/api/v1/events/"+id, nil)
		if r.status != 200 {
			t.Fatalf("GET event %s: %d %s", id, r.status, r.body)
		}
		c, _ := r.json(t)["context"].(map[string]any)
		return c
	}

	// The addresses as found: the default source keeps them (the default
	// policy truncates them, TestIPMinimisation).
	keep := func(n *node) {
		t.Helper()
		if r := n.admin("PATCH", "/api/v1/sources/default", map[string]any{"ipPolicy": "keep"}); r.status != 200 {
			t.Fatalf("ipPolicy keep: %d %s", r.status, r.body)
		}
	}
	// No trusted proxies: X-Forwarded-For is not believed.
	n := startNode(t, "", nil)
	keep(n)
	post(n, "/v1/track", `{"userId":"u","event":"E","messageId":"m1"}`, map[string]string{"X-Forwarded-For": "203.0.113.9", "User-Agent": "ua/1"})
	post(n, "/v1/track", `{"userId":"u","event":"E","messageId":"m2","context":{"ip":"198.51.100.7","userAgent":"own/2"}}`, map[string]string{"User-Agent": "ua/1"})
	post(n, "/v1/batch", `{"context":{"ip":"192.0.2.1"},"batch":[{"type":"track","userId":"u","event":"E","messageId":"m3"},{"type":"track","userId":"u","event":"E","messageId":"m4","context":{"ip":"192.0.2.2"}}]}`, map[string]string{"User-Agent": "ua/1"})
	post(n, "/v1/import", `{"batch":[{"type":"track","userId":"u","event":"E","messageId":"m5","timestamp":"2025-01-01T00:00:00Z"}]}`, map[string]string{"User-Agent": "importer/1"})
	n.drain()
	if c := ctxOf(n, "m1"); c["ip"] != "127.0.0.1" || c["userAgent"] != "ua/1" {
		t.Errorf("untrusted peer: context %v, want ip 127.0.0.1 (X-Forwarded-For ignored) and the User-Agent", c)
	}
	if c := ctxOf(n, "m2"); c["ip"] != "198.51.100.7" || c["userAgent"] != "own/2" {
		t.Errorf("the event's own ip/userAgent were overwritten: %v", c)
	}
	if c := ctxOf(n, "m3"); c["ip"] != "192.0.2.1" || c["userAgent"] != "ua/1" {
		t.Errorf("batch context: %v, want the batch's ip", c)
	}
	if c := ctxOf(n, "m4"); c["ip"] != "192.0.2.2" {
		t.Errorf("event context in a batch: %v", c)
	}
	if c := ctxOf(n, "m5"); c["ip"] != nil || c["userAgent"] != nil {
		t.Errorf("/v1/import got server context: %v", c)
	}
	n.stop()

	// Loopback is a trusted proxy, and so is 10.0.0.0/8: the client is the
	// first untrusted hop from the right.
	n = startNode(t, "", func(c *config.Config) { c.TrustedProxies = []string{"127.0.0.1/32", "10.0.0.0/8"} })
	keep(n)
	post(n, "/v1/track", `{"userId":"u","event":"E","messageId":"t1"}`, map[string]string{"X-Forwarded-For": "203.0.113.9, 10.1.2.3"})
	post(n, "/v1/track", `{"userId":"u","event":"E","messageId":"t2"}`, map[string]string{"X-Forwarded-For": "6.6.6.6, 203.0.113.10"}) // left part spoofed by the client
	post(n, "/v1/track", `{"userId":"u","event":"E","messageId":"t3"}`, nil)
	post(n, "/v1/track", `{"userId":"u","event":"E","messageId":"t4"}`, map[string]string{"X-Forwarded-For": "not-an-ip, 10.9.9.9"})
	n.drain()
	for id, want := range map[string]string{"t1": "203.0.113.9", "t2": "203.0.113.10", "t3": "127.0.0.1", "t4": "10.9.9.9"} {
		if c := ctxOf(n, id); c["ip"] != want {
			t.Errorf("%s: context.ip %v, want %s", id, c["ip"], want)
		}
	}
}

func TestAllowedOrigins(t *testing.T) {
	n := startNode(t, "", nil)
	id, key := n.createSource("shop web", []string{"https://shop.example.com", "https://*.example.org/"})
	got := n.admin("GET", "/api/v1/sources/"+id, nil)
	if o, _ := got.json(t)["allowedOrigins"].([]any); len(o) != 2 || o[1] != "https://*.example.org" {
		t.Errorf("GET source: allowedOrigins %v", got.json(t)["allowedOrigins"])
	}
	ev := []byte(`{"userId":"u","event":"E"}`)
	for origin, want := range map[string]int{
		"https://shop.example.com": 200, "https://SHOP.example.com": 200, "https://www.example.org": 200, "https://a.b.example.org": 200,
		"https://evil.example": 403, "http://shop.example.com": 403, "https://example.org": 403, "https://shop.example.com:8443": 403, "null": 403,
	} {
		r := n.do("POST", "/v1/t", "basic:"+key, ev, map[string]string{"Origin": origin, "Content-Type": "text/plain"})
		if want == 403 {
			checkError(t, r, 403, "origin_not_allowed", "Origin")
			if r.header.Get("Access-Control-Allow-Origin") != origin {
				t.Errorf("403 for %s without CORS headers: the SDK cannot read it", origin)
			}
		} else if r.status != want {
			t.Errorf("origin %s: %d %s", origin, r.status, r.body)
		}
	}
	// Experiment assignment is a browser path too: preflight, CORS headers
	// and the source's origins.
	assign := "/v1/experiments/nope/assign?anonymousId=a&writeKey=" + key
	if r := n.do("OPTIONS", assign, "", nil, map[string]string{"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"}); r.status != 204 || r.header.Get("Access-Control-Allow-Origin") != "https://evil.example" {
		t.Errorf("OPTIONS assign: %d, Allow-Origin %q", r.status, r.header.Get("Access-Control-Allow-Origin"))
	}
	checkError(t, n.do("GET", assign, "", nil, map[string]string{"Origin": "https://evil.example"}), 403, "origin_not_allowed", "Origin")
	if r := n.do("GET", assign, "", nil, map[string]string{"Origin": "https://shop.example.com"}); r.status != 404 || r.header.Get("Access-Control-Allow-Origin") != "https://shop.example.com" {
		t.Errorf("assign from an allowed origin: %d (want 404: no such experiment), Allow-Origin %q", r.status, r.header.Get("Access-Control-Allow-Origin"))
	}
	// The key in the body, the settings and the bundle are checked too.
	r := n.do("POST", "/v1/b", "", []byte(`{"writeKey":"`+key+`","batch":[{"type":"track","userId":"u","event":"E"}]}`), map[string]string{"Origin": "https://evil.example"})
	checkError(t, r, 403, "origin_not_allowed", "Origin")
	checkError(t, n.do("GET", "/v1/projects/"+key+"/settings", "", nil, map[string]string{"Origin": "https://evil.example"}), 403, "origin_not_allowed", "Origin")
	// Servers and apps send no Origin: not restricted.
	if r := n.do("POST", "/v1/track", "basic:"+key, ev, nil); r.status != 200 {
		t.Errorf("no Origin: %d %s", r.status, r.body)
	}

	// Changed through the management API; an empty list allows all.
	checkError(t, n.admin("PATCH", "/api/v1/sources/"+id, map[string]any{"allowedOrigins": []string{"ftp://x"}}), 400, "", "allowedOrigins")
	checkError(t, n.admin("PATCH", "/api/v1/sources/"+id, map[string]any{"allowedOrigins": []string{"https://shop.example.com/path"}}), 400, "", "allowedOrigins")
	checkError(t, n.admin("PATCH", "/api/v1/sources/src_nope", map[string]any{"allowedOrigins": []string{}}), 404, "", "")
	p := n.admin("PATCH", "/api/v1/sources/"+id, map[string]any{"allowedOrigins": []string{}})
	if p.status != 200 {
		t.Fatalf("PATCH: %d %s", p.status, p.body)
	}
	// At once on the node that made the change (its write-key cache is
	// cleared).
	if r := n.do("POST", "/v1/t", "basic:"+key, ev, map[string]string{"Origin": "https://evil.example"}); r.status != 200 {
		t.Fatalf("origin still refused after the list was emptied: %d %s", r.status, r.body)
	}
	if _, bad := n.createSourceRaw(map[string]any{"name": "bad origins", "kind": "web", "owner": "m", "purpose": "p", "dataCategories": []string{}, "allowedOrigins": []string{"shop.example.com"}}); bad.status != 400 {
		t.Errorf("create with a bad origin: %d %s", bad.status, bad.body)
	}
}

func (n *node) createSourceRaw(body map[string]any) (map[string]any, response) {
	r := n.admin("POST", "/api/v1/sources", body)
	if r.status != 201 {
		return nil, r
	}
	return r.json(n.t), r
}

func TestMobileSDKContextAndScreen(t *testing.T) {
	n := startNode(t, "", nil)
	mctx := `"context":{"device":{"id":"dev-1","manufacturer":"Apple","model":"iPhone15,2","type":"ios"},"app":{"name":"Shop","version":"3.1.0","build":"310"},` +
		`"os":{"name":"iOS","version":"17.4"},"screen":{"width":393,"height":852,"density":3},"library":{"name":"analytics-swift","version":"1.5.0"},"network":{"wifi":true}}`
	body := `{"batch":[` +
		`{"type":"screen","name":"Product","anonymousId":"m-anon","messageId":"mob-1","properties":{"sku":"x"},` + mctx + `},` +
		`{"type":"track","event":"Application Opened","anonymousId":"m-anon","messageId":"mob-2",` + mctx + `}],"sentAt":"` + time.Now().UTC().Format(time.RFC3339Nano) + `"}`
	r := n.do("POST", "/v1/batch", "basic:"+n.writeKey, []byte(body), map[string]string{"User-Agent": "Shop/310 CFNetwork/1490 Darwin/23.4.0"})
	if r.status != 200 || string(r.body) != `{"success":true}` {
		t.Fatalf("mobile batch: %d %s", r.status, r.body)
	}
	n.drain()
	for _, id := range []string{"mob-1", "mob-2"} {
		e := n.admin("GET", "/api/v1/events/"+id, nil).json(t)
		c, _ := e["context"].(map[string]any)
		dev, _ := c["device"].(map[string]any)
		app, _ := c["app"].(map[string]any)
		osm, _ := c["os"].(map[string]any)
		scr, _ := c["screen"].(map[string]any)
		if dev["model"] != "iPhone15,2" || app["version"] != "3.1.0" || osm["name"] != "iOS" || scr["width"] != float64(393) {
			t.Errorf("%s: mobile context not kept: %v", id, c)
		}
	}
	if e := n.admin("GET", "/api/v1/events/mob-1", nil).json(t); e["type"] != "screen" || e["name"] != "Product" {
		t.Errorf("screen call stored as %v", e)
	}
}
