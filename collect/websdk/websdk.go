// Package websdk holds what browser SDKs fetch from tandem besides the
// collection endpoints: the analytics-next standalone bundle tandem serves
// to Segment's snippet (vendored from npm by scripts/update-websdk, with
// its licence, see assets/LICENSE), and the settings documents of
// analytics-next and of RudderStack's JavaScript SDK, which point the SDKs
// back at tandem and turn off everything that would reach a vendor's host.
package websdk

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"net/url"
	"path"
	"strings"
)

//go:embed assets/standalone.js assets/LICENSE assets/VERSION assets/bundles/*.js
var assets embed.FS

// Version is the analytics-next version of the bundle served.
var Version = strings.TrimSpace(mustRead("assets/VERSION"))

// License is the bundle's licence text.
var License = mustRead("assets/LICENSE")

// bundle is standalone.js without its trailing source-map comment (the map
// is not shipped; a browser with its developer tools open would ask for it).
var bundle = func() []byte {
	b := []byte(mustRead("assets/standalone.js"))
	if i := bytes.LastIndex(b, []byte("\n//# sourceMappingURL=")); i >= 0 {
		b = b[:i+1]
	}
	return b
}()

func mustRead(name string) string {
	b, err := assets.ReadFile(name)
	if err != nil {
		panic("websdk: " + err.Error())
	}
	return string(b)
}

// Bundle returns the script served at
// /analytics.js/v1/{writeKey}/analytics.min.js for a tandem reachable at
// base (scheme://host[/prefix], no trailing slash): a one-line prelude
// telling the bundle where tandem is, then the unmodified bundle.
//
// analytics-next finds its "CDN" (where it fetches its settings and its
// lazily loaded chunks) in window.analytics._cdn (what the snippet's
// useHostForBundles option sets), else from the src of the
// snippet's script tag, but only for https:// addresses, else falls back to
// the vendor's CDN. The prelude sets _cdn (unless the page did), so a page
// served over http, or one loading the script through a proxy, still talks
// only to tandem.
func Bundle(base string) []byte {
	// The snippet names its global in the script tag's
	// data-global-segment-analytics-key (default "analytics").
	prelude := `!function(){var s=document.currentScript,k=s&&s.getAttribute("data-global-segment-analytics-key")||"analytics",a=window[k];if(a&&!a._cdn)a._cdn=` +
		jsString(base) + "}();\n"
	out := make([]byte, 0, len(prelude)+len(bundle))
	out = append(out, prelude...)
	return append(out, bundle...)
}

// BundleETag is an entity tag for [Bundle](base).
func BundleETag(base string) string {
	h := sha256.New()
	h.Write([]byte(Version))
	h.Write([]byte{0})
	h.Write([]byte(base))
	return `"` + hex.EncodeToString(h.Sum(nil)[:12]) + `"`
}

// Chunk returns the lazily loaded chunk name (as requested under
// /analytics-next/bundles/), or false if there is none of that name.
func Chunk(name string) ([]byte, bool) {
	if name == "" || strings.Contains(name, "/") || !strings.HasSuffix(name, ".js") {
		return nil, false
	}
	b, err := fs.ReadFile(assets, path.Join("assets/bundles", name))
	if err != nil {
		return nil, false
	}
	return b, true
}

func jsString(s string) string {
	b, _ := json.Marshal(s) // escapes <, > and & too
	return string(b)
}

// SegmentSettings is the analytics-next settings document (what Segment's
// CDN serves at /v1/projects/{writeKey}/settings) for a tandem reachable at
// base: the Segment.io destination sends to base + "/v1", the SDK's own
// metrics are off (sampleRate 0) and, should they be turned on, go to
// tandem too; there are no device-mode destinations, middleware or remote
// plugins, so the SDK loads nothing more.
func SegmentSettings(writeKey, base string) ([]byte, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, err
	}
	// apiHost is host[/prefix]/v1, without a scheme: analytics-next builds
	// its URLs as protocol + "://" + apiHost + "/" + letter.
	apiHost := u.Host + strings.TrimSuffix(u.EscapedPath(), "/") + "/v1"
	protocol := "https"
	if u.Scheme == "http" {
		protocol = "http"
	}
	doc := map[string]any{
		"integrations": map[string]any{
			"Segment.io": map[string]any{
				"apiKey":                writeKey,
				"apiHost":               apiHost,
				"protocol":              protocol,
				"unbundledIntegrations": []string{},
				"addBundledMetadata":    false,
				"maybeBundledConfigIds": map[string]any{},
			},
		},
		"metrics":                   map[string]any{"sampleRate": 0, "host": apiHost, "protocol": protocol},
		"plan":                      map[string]any{},
		"edgeFunction":              map[string]any{},
		"analyticsNextEnabled":      true,
		"middlewareSettings":        map[string]any{},
		"enabledMiddleware":         map[string]any{},
		"legacyVideoPluginsEnabled": false,
		"remotePlugins":             []any{},
	}
	return json.Marshal(doc)
}

// RudderSource is what [RudderSourceConfig] says about a source.
type RudderSource struct {
	ID       string
	Name     string
	WriteKey string
}

// RudderSourceConfig is the document RudderStack's JavaScript SDK (v3)
// fetches from its configuration URL (/sourceConfig/): the source,
// enabled, with no device-mode destinations and the SDK's error and
// metrics reporting to RudderStack off.
func RudderSourceConfig(src RudderSource) ([]byte, error) {
	off := map[string]any{"enabled": false}
	doc := map[string]any{
		"isHosted": false,
		"source": map[string]any{
			"id":          src.ID,
			"name":        src.Name,
			"writeKey":    src.WriteKey,
			"enabled":     true,
			"workspaceId": "tandem",
			"deleted":     false,
			"config": map[string]any{
				"statsCollection": map[string]any{"errors": off, "metrics": off},
			},
			"destinations": []any{},
		},
	}
	return json.Marshal(doc)
}
