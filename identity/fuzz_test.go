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
	f.Fuzz(func(t *testing.T, raw []byte, cc string) {
		rules := DefaultRules()
		rules.Types = append(rules.Types, Type{Name: "crm_id", Priority: 5, Limit: 2})
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
