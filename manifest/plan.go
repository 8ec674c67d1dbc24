package manifest

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"

	"tandem/delivery"
)

// Action is what a plan does to a resource.
type Action string

// Actions of a plan.
const (
	Create Action = "create"
	Change Action = "change"
	Delete Action = "delete"
)

// Op is one step of a plan.
type Op struct {
	Action  Action
	Kind    *Kind
	Name    string
	Want    *Resource // the declared resource; nil for Delete
	Have    *Resource // the node's; nil for Create
	Changes []FieldChange
	// Note says something the plan could not know, e.g. that the node
	// does not show this kind, so the change is a guess.
	Note string
}

// Label names the op's resource in messages.
func (o *Op) Label() string {
	if o.Kind.Singleton {
		return o.Kind.Noun
	}
	return fmt.Sprintf("%s %q", o.Kind.Noun, o.Name)
}

// FieldChange is one field that differs.
type FieldChange struct {
	Key    string // e.g. owner, config.url, events["Order Completed"]
	Before any    // nil when the node has none
	After  any    // nil when it is removed
	// Secret: After is a secret (or a reference to one); show it as such.
	Secret bool
}

// Plan is what apply would do, in the order it does it: creations and
// changes in the order of [Kinds], then deletions in reverse.
type Plan struct {
	Ops []*Op
}

// Counts returns how many resources the plan creates, changes and
// deletes.
func (p *Plan) Counts() (create, change, del int) {
	for _, o := range p.Ops {
		switch o.Action {
		case Create:
			create++
		case Change:
			change++
		case Delete:
			del++
		}
	}
	return
}

// Options tune [Diff].
type Options struct {
	// Prune deletes the node's resources of each kind the file declares
	// (a top-level key, an empty list included) that the file does not
	// name. Kinds the file does not declare are never deleted from.
	Prune bool
	// Getenv looks up the variables ${NAME} in a destination's config
	// refer to, where a value must be compared.
	Getenv func(string) (string, bool)
	// Keep are ids Prune never deletes (the user apply runs as).
	Keep map[string]bool
}

// Diff compares the manifest with the node's state and returns the plan
// that makes the node hold what the manifest declares. Errors name the
// file's line: a reference to a resource neither declared nor on the
// node, two resources of the node with a declared name, a variable that
// is not set.
func Diff(m *Manifest, st *State, o Options) (*Plan, error) {
	st.resolve()
	if o.Getenv == nil {
		o.Getenv = func(string) (string, bool) { return "", false }
	}
	var errs Errors
	fail := func(r *Resource, key, format string, args ...any) {
		errs = append(errs, &Error{File: m.File, Line: r.LineOf(key), Key: joinPath(r.Path, key), Message: fmt.Sprintf(format, args...)})
	}
	declared := map[*Kind]map[string]bool{}
	for _, r := range m.Resources {
		if declared[r.Kind] == nil {
			declared[r.Kind] = map[string]bool{}
		}
		declared[r.Kind][strings.ToLower(r.Name)] = true
	}
	exists := func(k *Kind, name string) bool {
		return declared[k][strings.ToLower(name)] || st.ID(k, name) != ""
	}
	plan := &Plan{}
	for _, want := range m.Resources {
		k := want.Kind
		// References must name something.
		if k == TrackingPlans && !exists(Sources, want.Name) {
			fail(want, "source", "no source %q in this file or on the node", want.Name)
		}
		for _, ref := range refs {
			if ref.kind != k {
				continue
			}
			for i, v := range refList(want.Fields, ref.path) {
				if name, _ := v.(string); !exists(ref.to, name) {
					fail(want, fmt.Sprintf("%s[%d]", strings.Join(ref.path, "."), i), "no %s %q in this file or on the node", ref.to.Noun, name)
				}
			}
		}
		if why, unread := st.Unread[k]; unread {
			op := &Op{Action: Change, Kind: k, Name: want.Name, Want: want, Note: "not compared: " + why}
			if !k.Singleton {
				op.Action = Create
			}
			for _, f := range k.shape.fields {
				if v, ok := want.Fields[f.name]; ok && f.name != k.NameField {
					op.Changes = append(op.Changes, FieldChange{Key: f.name, After: v})
				}
			}
			plan.Ops = append(plan.Ops, op)
			continue
		}
		have := st.find(k, want.Name)
		if len(have) > 1 {
			fail(want, k.NameField, "the node has %d %ss named %q; rename all but one (apply matches by name)", len(have), k.Noun, want.Name)
			continue
		}
		if len(have) == 0 {
			op := &Op{Action: Create, Kind: k, Name: want.Name, Want: want}
			for _, f := range k.shape.fields {
				if v, ok := want.Fields[f.name]; ok && f.name != k.NameField {
					op.Changes = append(op.Changes, FieldChange{Key: f.name, After: v})
				}
			}
			plan.Ops = append(plan.Ops, op)
			continue
		}
		changes, err := compare(k, want, have[0], o.Getenv)
		if err != nil {
			fail(want, err.key, "%s", err.msg)
			continue
		}
		if len(changes) > 0 {
			plan.Ops = append(plan.Ops, &Op{Action: Change, Kind: k, Name: want.Name, Want: want, Have: have[0], Changes: changes})
		}
	}
	if o.Prune {
		var dels []*Op
		for _, have := range st.Resources {
			k := have.Kind
			if k.Singleton || !m.Declared[k.Key] || declared[k][strings.ToLower(have.Name)] || o.Keep[have.ID] {
				continue
			}
			dels = append(dels, &Op{Action: Delete, Kind: k, Name: have.Name, Have: have})
		}
		sort.SliceStable(dels, func(i, j int) bool { return dels[i].Kind.order > dels[j].Kind.order })
		plan.Ops = append(plan.Ops, dels...)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return plan, nil
}

type keyError struct{ key, msg string }

// compare lists the declared fields of want that differ from have.
func compare(k *Kind, want, have *Resource, getenv func(string) (string, bool)) ([]FieldChange, *keyError) {
	var out []FieldChange
	for _, f := range k.shape.fields {
		w, declared := want.Fields[f.name]
		if !declared || f.name == k.NameField {
			continue
		}
		h := have.Fields[f.name]
		if !f.shape.partial {
			out = append(out, diffValues(f.name, canonical(h), canonical(w))...)
			continue
		}
		wm, _ := w.(map[string]any)
		hm, _ := h.(map[string]any)
		for _, key := range sortedKeys(wm) {
			path := mapKey(f.name, key)
			hv, has := hm[key]
			if has && hv == SecretSet {
				continue // a secret the node does not show: not compared
			}
			wv, err := expandAll(wm[key], getenv)
			if err != nil {
				return nil, &keyError{path, err.Error()}
			}
			if !has {
				out = append(out, FieldChange{Key: path, After: wm[key], Secret: isSecret(want, key)})
				continue
			}
			if !Equal(wv, hv) {
				out = append(out, FieldChange{Key: path, Before: hv, After: wm[key], Secret: isSecret(want, key)})
			}
		}
	}
	return out, nil
}

// diffValues lists where two canonical values differ: key by key in
// mappings, item by item in lists of the same length, else whole.
func diffValues(path string, before, after any) []FieldChange {
	if reflect.DeepEqual(before, after) {
		return nil
	}
	switch b := before.(type) {
	case map[string]any:
		if a, ok := after.(map[string]any); ok {
			keys := map[string]any{}
			for k := range b {
				keys[k] = nil
			}
			for k := range a {
				keys[k] = nil
			}
			var out []FieldChange
			for _, k := range sortedKeys(keys) {
				out = append(out, diffValues(mapKey(path, k), b[k], a[k])...)
			}
			return out
		}
	case []any:
		if a, ok := after.([]any); ok && len(a) == len(b) {
			var out []FieldChange
			for i := range b {
				out = append(out, diffValues(fmt.Sprintf("%s[%d]", path, i), b[i], a[i])...)
			}
			return out
		}
	}
	return []FieldChange{{Key: path, Before: before, After: after}}
}

// isSecret reports whether key of a destination's config is a secret of
// its type.
func isSecret(r *Resource, key string) bool {
	typ, _ := r.Fields["type"].(string)
	for _, s := range delivery.SecretKeys(typ) {
		if s == key {
			return true
		}
	}
	return false
}

func hasRef(v any) bool {
	switch x := v.(type) {
	case string:
		return envRef.MatchString(x)
	case map[string]any:
		for _, e := range x {
			if hasRef(e) {
				return true
			}
		}
	case []any:
		for _, e := range x {
			if hasRef(e) {
				return true
			}
		}
	}
	return false
}

func sortedKeys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Equal reports whether two JSON values are the same, a missing value
// being the same as an empty one (the API leaves empty lists and strings
// out of some answers).
func Equal(a, b any) bool {
	return reflect.DeepEqual(canonical(a), canonical(b))
}

// canonical is v through JSON (so numbers are float64 and raw JSON is
// parsed), with empty values removed.
func canonical(v any) any {
	b, err := json.Marshal(v)
	if err != nil {
		return v
	}
	var out any
	if json.Unmarshal(b, &out) != nil {
		return v
	}
	return prune(out)
}

func prune(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if p := prune(e); p == nil {
				delete(x, k)
			} else {
				x[k] = p
			}
		}
		if len(x) == 0 {
			return nil
		}
		return x
	case []any:
		if len(x) == 0 {
			return nil
		}
		for i := range x {
			x[i] = prune(x[i])
		}
		return x
	case string:
		if x == "" {
			return nil
		}
	}
	return v
}

// Body is what apply sends for op: for a create, every declared field;
// for a Put or a Replace, every declared field on top of the node's; for
// a Patch, the changed fields. Names of other resources become their ids (st knows those
// created earlier in the same apply); ${NAME} in a destination's config
// is expanded. Errors name the file's line.
func Body(file string, op *Op, st *State, getenv func(string) (string, bool)) (map[string]any, error) {
	want := op.Want
	body := map[string]any{}
	switch {
	case op.Action == Create || op.Kind.Update != Patch:
		if op.Have != nil { // what the file leaves out stays as it is
			for k, v := range op.Have.Fields {
				body[k] = v
			}
		}
		for k, v := range want.Fields {
			body[k] = v
		}
	default:
		for _, c := range op.Changes {
			top, _, _ := strings.Cut(strings.SplitN(c.Key, "[", 2)[0], ".")
			body[top] = want.Fields[top]
		}
	}
	if op.Kind == TrackingPlans {
		delete(body, "source")
	}
	body = deepCopy(body).(map[string]any)
	for _, ref := range refs {
		if ref.kind != op.Kind {
			continue
		}
		list := refList(body, ref.path)
		for i, v := range list {
			name, _ := v.(string)
			id := st.ID(ref.to, name)
			if id == "" {
				return nil, &Error{File: file, Line: want.LineOf(strings.Join(ref.path, ".")), Key: joinPath(want.Path, fmt.Sprintf("%s[%d]", strings.Join(ref.path, "."), i)),
					Message: fmt.Sprintf("%s %q does not exist on the node (was its creation held for approval?)", ref.to.Noun, name)}
			}
			list[i] = id
		}
	}
	if cfg, ok := body["config"].(map[string]any); ok {
		out, err := config(file, op, cfg, getenv)
		if err != nil {
			return nil, err
		}
		body["config"] = out
	}
	return body, nil
}

// CheckVars checks that the variables ${NAME} op needs are set, so that
// apply can refuse before it changes anything.
func CheckVars(file string, op *Op, getenv func(string) (string, bool)) error {
	if op.Want == nil {
		return nil
	}
	cfg, ok := op.Want.Fields["config"].(map[string]any)
	if !ok {
		return nil
	}
	_, err := config(file, op, cfg, getenv)
	return err
}

// config is the config a create or a change of a destination sends: the
// whole config, since a key left out would be reset to its default. The
// node's values are the base; a secret it does not show goes back as the
// placeholder, which keeps it, unless the file gives it and its variable
// is set.
func config(file string, op *Op, cfg map[string]any, getenv func(string) (string, bool)) (map[string]any, error) {
	want := op.Want
	out := map[string]any{}
	if op.Have != nil {
		if hc, ok := op.Have.Fields["config"].(map[string]any); ok {
			for k, v := range hc {
				out[k] = v
			}
		}
	}
	for _, k := range sortedKeys(cfg) {
		v, err := expandAll(cfg[k], getenv)
		if err != nil {
			if out[k] == SecretSet && isSecret(want, k) {
				continue // a secret whose variable is not set keeps its value
			}
			return nil, &Error{File: file, Line: want.LineOf(mapKey("config", k)), Key: mapKey(want.Path+".config", k), Message: err.Error()}
		}
		out[k] = v
	}
	return out, nil
}

func deepCopy(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = deepCopy(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = deepCopy(e)
		}
		return out
	}
	return v
}
