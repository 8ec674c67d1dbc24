package analytics_test

import (
	"strings"
	"testing"

	"tandem/analytics"
)

// TestFilterMeaning pins each operator's meaning as documented in
// docs/analytics.md, through the one definition every backend derives
// from (Filter.Test, evaluated in Go).
func TestFilterMeaning(t *testing.T) {
	s := func(v string) *string { return &v }
	f := func(op string, v any) analytics.Filter { return analytics.Filter{Property: "p", Op: op, Value: v} }
	for _, c := range []struct {
		f    analytics.Filter
		x    *string // nil: missing
		want bool
	}{
		{f("eq", "pro"), s("pro"), true},
		{f("eq", "pro"), s("Pro"), false},
		{f("eq", "pro"), nil, false},
		{f("eq", 2.0), s("2"), true},
		{f("eq", 2.0), s("2.0"), true}, // as numbers
		{f("eq", 2.0), s("two"), false},
		{f("eq", "2"), s("2.0"), false}, // as text
		{f("eq", true), s("true"), true},
		{f("neq", "pro"), nil, true}, // missing passes neq
		{f("neq", "pro"), s("pro"), false},
		{f("neq", 2.0), s("x"), true},
		{f("in", []any{"a", 3.0}), s("3"), true},
		{f("in", []any{"a", 3.0}), s("a"), true},
		{f("in", []any{"a", 3.0}), s("b"), false},
		{f("in", []any{"a"}), nil, false},
		{f("contains", "ro"), s("pro"), true},
		{f("contains", ""), nil, false},
		{f("gt", 20.0), s("20.5"), true},
		{f("gt", 20.0), s("20"), false},
		{f("gte", 20.0), s("20"), true},
		{f("lt", 20.0), s("abc"), false}, // not a number
		{f("lte", 20.0), s("-1e3"), true},
		{f("lte", 20.0), nil, false},
		{f("exists", nil), s(""), true},
		{f("exists", nil), nil, false},
		{f("not_exists", nil), nil, true},
		{f("not_exists", nil), s("x"), false},
	} {
		if got := c.f.Test().Eval(c.x); got != c.want {
			x := "missing"
			if c.x != nil {
				x = *c.x
			}
			t.Errorf("%s %v on %s: %v, want %v", c.f.Op, c.f.Value, x, got, c.want)
		}
	}
}

// TestFilterSQL checks the SQL shape: connectives around primitives, each
// primitive NULL-safe.
func TestFilterSQL(t *testing.T) {
	prim := func(t analytics.Test) string {
		switch t.Kind {
		case analytics.TextEq:
			return "x = '" + t.Text + "'"
		case analytics.NumCmp:
			return "num(x) " + t.Cmp + " 1"
		}
		return "prim"
	}
	got := analytics.Filter{Property: "p", Op: "neq", Value: "a"}.Test().SQL(prim)
	if want := "(NOT coalesce(x = 'a', false))"; got != want {
		t.Errorf("neq: %s, want %s", got, want)
	}
	got = analytics.Filter{Property: "p", Op: "in", Value: []any{"a", 1.0}}.Test().SQL(prim)
	if want := "(coalesce(x = 'a', false) OR coalesce(num(x) = 1, false))"; got != want {
		t.Errorf("in: %s, want %s", got, want)
	}
	if got := (analytics.Filter{Property: "p", Op: "gte", Value: 1.0}).Test().SQL(prim); !strings.Contains(got, "num(x) >= 1") {
		t.Errorf("gte: %s", got)
	}
}
