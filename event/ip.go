package event

import (
	"encoding/json"
	"net/netip"
	"strings"
)

// The IP policies of a source (its ipPolicy): what becomes of
// context.ip before an event is written to the log. See docs/privacy.md
// (minimisation).
const (
	IPTruncate = "truncate" // the default: IPv4 to its /24, IPv6 to its /48
	IPDrop     = "drop"     // no context.ip is kept
	IPKeep     = "keep"     // kept as sent (a source that needs the address)
)

// IPPolicies lists the valid policies.
var IPPolicies = []string{IPTruncate, IPDrop, IPKeep}

// ValidIPPolicy reports whether p is one of [IPPolicies].
func ValidIPPolicy(p string) bool {
	for _, q := range IPPolicies {
		if p == q {
			return true
		}
	}
	return false
}

// TruncateIP is the network of address s: an IPv4 address's /24 (the
// last byte zero), an IPv6 address's /48; ok is false when s is not an
// address. An IPv4-mapped IPv6 address is truncated as IPv4.
func TruncateIP(s string) (string, bool) {
	a, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil {
		return "", false
	}
	a = a.Unmap().WithZone("")
	bits := 48
	if a.Is4() {
		bits = 24
	}
	p, err := a.Prefix(bits)
	if err != nil {
		return "", false
	}
	return p.Addr().String(), true
}

// MinimiseIP applies policy to the address the server found for a
// request: the address to add as context.ip, "" for none.
func MinimiseIP(ip, policy string) string {
	switch policy {
	case IPKeep:
		return ip
	case IPDrop:
		return ""
	}
	t, _ := TruncateIP(ip)
	return t
}

// MinimiseEvent applies policy to the context.ip an event carries itself
// (every occurrence, see [EditContext]): truncated, or dropped when it
// is not a string holding an address (it cannot be truncated), or dropped
// under IPDrop. IPKeep leaves raw as it is. raw is returned itself when
// nothing changes.
func MinimiseEvent(raw []byte, policy string) []byte {
	if policy == IPKeep {
		return raw
	}
	return EditContext(raw, "ip", func(val []byte) ([]byte, bool) {
		if policy == IPDrop {
			return nil, false
		}
		var s string
		if json.Unmarshal(val, &s) != nil {
			return nil, false
		}
		t, ok := TruncateIP(s)
		if !ok {
			return nil, false
		}
		if t == s {
			return val, true
		}
		b, _ := json.Marshal(t)
		return b, true
	})
}
