package manifest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

const exportHeader = `# tandem configuration, written by tandem export: apply it with
# tandem apply -f FILE (docs/configuration-as-code.md).
# Secrets are never exported: each ${NAME} is an environment variable
# apply reads when it sends the secret.
`

// Export writes the state as a manifest that [Parse] reads back to the
// same resources: every kind the node showed (an empty list included),
// every field but empty ones, secrets as ${NAME} references
// ([SecretVar]).
func Export(st *State) ([]byte, error) {
	st.resolve()
	root := &yaml.Node{Kind: yaml.MappingNode}
	add := func(key string, v *yaml.Node) {
		root.Content = append(root.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: key}, v)
	}
	add("version", &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.Itoa(Version)})
	for _, k := range Kinds {
		if _, unread := st.Unread[k]; unread {
			continue
		}
		var rs []*Resource
		for _, r := range st.Resources {
			if r.Kind == k {
				rs = append(rs, r)
			}
		}
		if k.Singleton {
			if len(rs) == 1 {
				add(k.Key, exportResource(rs[0]))
			}
			continue
		}
		sort.SliceStable(rs, func(i, j int) bool { return strings.ToLower(rs[i].Name) < strings.ToLower(rs[j].Name) })
		seq := &yaml.Node{Kind: yaml.SequenceNode}
		for _, r := range rs {
			seq.Content = append(seq.Content, exportResource(r))
		}
		if len(seq.Content) == 0 {
			seq.Style = yaml.FlowStyle
		}
		add(k.Key, seq)
	}
	var b bytes.Buffer
	b.WriteString(exportHeader)
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{root}}); err != nil {
		return nil, fmt.Errorf("manifest: export: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("manifest: export: %w", err)
	}
	return b.Bytes(), nil
}

func exportResource(r *Resource) *yaml.Node {
	n := &yaml.Node{Kind: yaml.MappingNode}
	for _, f := range r.Kind.shape.fields {
		v, ok := r.Fields[f.name]
		if !ok || (!f.required && canonical(v) == nil) {
			continue
		}
		if f.shape.partial {
			v = exportConfig(r, v)
		}
		n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: f.name}, node(v, f.shape))
	}
	return n
}

// exportConfig replaces the secrets a node shows as set by references to
// environment variables.
func exportConfig(r *Resource, v any) any {
	cfg, ok := v.(map[string]any)
	if !ok {
		return v
	}
	out := make(map[string]any, len(cfg))
	for k, e := range cfg {
		if e == SecretSet {
			e = "${" + SecretVar(r.Name, k) + "}"
		}
		out[k] = e
	}
	return out
}

// node is the YAML of a JSON value; s (may be nil) says which object's
// keys come in which order.
func node(v any, s *shape) *yaml.Node {
	switch x := v.(type) {
	case nil:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null"}
	case bool:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(x)}
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1e15 {
			return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.FormatInt(int64(x), 10)}
		}
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!float", Value: strconv.FormatFloat(x, 'g', -1, 64)}
	case json.Number:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!float", Value: x.String()}
	case string:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: x}
	case []any:
		n := &yaml.Node{Kind: yaml.SequenceNode}
		scalars := true
		var elem *shape
		if s != nil {
			elem = s.elem
		}
		for _, e := range x {
			c := node(e, elem)
			scalars = scalars && c.Kind == yaml.ScalarNode && len(c.Value) < 60
			n.Content = append(n.Content, c)
		}
		if scalars {
			n.Style = yaml.FlowStyle
		}
		return n
	case map[string]any:
		n := &yaml.Node{Kind: yaml.MappingNode}
		var keys []string
		if s != nil && s.typ == tObject {
			for _, f := range s.fields {
				if _, ok := x[f.name]; ok {
					keys = append(keys, f.name)
				}
			}
		} else {
			keys = sortedKeys(x)
		}
		for _, k := range keys {
			var sub *shape
			if s != nil && s.typ == tObject {
				sub = s.field(k).shape
			} else if s != nil && s.typ == tMap {
				sub = s.elem
			}
			if s != nil && s.typ == tObject && canonical(x[k]) == nil {
				continue
			}
			n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: k}, node(x[k], sub))
		}
		if len(n.Content) == 0 {
			n.Style = yaml.FlowStyle
		}
		return n
	}
	// Anything else (a raw JSON schema): through JSON.
	b, err := json.Marshal(v)
	if err != nil {
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null"}
	}
	var g any
	if json.Unmarshal(b, &g) != nil {
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null"}
	}
	return node(g, s)
}
