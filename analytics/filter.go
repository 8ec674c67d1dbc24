package analytics

import (
	"strconv"
	"strings"
)

// What a filter means is written here once. [Filter.Test] reduces each op
// to a [Test]: a formula of a few primitive tests on the property's value
// x, the text of properties.<Property> as a JSON path extraction gives it
// (strings unquoted, other scalars as written; missing when the key is
// absent or null). Every primitive is false on a missing x, so "a missing
// property fails every op but neq and not_exists" follows from the
// formulas, not from a rule per op.
//
// Backends derive from it: [Test.Eval] evaluates a test in Go (the
// ClickHouse backend, on events' JSON), [Test.SQL] renders it as a SQL
// boolean from a dialect's spelling of the primitives (the DuckDB backend).
// analytics/reftest keeps its own version, written separately from the
// documentation, so that the cross-checks test this one.

// TestKind is a primitive test of a property's value, or a connective.
type TestKind uint8

const (
	// Present: x is not missing.
	Present TestKind = iota
	// TextEq: x equals Text.
	TextEq
	// TextContains: Text is a substring of x.
	TextContains
	// NumCmp: x read as a number compares to Num by Cmp; false when x is
	// not a number.
	NumCmp
	// Not: Args[0] is false.
	Not
	// AnyOf: one of Args is true.
	AnyOf
)

// Test is a filter reduced to primitive tests; see [Filter.Test].
type Test struct {
	Kind TestKind
	Text string  // TextEq, TextContains
	Num  float64 // NumCmp
	Cmp  string  // NumCmp: "=", ">", ">=", "<" or "<="
	Args []Test  // Not (one), AnyOf (one or more)
}

// Test is f's meaning. f must be valid (its query's Validate accepted it).
//
//	eq v        v a number: x as a number = v; else x = v's text (ScalarString)
//	neq v       not (eq v)
//	in [v…]     eq v for some v
//	contains s  s is a substring of x
//	gt/gte/lt/lte n   x as a number >, >=, <, <= n
//	exists      x is present
//	not_exists  not exists
func (f Filter) Test() Test {
	switch f.Op {
	case "eq":
		return equals(f.Value)
	case "neq":
		return Test{Kind: Not, Args: []Test{equals(f.Value)}}
	case "in":
		vs := f.Value.([]any)
		t := Test{Kind: AnyOf, Args: make([]Test, len(vs))}
		for i, v := range vs {
			t.Args[i] = equals(v)
		}
		return t
	case "contains":
		return Test{Kind: TextContains, Text: f.Value.(string)}
	case "gt", "gte", "lt", "lte":
		return Test{Kind: NumCmp, Cmp: numOps[f.Op], Num: f.Value.(float64)}
	case "exists":
		return Test{Kind: Present}
	case "not_exists":
		return Test{Kind: Not, Args: []Test{{Kind: Present}}}
	}
	panic("analytics: unvalidated filter op " + f.Op)
}

var numOps = map[string]string{"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}

// equals is eq's test of v: numbers compare as numbers, other scalars as
// text.
func equals(v any) Test {
	if n, ok := v.(float64); ok {
		return Test{Kind: NumCmp, Cmp: "=", Num: n}
	}
	return Test{Kind: TextEq, Text: ScalarString(v)}
}

// Eval reports whether t holds for x (nil: missing). A number is read with
// strconv.ParseFloat.
func (t Test) Eval(x *string) bool {
	switch t.Kind {
	case Present:
		return x != nil
	case TextEq:
		return x != nil && *x == t.Text
	case TextContains:
		return x != nil && strings.Contains(*x, t.Text)
	case NumCmp:
		if x == nil {
			return false
		}
		n, err := strconv.ParseFloat(*x, 64)
		if err != nil {
			return false
		}
		switch t.Cmp {
		case "=":
			return n == t.Num
		case ">":
			return n > t.Num
		case ">=":
			return n >= t.Num
		case "<":
			return n < t.Num
		}
		return n <= t.Num
	case Not:
		return !t.Args[0].Eval(x)
	case AnyOf:
		for _, a := range t.Args {
			if a.Eval(x) {
				return true
			}
		}
		return false
	}
	panic("analytics: test kind " + strconv.Itoa(int(t.Kind)))
}

// SQL renders t as a SQL boolean expression that is never NULL. prim
// spells a primitive (Present, TextEq, TextContains or NumCmp) in the
// dialect over the value expression; it may be NULL where x is missing or
// not a number, which counts as false.
func (t Test) SQL(prim func(Test) string) string {
	switch t.Kind {
	case Not:
		return "(NOT " + t.Args[0].SQL(prim) + ")"
	case AnyOf:
		parts := make([]string, len(t.Args))
		for i, a := range t.Args {
			parts[i] = a.SQL(prim)
		}
		return "(" + strings.Join(parts, " OR ") + ")"
	}
	return "coalesce(" + prim(t) + ", false)"
}
