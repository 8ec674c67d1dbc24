package collect

import (
	"net/http"
	"testing"
)

func TestClientIP(t *testing.T) {
	trusted, err := ParseTrustedProxies([]string{"10.0.0.0/8", "192.0.2.1", "fd00::/8"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseTrustedProxies([]string{"10.0.0.0/8", "not-a-cidr"}); err == nil {
		t.Error("a bad entry was accepted")
	}
	h := New(Options{TrustedProxies: trusted})
	for _, c := range []struct {
		peer string
		xff  []string
		want string
	}{
		{"203.0.113.5:1234", []string{"1.1.1.1"}, "203.0.113.5"},                         // untrusted peer: header ignored
		{"10.1.1.1:1234", nil, "10.1.1.1"},                                               // trusted, no header: the proxy itself
		{"10.1.1.1:1234", []string{"198.51.100.1"}, "198.51.100.1"},                      // one hop
		{"10.1.1.1:1234", []string{"6.6.6.6, 198.51.100.1, 10.2.2.2"}, "198.51.100.1"},   // skip trusted hops from the right
		{"10.1.1.1:1234", []string{"6.6.6.6", "198.51.100.1,192.0.2.1"}, "198.51.100.1"}, // several header lines
		{"[fd00::1]:1234", []string{"2001:db8::7"}, "2001:db8::7"},                       // IPv6
		{"[::ffff:10.1.1.1]:1234", []string{"198.51.100.2"}, "198.51.100.2"},             // IPv4-mapped peer
		{"10.1.1.1:1234", []string{"198.51.100.3, garbage"}, "10.1.1.1"},                 // a malformed hop stops the walk
		{"10.1.1.1:1234", []string{"10.3.3.3, 10.4.4.4"}, "10.3.3.3"},                    // all trusted: the leftmost
	} {
		r, _ := http.NewRequest("POST", "/v1/track", nil)
		r.RemoteAddr = c.peer
		for _, v := range c.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		if got := h.ClientIP(r); got != c.want {
			t.Errorf("peer %s, X-Forwarded-For %q: %q, want %q", c.peer, c.xff, got, c.want)
		}
	}
}

func TestOriginAllowed(t *testing.T) {
	list := []string{"https://shop.example.com", "https://*.example.org", "http://localhost:3000"}
	for origin, want := range map[string]bool{
		"https://shop.example.com":      true,
		"HTTPS://SHOP.EXAMPLE.COM":      true,
		"https://a.example.org":         true,
		"https://a.b.example.org":       true,
		"http://localhost:3000":         true,
		"https://example.org":           false,
		"https://evilexample.org":       false,
		"http://a.example.org":          false,
		"https://a.example.org:8443":    false,
		"http://localhost:3001":         false,
		"https://shop.example.com.evil": false,
		"null":                          false,
	} {
		if got := OriginAllowed(list, origin); got != want {
			t.Errorf("OriginAllowed(%q) = %v, want %v", origin, got, want)
		}
	}
	if !OriginAllowed([]string{"*"}, "https://any.example") {
		t.Error(`"*" does not allow all`)
	}
}
