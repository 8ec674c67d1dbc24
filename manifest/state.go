package manifest

import (
	"fmt"
	"regexp"
	"strings"
	"unicode"
)

// SecretSet is what the API shows for a secret that is set
// (governance.SecretSet); such a value is never compared.
const SecretSet = "(set)"

// State is what a node has, as its management API shows it.
type State struct {
	Resources []*Resource
	// Unread are the kinds the node did not show, with why (an endpoint
	// this version lacks, a role that may not read them): they are not
	// compared, and export leaves them out.
	Unread map[*Kind]string
	ids    map[*Kind]map[string]string // lower-case name → id
	names  map[*Kind]map[string]string // id → name
}

// NewState returns an empty state.
func NewState() *State {
	return &State{Unread: map[*Kind]string{}, ids: map[*Kind]map[string]string{}, names: map[*Kind]map[string]string{}}
}

// Add takes what the node answered for kind: the items of its list, or
// for a singleton kind the one object, in the API's JSON form.
func (s *State) Add(k *Kind, items []map[string]any) {
	for _, item := range items {
		r := &Resource{Kind: k, Fields: map[string]any{}}
		for _, f := range k.shape.fields {
			if v, ok := item[f.name]; ok && v != nil {
				r.Fields[f.name] = v
			}
		}
		switch {
		case k == TrackingPlans:
			r.ID, _ = item["sourceId"].(string)
			r.Name, _ = item["sourceName"].(string)
			r.Fields["source"] = r.Name
		case !k.Singleton:
			r.ID, _ = item["id"].(string)
			r.Name, _ = r.Fields[k.NameField].(string)
		}
		s.Resources = append(s.Resources, r)
		s.Created(r)
	}
}

// Created records a resource created on the node (its id, for what
// refers to it by name).
func (s *State) Created(r *Resource) {
	if r.Kind.Singleton {
		return
	}
	if s.ids[r.Kind] == nil {
		s.ids[r.Kind], s.names[r.Kind] = map[string]string{}, map[string]string{}
	}
	s.ids[r.Kind][strings.ToLower(r.Name)] = r.ID
	s.names[r.Kind][r.ID] = r.Name
}

// ID is the id of the resource of kind named name, "" if the node has
// none.
func (s *State) ID(k *Kind, name string) string { return s.ids[k][strings.ToLower(name)] }

// find returns the node's resources of kind named name (ignoring case).
func (s *State) find(k *Kind, name string) []*Resource {
	var out []*Resource
	for _, r := range s.Resources {
		if r.Kind == k && (k.Singleton || strings.EqualFold(r.Name, name)) {
			out = append(out, r)
		}
	}
	return out
}

// refs lists the fields that name other resources: in the file by name,
// in the API by id.
var refs = []struct {
	kind *Kind
	path []string // the field, under an object for filter.sources
	to   *Kind
}{
	{Destinations, []string{"filter", "sources"}, Sources},
	{Audiences, []string{"destinations"}, Destinations},
}

// resolve turns the ids the node answered into names, once every kind is
// in.
func (s *State) resolve() {
	for _, r := range s.Resources {
		for _, ref := range refs {
			if r.Kind != ref.kind || r.resolved {
				continue
			}
			list := refList(r.Fields, ref.path)
			for i, v := range list {
				if id, ok := v.(string); ok {
					if n := s.names[ref.to][id]; n != "" {
						list[i] = n
					}
				}
			}
		}
		r.resolved = true
	}
}

// refList is the list at path in fields, nil if none.
func refList(fields map[string]any, path []string) []any {
	var cur any = fields
	for _, p := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[p]
	}
	l, _ := cur.([]any)
	return l
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// expand replaces each ${NAME} in s by the variable's value; a variable
// not set is an error naming it.
func expand(s string, getenv func(string) (string, bool)) (string, error) {
	var missing []string
	out := envRef.ReplaceAllStringFunc(s, func(ref string) string {
		name := ref[2 : len(ref)-1]
		v, ok := getenv(name)
		if !ok {
			missing = append(missing, name)
		}
		return v
	})
	if len(missing) > 0 {
		return "", fmt.Errorf("the environment variable %s is not set", strings.Join(missing, ", "))
	}
	return out, nil
}

// expandAll expands the strings in v (a config value).
func expandAll(v any, getenv func(string) (string, bool)) (any, error) {
	switch x := v.(type) {
	case string:
		return expand(x, getenv)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			var err error
			if out[i], err = expandAll(e, getenv); err != nil {
				return nil, err
			}
		}
		return out, nil
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			var err error
			if out[k], err = expandAll(e, getenv); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	return v, nil
}

// SecretVar is the environment variable export names for a secret of a
// destination's config: its name and the key in upper snake case
// (crm-hook's secret is CRM_HOOK_SECRET, its writeKey CRM_HOOK_WRITE_KEY).
func SecretVar(destination, key string) string {
	var b strings.Builder
	prev := '_'
	put := func(r rune) {
		if r == '_' && prev == '_' {
			return
		}
		b.WriteRune(r)
		prev = r
	}
	for _, r := range destination {
		switch {
		case r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r)):
			put(unicode.ToUpper(r))
		default:
			put('_')
		}
	}
	put('_')
	for _, r := range key {
		switch {
		case unicode.IsUpper(r):
			put('_')
			put(r)
		case r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r)):
			put(unicode.ToUpper(r))
		default:
			put('_')
		}
	}
	s := strings.Trim(b.String(), "_")
	if s == "" || unicode.IsDigit(rune(s[0])) {
		s = "SECRET_" + s
	}
	return s
}
