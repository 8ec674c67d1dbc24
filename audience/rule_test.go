package audience

import (
	"encoding/json"
	"errors"
	"testing"
)

func TestRule(t *testing.T) {
	env := Env{
		Traits:   plainRaw(map[string]json.RawMessage{"plan": json.RawMessage(`"pro"`)}),
		Computed: plain(map[string]any{"orders_30d": int64(2), "tickets_7d": int64(0), "fav": json.RawMessage(`"cake"`)}),
	}
	for _, c := range []struct {
		rule string
		want bool
	}{
		{`computed.orders_30d >= 2 and traits.plan == "pro" and computed.tickets_7d == 0`, true},
		{`computed.orders_30d >= 3`, false},
		{`computed.fav == "cake"`, true},
		{`computed.missing > 1`, false}, // nil compared with a number: no match
		{`(computed.missing ?? 0) == 0`, true},
		{`lower(traits.plan) in ["pro", "team"]`, true},
	} {
		r, err := ParseRule(c.rule)
		if err != nil {
			t.Errorf("%s: %v", c.rule, err)
			continue
		}
		if got := r.Match(env); got != c.want {
			t.Errorf("%s: %v, want %v", c.rule, got, c.want)
		}
	}
	for _, c := range []struct{ rule, msg string }{
		{`computed.orders >= `, "line 1, column 19: unexpected token EOF"},
		{`traits.plan == "pro" and`, "line 1, column"},
		{"computed.a > 1 and\n  nope.x", "line 2, column 3"},
		{`1 + 2`, "line 1, column 1: expected bool"}, // the whole rule is at fault
		{``, "must not be empty"},
	} {
		_, err := ParseRule(c.rule)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != "rule" || !contains(fe.Message, c.msg) {
			t.Errorf("%q: %v, want a rule error with %q", c.rule, err, c.msg)
		}
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

// FuzzRule: the rule parser never panics, and a rule it accepts evaluates
// (to a match or not) without panicking.
func FuzzRule(f *testing.F) {
	for _, s := range []string{`computed.orders_30d >= 2 and traits.plan == "pro"`, `computed.x ?? 0 > 1`, `len(traits) > 0`, "(", `"\u00e9"`, `traits["a b"] matches "x"`} {
		f.Add(s)
	}
	env := Env{Traits: map[string]any{"plan": "pro", "n": 1.5}, Computed: map[string]any{"orders_30d": 2.0}}
	f.Fuzz(func(t *testing.T, src string) {
		r, err := ParseRule(src)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != "rule" {
				t.Fatalf("%q: error %v is not a rule field error", src, err)
			}
			return
		}
		r.Match(env)
	})
}
