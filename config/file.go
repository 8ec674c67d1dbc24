package config

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"tandem/attribution"
	"tandem/identity"
	"tandem/policy"
	"tandem/privacy"
)

// loadFile applies the YAML file at path to c: a key named after a flag
// goes through that flag's parser, identity and journey are decoded into
// their structures. fileFrom names where path came from (--config or
// TANDEM_CONFIG); from records the file position of each flag set.
func (c *Config) loadFile(flags *flag.FlagSet, path, fileFrom string, from map[string]string) (*yaml.Node, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, &UsageError{Key: fileFrom, Message: fmt.Sprintf("cannot read %q: %v", path, err)}
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, yamlError(path, err)
	}
	if doc.Kind == 0 || len(doc.Content) == 0 { // empty file
		return nil, nil
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" { // only comments
		return nil, nil
	}
	if root.Kind != yaml.MappingNode {
		return nil, &UsageError{Key: fmt.Sprintf("%s:%d", path, root.Line), Message: "want a mapping of keys to values"}
	}
	seen := map[string]int{}
	nested := false
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		at := fmt.Sprintf("%s:%d", path, k.Line)
		key := k.Value
		if k.Kind != yaml.ScalarNode {
			return nil, &UsageError{Key: at, Message: "want a key"}
		}
		if line, ok := seen[key]; ok {
			return nil, &UsageError{Key: at, Message: fmt.Sprintf("key %q repeated (first on line %d)", key, line)}
		}
		seen[key] = k.Line
		for v.Kind == yaml.AliasNode {
			v = v.Alias
		}
		if key == "identity" || key == "journey" || key == "consent" || key == "policy" || key == "retention" || key == "privacy" || key == "attribution" {
			nested = true
			continue
		}
		name := strings.ReplaceAll(key, "_", "-")
		f := flags.Lookup(name)
		if f == nil || name == "config" || strings.Contains(key, "-") {
			return nil, &UsageError{Key: at, Message: fmt.Sprintf("unknown key %q", key)}
		}
		at += ": " + key
		_, isList := f.Value.(*tracked).Value.(*listValue)
		var val string
		switch {
		case v.Kind == yaml.ScalarNode && v.Tag == "!!null":
			continue // "key:" with no value leaves the default
		case v.Kind == yaml.ScalarNode:
			val = v.Value
		case v.Kind == yaml.SequenceNode && isList:
			items := make([]string, len(v.Content))
			for j, item := range v.Content {
				if item.Kind != yaml.ScalarNode {
					return nil, &UsageError{Key: at, Message: fmt.Sprintf("item %d is not a single value", j)}
				}
				items[j] = item.Value
			}
			val = strings.Join(items, ",")
		case isList:
			return nil, &UsageError{Key: at, Message: "want a list or a comma-separated string"}
		default:
			return nil, &UsageError{Key: at, Message: "want a single value, not a " + kindName(v.Kind)}
		}
		if msg := set(flags, name, val); msg != "" {
			return nil, &UsageError{Key: at, Message: msg}
		}
		from[name] = at
	}
	if nested {
		if err := c.decodeNested(path, b); err != nil {
			return nil, err
		}
	}
	return root, nil
}

// decodeNested decodes the identity, journey, consent, policy, retention and privacy keys, refusing keys their
// structures have no field for.
func (c *Config) decodeNested(path string, b []byte) error {
	// journey.stages replaces the default lifecycle rather than merging
	// into it.
	c.Journey.Stages = nil
	defer func() {
		if c.Journey.Stages == nil {
			c.Journey.Stages = DefaultStages()
		}
	}()
	file := struct {
		Identity    *identity.Rules      `yaml:"identity"`
		Journey     *Journey             `yaml:"journey"`
		Consent     *privacy.Config      `yaml:"consent"`
		Policy      *policy.Config       `yaml:"policy"`
		Retention   *privacy.Retention   `yaml:"retention"`
		Privacy     *privacy.Settings    `yaml:"privacy"`
		Attribution *attribution.Config  `yaml:"attribution"`
		Flags       map[string]yaml.Node `yaml:",inline"` // checked above
	}{Identity: &c.Identity, Journey: &c.Journey, Consent: &c.Consent, Policy: &c.Policy, Retention: &c.Retention, Privacy: &c.Privacy, Attribution: &c.Attribution}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&file); err != nil {
		ue := yamlError(path, err).(*UsageError)
		if key := wrongKey(b, err); key != "" {
			ue.Key += ": " + key
		}
		return ue
	}
	return nil
}

// wrongKey finds the path of the key whose value the yaml package refused
// for its type, or of the mapping holding an unknown key, or "".
func wrongKey(b []byte, err error) string {
	var te *yaml.TypeError
	if !errors.As(err, &te) || len(te.Errors) == 0 {
		return ""
	}
	m := yamlLine.FindStringSubmatch(te.Errors[0])
	if m == nil {
		return ""
	}
	line, _ := strconv.Atoi(m[1])
	var root yaml.Node
	if yaml.Unmarshal(b, &root) != nil || len(root.Content) == 0 {
		return ""
	}
	if u := yamlUnknown.FindStringSubmatch(m[2]); u != nil {
		// The key is in the message; name the mapping it is in.
		p := keyAt(root.Content[0], "", func(k, _ *yaml.Node) bool { return k.Line == line && k.Value == u[1] })
		p = strings.TrimSuffix(p, u[1])
		return strings.TrimSuffix(p, ".")
	}
	w := yamlWrongTyp.FindStringSubmatch(m[2])
	if w == nil {
		return ""
	}
	return keyAt(root.Content[0], "", func(k, v *yaml.Node) bool {
		switch w[1] {
		case "seq":
			return v.Line == line && v.Kind == yaml.SequenceNode
		case "map":
			return v.Line == line && v.Kind == yaml.MappingNode
		}
		return v.Line == line && v.Kind == yaml.ScalarNode && v.Value == w[2]
	})
}

// keyAt finds the path (identity.types[0].limit) of the first, innermost
// key in n for which match holds, or "".
func keyAt(n *yaml.Node, path string, match func(k, v *yaml.Node) bool) string {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			if found := keyAt(v, p, match); found != "" {
				return found // the innermost key
			}
			if match(k, v) {
				return p
			}
		}
	case yaml.SequenceNode:
		for i, item := range n.Content {
			if found := keyAt(item, fmt.Sprintf("%s[%d]", path, i), match); found != "" {
				return found
			}
		}
	}
	return ""
}

var (
	yamlLine     = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)
	yamlUnknown  = regexp.MustCompile(`^field (\S+) not found in type \S+$`)
	yamlWrongTyp = regexp.MustCompile("^cannot unmarshal !!(\\w+) (?:`(.*)` )?into (\\S+)$")
)

// yamlError turns a yaml package error into a [UsageError] naming the file
// and line, without Go type names.
func yamlError(path string, err error) error {
	msgs := []string{strings.TrimPrefix(err.Error(), "yaml: ")}
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msgs = te.Errors // report the first; the rest usually follow from it
	}
	msg := msgs[0]
	key := path
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		key, msg = path+":"+m[1], m[2]
	}
	if m := yamlUnknown.FindStringSubmatch(msg); m != nil {
		msg = fmt.Sprintf("unknown key %q", m[1])
	} else if m := yamlWrongTyp.FindStringSubmatch(msg); m != nil {
		want := goKind(m[3])
		if m[2] != "" {
			msg = fmt.Sprintf("%q is not %s", m[2], want)
		} else {
			msg = fmt.Sprintf("want %s, not a %s", want, map[string]string{"seq": "list", "map": "mapping"}[m[1]])
		}
	}
	return &UsageError{Key: key, Message: msg}
}

// goKind names a Go type's YAML form.
func goKind(t string) string {
	switch {
	case strings.HasPrefix(t, "[]"):
		return "a list"
	case strings.HasPrefix(t, "int"), strings.HasPrefix(t, "uint"):
		return "a whole number"
	case strings.HasPrefix(t, "float"):
		return "a number"
	case t == "bool":
		return "a boolean"
	case t == "string":
		return "a string"
	case t == "time.Duration":
		return "a duration (300ms, 90s, 720h)"
	}
	return "a mapping"
}

// lineOf finds the line of a key such as journey.stages[1].department in
// the file's root mapping: the key's own line, or that of the nearest
// enclosing entry present. 0: not in the file.
func lineOf(root *yaml.Node, key string) int {
	line, n := 0, root
	for _, part := range strings.Split(strings.ReplaceAll(key, "[", ".["), ".") {
		switch {
		case n == nil:
			return line
		case strings.HasPrefix(part, "["):
			i, err := strconv.Atoi(strings.Trim(part, "[]"))
			if err != nil || n.Kind != yaml.SequenceNode || i < 0 || i >= len(n.Content) {
				return line
			}
			n = n.Content[i]
			line = n.Line
		default:
			var next *yaml.Node
			if n.Kind == yaml.MappingNode {
				for j := 0; j+1 < len(n.Content); j += 2 {
					if n.Content[j].Value == part {
						line, next = n.Content[j].Line, n.Content[j+1]
					}
				}
			}
			if next == nil {
				return line
			}
			n = next
		}
	}
	return line
}
func kindName(k yaml.Kind) string {
	switch k {
	case yaml.SequenceNode:
		return "list"
	case yaml.MappingNode:
		return "mapping"
	}
	return "value"
}
