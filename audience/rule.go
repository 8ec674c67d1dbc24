package audience

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/vm"
)

// MaxRuleBytes bounds a rule's text.
const MaxRuleBytes = 4096

// Rule is a compiled audience rule: an expr-lang expression of type bool
// over the variables of [Env] (see docs/audiences.md).
type Rule struct {
	src  string
	prog *vm.Program
}

// Env is what a rule sees of a profile: traits (identify's, by name),
// computed (computed traits, by name; counts and sums are numbers, 0 when
// the profile has no such event), profile (its id), stage and stages
// (lifecycle).
type Env struct {
	Traits   map[string]any `expr:"traits"`
	Computed map[string]any `expr:"computed"`
	Profile  string         `expr:"profile"`
	Stage    string         `expr:"stage"`  // lifecycle stage of the latest stage event; "" when none
	Stages   []string       `expr:"stages"` // lifecycle stages reached, in the configured order
}

// ParseRule compiles a rule. Its errors are *[FieldError]s for field
// "rule" naming the line and column at fault.
func ParseRule(src string) (*Rule, error) {
	if strings.TrimSpace(src) == "" {
		return nil, &FieldError{Field: "rule", Message: "must not be empty"}
	}
	if len(src) > MaxRuleBytes {
		return nil, &FieldError{Field: "rule", Message: fmt.Sprintf("must be at most %d bytes", MaxRuleBytes)}
	}
	prog, err := expr.Compile(src, expr.Env(Env{}), expr.AsBool(), expr.DisableAllBuiltins(),
		expr.EnableBuiltin("len"), expr.EnableBuiltin("lower"), expr.EnableBuiltin("upper"),
		expr.EnableBuiltin("abs"), expr.EnableBuiltin("min"), expr.EnableBuiltin("max"))
	if err != nil {
		var fe *file.Error
		if errors.As(err, &fe) {
			return nil, &FieldError{Field: "rule", Message: fmt.Sprintf("line %d, column %d: %s", fe.Line, fe.Column+1, fe.Message)}
		}
		// The whole rule is at fault (its type is not bool): it starts at 1:1.
		return nil, &FieldError{Field: "rule", Message: "line 1, column 1: " + err.Error()}
	}
	return &Rule{src: src, prog: prog}, nil
}

// String is the rule's text.
func (r *Rule) String() string { return r.src }

// Match evaluates the rule for env. A rule that fails at run time (a
// missing value compared with a number, say) does not match.
func (r *Rule) Match(env Env) bool {
	out, err := expr.Run(r.prog, env)
	if err != nil {
		return false
	}
	b, _ := out.(bool)
	return b
}

// plain turns JSON values (computed traits' first/last/most_frequent,
// profile traits) into the Go values rules compare: numbers float64,
// strings, booleans, lists and maps.
func plain(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		switch x := v.(type) {
		case json.RawMessage:
			var a any
			if json.Unmarshal(x, &a) == nil {
				out[k] = a
			}
		case int64:
			out[k] = float64(x)
		default:
			out[k] = v
		}
	}
	return out
}

func plainRaw(m map[string]json.RawMessage) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		var a any
		if json.Unmarshal(v, &a) == nil {
			out[k] = a
		}
	}
	return out
}
