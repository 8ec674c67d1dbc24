// Package guard keeps tandem's outbound calls to destinations from reaching
// addresses inside the network tandem runs in (server-side request
// forgery): loopback, private, link-local, cloud metadata, CGNAT,
// multicast, unspecified and reserved addresses, in every IPv6 spelling of
// them (IPv4-mapped, NAT64, 6to4), unless an operator allows a range with
// --destination-allow.
//
// The check happens where it cannot be talked around: in the
// [net.Dialer]'s Control hook, which sees the address the socket is about
// to connect to, after DNS resolution. Every connection of a [Guard.Client]
// goes through it, so each redirect hop is checked too, as is a name that
// resolves to a different address later (DNS rebinding). [CheckURL] also
// refuses, before any lookup, URLs whose host a resolver might read as a
// numeric IPv4 address (2130706433, 0x7f.1, 017700000001).
package guard

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// ErrRefused is matched by errors for an address or URL the guard refuses.
var ErrRefused = errors.New("guard: destination address refused")

// refused lists the ranges no destination may reach unless allowed.
var refused = []struct {
	prefix netip.Prefix
	why    string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "this-network"},
	{netip.MustParsePrefix("10.0.0.0/8"), "private"},
	{netip.MustParsePrefix("100.64.0.0/10"), "carrier-grade NAT"},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local (cloud metadata)"},
	{netip.MustParsePrefix("172.16.0.0/12"), "private"},
	{netip.MustParsePrefix("192.0.0.0/24"), "IETF protocol assignments"},
	{netip.MustParsePrefix("192.168.0.0/16"), "private"},
	{netip.MustParsePrefix("198.18.0.0/15"), "benchmarking"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved"}, // and 255.255.255.255
	{netip.MustParsePrefix("::/128"), "unspecified"},
	{netip.MustParsePrefix("::1/128"), "loopback"},
	{netip.MustParsePrefix("fc00::/7"), "unique local (private; fd00:ec2::254 is cloud metadata)"},
	{netip.MustParsePrefix("fe80::/10"), "link-local"},
	{netip.MustParsePrefix("fec0::/10"), "site-local"},
	{netip.MustParsePrefix("ff00::/8"), "multicast"},
	{netip.MustParsePrefix("100::/64"), "discard-only"},
}

// Embedded IPv4 in IPv6: checked as the IPv4 address they carry.
var (
	nat64   = netip.MustParsePrefix("64:ff9b::/96")
	nat64L  = netip.MustParsePrefix("64:ff9b:1::/48")
	sixTo4  = netip.MustParsePrefix("2002::/16")
	compat4 = netip.MustParsePrefix("::/96") // deprecated IPv4-compatible ::a.b.c.d
)

// Guard decides which addresses destinations may reach.
type Guard struct {
	allow []netip.Prefix
}

// New returns a guard that also lets through the given CIDRs (as
// --destination-allow gives them, e.g. "127.0.0.0/8").
func New(allow []string) (*Guard, error) {
	g := &Guard{}
	for _, s := range allow {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("guard: allow %q: not a CIDR", s)
		}
		g.allow = append(g.allow, p.Masked())
	}
	return g, nil
}

// Check returns nil when ip may be reached, or an error matching
// [ErrRefused] that says why not.
func (g *Guard) Check(ip netip.Addr) error {
	if !ip.IsValid() {
		return fmt.Errorf("%w: invalid address", ErrRefused)
	}
	ip = ip.WithZone("")
	// An allowed range is allowed in any spelling: ::ffff:127.0.0.1 is
	// 127.0.0.1.
	for _, a := range forms(ip) {
		for _, p := range g.allow {
			if p.Contains(a) {
				return nil
			}
		}
	}
	for _, a := range forms(ip) {
		for _, r := range refused {
			if r.prefix.Contains(a) {
				return fmt.Errorf("%w: %s is %s (allow it with --destination-allow)", ErrRefused, ip, r.why)
			}
		}
	}
	return nil
}

// forms returns ip and the IPv4 address it embeds, if any.
func forms(ip netip.Addr) []netip.Addr {
	out := []netip.Addr{ip}
	if ip.Is4In6() {
		return append(out, ip.Unmap())
	}
	if !ip.Is6() {
		return out
	}
	b := ip.As16()
	switch {
	case nat64.Contains(ip), compat4.Contains(ip) && ip != netip.IPv6Unspecified() && ip != netip.IPv6Loopback():
		out = append(out, netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}))
	case sixTo4.Contains(ip):
		out = append(out, netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]}))
	case nat64L.Contains(ip):
		// RFC 6052 /48: the IPv4 address sits in bytes 6..7 and 9..10.
		out = append(out, netip.AddrFrom4([4]byte{b[6], b[7], b[9], b[10]}))
	}
	return out
}

// Control is a [net.Dialer] Control hook: it refuses to connect to an
// address [Guard.Check] refuses. address is the resolved "ip:port".
func (g *Guard) Control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: cannot read dialed address %q", ErrRefused, address)
	}
	return g.Check(ap.Addr())
}

// Dialer returns a dialer whose every connection passes [Guard.Control].
func (g *Guard) Dialer(timeout time.Duration) *net.Dialer {
	return &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second, Control: g.Control}
}

// MaxRedirects is how many redirects a [Guard.Client] follows.
const MaxRedirects = 5

// Client returns an HTTP client for destination calls: every connection,
// redirects included, is dialed through the guard; no proxy from the
// environment is used (it would connect to the proxy instead of the
// destination); each request is bounded by timeout (0: none, the caller's
// context bounds it).
func (g *Guard) Client(timeout time.Duration) *http.Client {
	dialer := g.Dialer(10 * time.Second)
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   32,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: timeout,
	}
	return &http.Client{
		Transport: checked{tr},
		Timeout:   timeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= MaxRedirects {
				return fmt.Errorf("guard: stopped after %d redirects", MaxRedirects)
			}
			// The URL's form is checked by the transport, the address
			// when the connection is dialed.
			return nil
		},
	}
}

// checked checks each request's URL (the first and every redirect) before
// its transport dials.
type checked struct{ rt http.RoundTripper }

func (c checked) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := CheckURL(req.URL); err != nil {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, err
	}
	return c.rt.RoundTrip(req)
}

// CheckURL checks a destination URL's form, before any lookup: http or
// https, a host, no user information, and no host a resolver could read as
// a numeric IPv4 address other than the dotted-quad form (decimal
// 2130706433, hex 0x7f000001, octal 0177.0.0.1, short 127.1). A literal IP
// is not checked against the ranges here: the dialer does that, against
// the allow list, for every connection.
func CheckURL(u *url.URL) error {
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%w: scheme %q: only http and https", ErrRefused, u.Scheme)
	}
	return CheckHost(u)
}

// CheckHost is [CheckURL] without the scheme check, for destination types
// that speak other protocols (nats://).
func CheckHost(u *url.URL) error {
	if u.User != nil {
		return fmt.Errorf("%w: URLs with user information are not allowed", ErrRefused)
	}
	host := u.Hostname()
	if host == "" {
		return fmt.Errorf("%w: no host", ErrRefused)
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return nil
	}
	if numericHost(host) {
		return fmt.Errorf("%w: host %q would be read as a numeric IPv4 address; write it as a dotted quad", ErrRefused, host)
	}
	return nil
}

// numericHost reports whether every dot-separated label of host is a
// number in decimal, octal or hex, as inet_aton reads them.
func numericHost(host string) bool {
	host = strings.TrimSuffix(host, ".")
	if host == "" {
		return false
	}
	for _, label := range strings.Split(host, ".") {
		l := strings.ToLower(label)
		if strings.HasPrefix(l, "0x") {
			l = l[2:]
			if l == "" {
				return true // "0x" alone is 0 to inet_aton
			}
			if strings.Trim(l, "0123456789abcdef") != "" {
				return false
			}
			continue
		}
		if l == "" || strings.Trim(l, "0123456789") != "" {
			return false
		}
	}
	return true
}

// ReadLimited reads at most limit bytes of r and discards the rest (up to
// 4×limit, so that the connection can be reused; beyond that it is left).
func ReadLimited(r io.Reader, limit int64) []byte {
	b, _ := io.ReadAll(io.LimitReader(r, limit))
	_, _ = io.CopyN(io.Discard, r, 4*limit)
	return b
}

// DialContext dials through the guard (for non-HTTP destination types).
func (g *Guard) DialContext(ctx context.Context, network, address string, timeout time.Duration) (net.Conn, error) {
	return g.Dialer(timeout).DialContext(ctx, network, address)
}
