package collect

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"tandem/event"
)

// ParseTrustedProxies parses CIDRs (or single addresses) of proxies whose
// X-Forwarded-For and X-Forwarded-Proto headers are believed.
func ParseTrustedProxies(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%q is neither a CIDR nor an IP address", s)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

func (h *Handler) trusted(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range h.opts.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// peerAddr is the address of the connection's other end.
func peerAddr(r *http.Request) (netip.Addr, bool) {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err == nil {
		return ap.Addr().Unmap(), true
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	return a.Unmap(), err == nil
}

// ClientIP is the address of the client that sent r: the connection's
// peer, unless the peer is a trusted proxy, in which case X-Forwarded-For
// is walked from the right (the hop nearest to tandem) past every trusted
// proxy; the first untrusted hop is the client. A malformed hop ends the
// walk at the last good address: what a client writes on the left of the
// header cannot be believed.
func (h *Handler) ClientIP(r *http.Request) string {
	peer, ok := peerAddr(r)
	if !ok {
		return ""
	}
	if len(h.opts.TrustedProxies) == 0 || !h.trusted(peer) {
		return peer.String()
	}
	client := peer
	hops := r.Header.Values("X-Forwarded-For")
	for i := len(hops) - 1; i >= 0; i-- {
		parts := strings.Split(hops[i], ",")
		for j := len(parts) - 1; j >= 0; j-- {
			a, err := netip.ParseAddr(strings.TrimSpace(parts[j]))
			if err != nil {
				return client.String()
			}
			client = a.Unmap()
			if !h.trusted(client) {
				return client.String()
			}
		}
	}
	return client.String()
}

// scheme is the scheme the client used: https over TLS, else what a
// trusted proxy says in X-Forwarded-Proto, else http.
func (h *Handler) scheme(r *http.Request) string {
	if r.TLS != nil {
		return "https"
	}
	if peer, ok := peerAddr(r); ok && len(h.opts.TrustedProxies) > 0 && h.trusted(peer) {
		p := strings.ToLower(strings.TrimSpace(strings.Split(r.Header.Get("X-Forwarded-Proto"), ",")[0]))
		if p == "https" || p == "http" {
			return p
		}
	}
	return "http"
}

// publicBase is the address browsers reach tandem at, without a trailing
// slash: the configured public URL, else the scheme and Host of r.
func (h *Handler) publicBase(r *http.Request) string {
	if h.opts.PublicURL != "" {
		return strings.TrimRight(h.opts.PublicURL, "/")
	}
	return h.scheme(r) + "://" + r.Host
}

// contextDefaults is the JSON object of context members the server adds to
// each event of r that lacks them: the client's ip and, when r has one, its
// User-Agent as userAgent; and gpc: true when r carries Sec-GPC: 1 (Global
// Privacy Control: the pipeline's consent step refuses the sale and
// sharing purposes for the event's profile, see docs/privacy.md).
//
// With known true, policy (the source's IPPolicy) is applied to the
// address here already; otherwise the address is added as found and the
// caller minimises each event once the source is known.
func (h *Handler) contextDefaults(r *http.Request, policy string, known bool) []byte {
	ip := h.ClientIP(r)
	if known && ip != "" {
		ip = event.MinimiseIP(ip, policy)
	}
	ua := r.Header.Get("User-Agent")
	gpc := strings.TrimSpace(r.Header.Get("Sec-GPC")) == "1"
	if ip == "" && ua == "" && !gpc {
		return nil
	}
	out := make([]byte, 0, 48+len(ua))
	out = append(out, '{')
	if ip != "" {
		out = append(out, `"ip":"`...)
		out = append(out, ip...) // an address needs no escaping
		out = append(out, '"')
	}
	if ua != "" {
		if len(out) > 1 {
			out = append(out, ',')
		}
		out = append(out, `"userAgent":`...)
		b, _ := json.Marshal(ua)
		out = append(out, b...)
	}
	if gpc {
		if len(out) > 1 {
			out = append(out, ',')
		}
		out = append(out, `"gpc":true`...)
	}
	return append(out, '}')
}
