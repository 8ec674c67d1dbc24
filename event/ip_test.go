package event

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

func TestTruncateIP(t *testing.T) {
	for in, want := range map[string]string{
		"198.51.100.77":           "198.51.100.0",
		"10.1.2.3":                "10.1.2.0",
		"::ffff:192.0.2.9":        "192.0.2.0",
		"2001:db8:abcd:12:1::5":   "2001:db8:abcd::",
		"2001:db8:1:ffff::1%eth0": "2001:db8:1::",
		"fe80::1":                 "fe80::",
		" 203.0.113.200 ":         "203.0.113.0",
	} {
		if got, ok := TruncateIP(in); !ok || got != want {
			t.Errorf("TruncateIP(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	for _, bad := range []string{"", "example.com", "1.2.3", "999.1.1.1"} {
		if got, ok := TruncateIP(bad); ok {
			t.Errorf("TruncateIP(%q) = %q, want not ok", bad, got)
		}
	}
}

func TestMinimiseEvent(t *testing.T) {
	raw := `{"type":"track","context":{"ip":"198.51.100.77","userAgent":"x"}}`
	for _, c := range []struct{ policy, in, want string }{
		{IPTruncate, raw, `{"type":"track","context":{"ip":"198.51.100.0","userAgent":"x"}}`},
		{"", raw, `{"type":"track","context":{"ip":"198.51.100.0","userAgent":"x"}}`},
		{IPDrop, raw, `{"type":"track","context":{"userAgent":"x"}}`},
		{IPKeep, raw, raw},
		{IPTruncate, `{"context":{"ip":"somewhere"}}`, `{"context":{}}`},
		{IPTruncate, `{"context":{"ip":12345}}`, `{"context":{}}`},
		{IPTruncate, `{"context":{"ip":"2001:db8:abcd:12::1"}}`, `{"context":{"ip":"2001:db8:abcd::"}}`},
	} {
		if got := string(MinimiseEvent([]byte(c.in), c.policy)); got != c.want {
			t.Errorf("%s %s: got %s, want %s", c.policy, c.in, got, c.want)
		}
	}
	if MinimiseIP("198.51.100.77", IPDrop) != "" || MinimiseIP("198.51.100.77", IPKeep) != "198.51.100.77" || MinimiseIP("198.51.100.77", "") != "198.51.100.0" {
		t.Error("MinimiseIP does not follow the policy")
	}
}

// BenchmarkMinimise measures what minimisation adds to parsing a batch
// of 100 events with server defaults (the collection path): "parse" is
// ParseBatchContext alone, "parse+truncate" adds MinimiseEvent on every
// event, as collection does; events whose own context has an ip are a
// tenth of them.
func BenchmarkMinimise(b *testing.B) {
	body := []byte(`{"batch":[`)
	for i := 0; i < 100; i++ {
		if i > 0 {
			body = append(body, ',')
		}
		ctx := `"context":{"library":{"name":"bench"}}`
		if i%10 == 0 {
			ctx = `"context":{"library":{"name":"bench"},"ip":"198.51.100.77"}`
		}
		body = append(body, `{"type":"track","event":"Product Viewed","userId":"user-12345","messageId":"msg-000000000001","timestamp":"2026-01-01T00:00:00.000Z","properties":{"sku":"A-1","price":12.5},`+ctx+`}`...)
	}
	body = append(body, `],"sentAt":"2026-01-01T00:00:01.000Z"}`...)
	defaults := []byte(`{"ip":"192.0.2.0","userAgent":"bench/1.0"}`)
	for _, minimise := range []bool{false, true} {
		name := "parse"
		if minimise {
			name = "parse+truncate"
		}
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				req, err := ParseBatchContext(body, time.Now(), defaults, "")
				if err != nil {
					b.Fatal(err)
				}
				if minimise {
					for i := range req.Events {
						req.Events[i].Raw = MinimiseEvent(req.Events[i].Raw, IPTruncate)
					}
				}
			}
			b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// FuzzMinimiseEvent: for any event object, minimisation keeps valid JSON
// valid, and what a decoder reads as context.ip afterwards is absent or a
// truncated address.
func FuzzMinimiseEvent(f *testing.F) {
	f.Add([]byte(`{"context":{"ip":"198.51.100.77","a":1}}`))
	f.Add([]byte(`{"context":{"\u0069p":"2001:db8::1","ip":"x"},"context":{"ip":"10.0.0.1"}}`))
	f.Add([]byte(`{"context":{"ip":["1.2.3.4"]}}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		out := MinimiseEvent(raw, IPTruncate)
		if !json.Valid(raw) {
			return
		}
		if !json.Valid(out) {
			t.Fatalf("%s became invalid JSON: %s", raw, out)
		}
		// As a decoder into a struct reads it: keys ignore case.
		var e struct {
			Context struct {
				IP any `json:"ip"`
			} `json:"context"`
		}
		if json.Unmarshal(out, &e) != nil {
			return
		}
		if ip := e.Context.IP; ip != nil {
			s, isStr := ip.(string)
			if t2, ok := TruncateIP(s); !isStr || !ok || t2 != s {
				t.Fatalf("%s: context.ip %v left after truncation (%s)", raw, ip, out)
			}
		}
	})
}

// minimalBySpellings is minimal as it was written first: a search for
// each spelling of "ip", the reference for minimalClean.
func minimalBySpellings(raw []byte, policy string) bool {
	for _, spelling := range []string{`"ip"`, `"IP"`, `"Ip"`, `"iP"`} {
		for i := 0; ; {
			j := bytes.Index(raw[i:], []byte(spelling))
			if j < 0 {
				break
			}
			j += i
			i = j + len(spelling)
			k := skipSpace(raw, i)
			if k >= len(raw) || raw[k] != ':' {
				continue
			}
			if policy == IPDrop {
				return false
			}
			v := skipSpace(raw, k+1)
			if v >= len(raw) || raw[v] != '"' {
				return false
			}
			end := bytes.IndexByte(raw[v+1:], '"')
			if end < 0 || !isTruncated(raw[v+1:v+1+end]) {
				return false
			}
		}
	}
	return true
}

// TestMinimalClean checks the one-search IP check against a search for
// each spelling, on contexts built from pieces that put a p or P at every
// position of the words the search reads.
func TestMinimalClean(t *testing.T) {
	pieces := []string{`"ip":"198.51.100.0"`, `"IP":"198.51.100.77"`, `"iP":"2001:db8::"`, `"Ip" : 5`,
		`"ip":null`, `"page":{"path":"/p"}`, `"app":"P"`, `"x":"ip"`, `"tip":"1.2.3.4"`, `"ipx":"1.2.3.4"`,
		`"P":"p"`, `"a":["ip","p"]`, `"ip":"1.2.3.4"`, `"xx":"pP"`}
	rng := rand.New(rand.NewPCG(1, 2))
	for n := 0; n < 20000; n++ {
		var b strings.Builder
		b.WriteString(strings.Repeat(" ", rng.IntN(9)) + "{")
		for k := rng.IntN(4); k >= 0; k-- {
			if b.Len() > 0 && !strings.HasSuffix(b.String(), "{") {
				b.WriteByte(',')
			}
			b.WriteString(pieces[rng.IntN(len(pieces))])
		}
		b.WriteString("}")
		raw := []byte(b.String())
		for _, policy := range []string{IPTruncate, IPDrop} {
			if got, want := minimalClean(raw, policy), minimalBySpellings(raw, policy); got != want {
				t.Fatalf("%s %s: minimalClean %v, by spellings %v", policy, raw, got, want)
			}
		}
	}
	for n := 0; n <= 24; n++ {
		for at := 0; at < n; at++ {
			b := bytes.Repeat([]byte("a"), n)
			for _, c := range []byte("pP") {
				b[at] = c
				for from := 0; from <= n; from++ {
					want := -1
					if from <= at {
						want = at
					}
					if got := indexP(b, from); got != want {
						t.Fatalf("indexP(%q, %d) = %d, want %d", b, from, got, want)
					}
				}
			}
		}
	}
}
