package collect

import (
	"encoding/json"
	"net/http/httptest"
	"net/netip"
	"tandem/event"
	"testing"
)

// FuzzContextDefaults checks, for any X-Forwarded-For, User-Agent, peer
// and Origin a client can send, that the context the server adds to its
// events is a valid JSON object whose ip is an address (the peer itself
// when the peer is not a trusted proxy), and that the origin check never
// panics.
func FuzzContextDefaults(f *testing.F) {
	f.Add("203.0.113.7, 10.0.0.2", "Mozilla/5.0 (X11) \"quoted\" \\ \u00e9", "10.0.0.1:1234", "https://shop.example.com")
	f.Add("", "", "192.0.2.1:80", "")
	f.Add("::ffff:10.0.0.3,garbage,2001:db8::1", "\x00\xff\n", "[2001:db8::2]:443", "null")
	f.Add(",,,", "a\u2028b", "10.9.9.9:1", "https://*.example.org")
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	h := New(Options{TrustedProxies: trusted})
	f.Fuzz(func(t *testing.T, xff, ua, peer, origin string) {
		r := httptest.NewRequest("POST", "/v1/track", nil)
		r.RemoteAddr = peer
		r.Header.Set("X-Forwarded-For", xff)
		r.Header.Set("User-Agent", ua)
		r.Header.Set("Origin", origin)
		def := h.contextDefaults(r, event.IPKeep, true)
		if def != nil {
			var m map[string]any
			if err := json.Unmarshal(def, &m); err != nil {
				t.Fatalf("context defaults %q are not a JSON object: %v", def, err)
			}
			if ip, ok := m["ip"].(string); ok {
				if _, err := netip.ParseAddr(ip); err != nil {
					t.Fatalf("ip %q is not an address", ip)
				}
			}
		}
		if ap, err := netip.ParseAddrPort(peer); err == nil && !trusted[0].Contains(ap.Addr().Unmap()) {
			if got := h.ClientIP(r); got != ap.Addr().Unmap().String() && got != ap.Addr().String() {
				t.Fatalf("untrusted peer %s: client ip %q taken from X-Forwarded-For %q", peer, got, xff)
			}
		}
		_ = OriginAllowed([]string{"https://shop.example.com", "https://*.example.org"}, origin)
	})
}
