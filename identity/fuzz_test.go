package identity

import (
	"strings"
	"testing"
	"time"

	"tandem/event"
)

// FuzzObserve feeds events from outside (any JSON a source may send) to
// identifier extraction: it must not panic, and what it extracts must be
// matchable: of a configured type, normalised (normalising again changes
// nothing), never blocked, never empty, never repeated.
func FuzzObserve(f *testing.F) {
	for _, seed := range []string{
		`{"type":"identify","userId":"u1","anonymousId":"a1","traits":{"email":" Ana@Example.com ","phone":"+49 (30) 123-4567"}}`,
		`{"type":"track","event":"x","anonymousId":"a1","context":{"traits":{"phone":"0171 555","crm_id":"C-1"},"externalIds":[{"id":"x@y.z","type":"email"},{"id":42,"type":"crm_id"}]}}`,
		`{"type":"alias","userId":"u2","previousId":"a9"}`,
		`{"type":"identify","userId":"null","traits":{"email":"test@example.com","phone":"00000"}}`,
		`{"type":"identify","anonymousId":"a","traits":{"email":["x"],"phone":{"n":1}}}`,
	} {
		f.Add([]byte(seed), "49")
	}
	f.Add([]byte(`{"type":"identify","userId":"u3","traits":{"phone":"0171 5550199","crm_id":"C-2"}}`), "")
	f.Add([]byte(`{"type":"identify","userId":"u4","traits":{"phone":"0044 20 7946 0000"}}`), "1")
	f.Fuzz(func(t *testing.T, raw []byte, cc string) {
		rules := DefaultRules() // crm_id among them
		rules.PhoneCountryCode = cc
		c, err := compile(rules)
		if err != nil {
			return // a country code the configuration refuses
		}
		e, prob := event.ParseEvent("", raw, time.Unix(1700000000, 0), "msg-1")
		if prob != nil {
			return // quarantined, never resolved
		}
		o := c.observe(&e)
		seen := map[string]bool{}
		for _, id := range o.ids {
			typ, v := splitIdent(id)
			if _, ok := c.rank[typ]; !ok {
				t.Fatalf("identifier %q of an unconfigured type", id)
			}
			if v == "" || seen[id] {
				t.Fatalf("empty or repeated identifier %q in %q", id, o.ids)
			}
			seen[id] = true
			if again, ok := c.normalize(typ, v); !ok || again != v {
				t.Fatalf("identifier %q normalises again to %q (%v)", id, again, ok)
			}
			if c.isBlocked(v, v) {
				t.Fatalf("blocked identifier %q extracted", id)
			}
			if typ == Email && strings.ToLower(v) != v {
				t.Fatalf("e-mail %q not lower-cased", v)
			}
		}
	})
}

// FuzzDecodeGraph feeds arbitrary bytes to the decoder of stored
// components (a damaged database file must give an error, not a panic or
// a huge allocation), and checks that whatever it accepts encodes back to
// the same bytes.
func FuzzDecodeGraph(f *testing.F) {
	c, err := compile(DefaultRules())
	if err != nil {
		f.Fatal(err)
	}
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	links := []link{
		{ids: []string{"user_id:u1", "anonymous_id:a1"}, at: t0, source: "s", msg: "m1", typ: "identify"},
		{ids: []string{"anonymous_id:a2"}, at: t0.Add(-time.Hour), source: "s", msg: "m0", typ: "page"},
		{ids: []string{"user_id:u1", "anonymous_id:a2"}, at: t0.Add(time.Minute), source: "s", msg: "m2", typ: "identify"},
	}
	idents := []string{"user_id:u1", "anonymous_id:a1", "anonymous_id:a2", "email:lost@example.com"}
	g := newGraph(idents, links, c.partition(links, nil, func(a string) string { return "prf_" + a }))
	f.Add(g.encode())
	f.Add(newGraph(nil, nil, resolution{}).encode())
	f.Add([]byte{graphFormat, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		g, err := decodeGraph(b)
		if err != nil {
			return
		}
		if again := g.encode(); string(again) != string(b) {
			// Varints have one shortest form; accept only inputs
			// that encode back identically or decode to the same.
			h, err := decodeGraph(again)
			if err != nil || string(h.encode()) != string(again) {
				t.Fatalf("decode(encode(g)) differs: %x -> %x", b, again)
			}
		}
		for _, l := range g.links {
			for _, id := range l.ids {
				if g.find(id) < 0 {
					t.Fatalf("link names %q, not an identifier of the component", id)
				}
			}
		}
	})
}

func TestGraphRoundTrip(t *testing.T) {
	c, err := compile(DefaultRules())
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	links := []link{
		{ids: []string{"user_id:u1", "anonymous_id:a1"}, at: t0, source: "s", msg: "m1", typ: "identify"},
		{ids: []string{"user_id:u2", "anonymous_id:a1"}, at: t0.Add(time.Second), source: "s", msg: "m2", typ: "identify"},
		{ids: []string{"email:e@x.org"}, at: t0.Add(-time.Hour), source: "s", msg: "m0", typ: "identify"},
	}
	res := c.partition(links, nil, func(a string) string { return "prf_" + a })
	g := newGraph([]string{"user_id:u1", "anonymous_id:a1", "user_id:u2", "email:e@x.org"}, links, res)
	h, err := decodeGraph(g.encode())
	if err != nil {
		t.Fatal(err)
	}
	// The limit of one user_id keeps u2 out of u1's profile.
	for id, want := range map[string]string{"user_id:u1": "prf_user_id:u1", "anonymous_id:a1": "prf_user_id:u1", "user_id:u2": "prf_user_id:u2", "email:e@x.org": "prf_email:e@x.org"} {
		if got := h.profileOf(id); got != want {
			t.Errorf("%s: profile %q, want %q", id, got, want)
		}
	}
	if len(h.links) != 3 || h.links[0].msg != "m0" || !h.links[1].at.Equal(t0) || h.links[2].ids[0] != "user_id:u2" {
		t.Errorf("links %+v", h.links)
	}
	if got := h.members("prf_user_id:u1"); len(got) != 2 {
		t.Errorf("members %v", got)
	}
}
