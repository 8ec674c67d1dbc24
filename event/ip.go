package event

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math/bits"
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
	if policy == IPKeep || minimal(raw, policy) {
		return raw
	}
	return EditContext(raw, "ip", func(val []byte) ([]byte, bool) {
		if policy == IPDrop {
			return nil, false
		}
		var s string
		if len(val) >= 2 && val[0] == '"' && val[len(val)-1] == '"' && bytes.IndexByte(val, '\\') < 0 {
			s = string(val[1 : len(val)-1]) // the common case, without a decoder
		} else if json.Unmarshal(val, &s) != nil {
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

// minimal reports, without parsing, that raw needs no edit: it has no
// escape, and every key spelt ip (in any case, anywhere) holds a string
// that is its own truncation (under IPTruncate; under IPDrop, there is
// none). Most events qualify: the address tandem adds is minimised
// already, so only an address the sender wrote costs a parse. Without
// escapes a string cannot hold a quote, so the bytes "ip" are always a
// whole string: a key when a colon follows.
func minimal(raw []byte, policy string) bool {
	if bytes.IndexByte(raw, '\\') >= 0 {
		return false
	}
	return minimalClean(raw, policy)
}

// minimalClean is [minimal] for raw known to hold no backslash (a part of
// a body that has none). Every spelling of "ip" has a p or P at its
// third byte: one word-wide search finds them all (in most contexts
// there is none), each checked for the "i or "I before it and the quote
// after.
func minimalClean(raw []byte, policy string) bool {
	for i := 0; ; {
		j := indexP(raw, i)
		if j < 0 {
			return true
		}
		i = j + 1
		if j < 2 || j+1 >= len(raw) || raw[j+1] != '"' || raw[j-2] != '"' || raw[j-1]|0x20 != 'i' {
			continue // not the string "ip" in any case
		}
		k := skipSpace(raw, j+2)
		if k >= len(raw) || raw[k] != ':' {
			continue // a value "ip"
		}
		if policy == IPDrop {
			return false
		}
		v := skipSpace(raw, k+1)
		if v >= len(raw) || raw[v] != '"' {
			return false
		}
		end := bytes.IndexByte(raw[v+1:], '"')
		if end < 0 {
			return false
		}
		if !isTruncated(raw[v+1 : v+1+end]) {
			return false
		}
	}
}

// indexP is the index of the first p or P in b at or after from, -1 if
// none. Setting bit 0x20 of every byte turns P into p and no other byte
// into p, so one zero-byte test per word finds both.
func indexP(b []byte, from int) int {
	i := from
	for ; i+8 <= len(b); i += 8 {
		v := (binary.LittleEndian.Uint64(b[i:]) | 0x20*ones) ^ 'p'*ones
		if m := (v - ones) &^ v & highs; m != 0 {
			return i + bits.TrailingZeros64(m)>>3
		}
	}
	for ; i < len(b); i++ {
		if b[i]|0x20 == 'p' {
			return i
		}
	}
	return -1
}

// isTruncated reports whether s is an address written as [TruncateIP]
// writes its own truncation, without allocating.
func isTruncated(s []byte) bool {
	a, err := netip.ParseAddr(string(s))
	if err != nil || a.Zone() != "" || a.Is4In6() {
		return false
	}
	bits := 48
	if a.Is4() {
		bits = 24
	}
	p, err := a.Prefix(bits)
	if err != nil || p.Addr() != a {
		return false
	}
	var buf [64]byte
	return bytes.Equal(a.AppendTo(buf[:0]), s)
}
