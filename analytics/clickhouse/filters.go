package clickhouse

import (
	"bytes"
	"encoding/json"

	"tandem/analytics"
)

// evaluator applies the property filters of a scan's conditions, and
// reads its breakdown property, from events' JSON.
type evaluator struct {
	conds    []analytics.Condition
	tests    [][]analytics.Test // per condition, its filters' tests
	property string
	filtered bool // some condition has filters
}

func newEvaluator(spec analytics.ScanSpec) *evaluator {
	e := &evaluator{conds: spec.Conditions, property: spec.Property, tests: make([][]analytics.Test, len(spec.Conditions))}
	for i, c := range spec.Conditions {
		for _, f := range c.Where {
			e.tests[i] = append(e.tests[i], f.Test())
			e.filtered = true
		}
	}
	return e
}

// eval adds to pt the bits of the filtered conditions the event (named
// pt.Name, JSON raw) satisfies, and fills pt.Prop when asked.
func (e *evaluator) eval(raw string, pt *analytics.Point) {
	var doc struct {
		Properties map[string]json.RawMessage `json:"properties"`
	}
	// A document that does not parse, or whose properties are not an
	// object, has no properties: every filter sees them missing.
	_ = json.Unmarshal([]byte(raw), &doc)
	for i, c := range e.conds {
		if len(c.Where) == 0 || c.Event != pt.Name {
			continue
		}
		ok := true
		for j, f := range c.Where {
			if !e.tests[i][j].Eval(extract(doc.Properties, f.Property)) {
				ok = false
				break
			}
		}
		if ok {
			pt.Mask |= 1 << i
		}
	}
	if e.property != "" {
		pt.Prop = extract(doc.Properties, e.property)
	}
}

// extract is the text of obj[key] as a JSON path extraction gives it:
// strings unquoted, other scalars (numbers, booleans) as written, objects
// and arrays as compact JSON; nil when the key is missing or null.
func extract(obj map[string]json.RawMessage, key string) *string {
	v, ok := obj[key]
	if !ok {
		return nil
	}
	v = bytes.TrimSpace(v)
	var s string
	switch {
	case len(v) == 0 || string(v) == "null":
		return nil
	case v[0] == '"':
		if err := json.Unmarshal(v, &s); err != nil {
			return nil
		}
	case v[0] == '{' || v[0] == '[':
		var b bytes.Buffer
		if err := json.Compact(&b, v); err != nil {
			return nil
		}
		s = b.String()
	default:
		s = string(v)
	}
	return &s
}

// latestTrait is the trait's value on the latest event that carries it
// (greatest value among equally late ones): traits.<name> of an identify,
// else context.traits.<name>.
func latestTrait(name string, ts []int64, identify []uint8, raws []string) *string {
	var (
		best *string
		at   int64
	)
	for i, raw := range raws {
		if best != nil && ts[i] < at {
			continue
		}
		var doc struct {
			Traits  map[string]json.RawMessage `json:"traits"`
			Context struct {
				Traits map[string]json.RawMessage `json:"traits"`
			} `json:"context"`
		}
		_ = json.Unmarshal([]byte(raw), &doc)
		var v *string
		if identify[i] != 0 {
			v = extract(doc.Traits, name)
		}
		if v == nil {
			v = extract(doc.Context.Traits, name)
		}
		if v == nil {
			continue
		}
		if best == nil || ts[i] > at || *v > *best {
			best, at = v, ts[i]
		}
	}
	return best
}
