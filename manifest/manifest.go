package manifest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Version is the manifest format's version, the value of the optional
// top-level key version.
const Version = 1

// MaxBytes is the largest manifest Parse reads.
const MaxBytes = 8 << 20

// Manifest is a parsed file: the resources it declares, in file order.
type Manifest struct {
	File      string
	Resources []*Resource
	// Declared holds the top-level keys the file has (a kind declared
	// with an empty list counts): the kinds --prune may delete from.
	Declared map[string]bool
}

// Resource is one resource: declared by a manifest, or what a node has
// (a [State]'s). Fields are in the management API's JSON form (strings,
// float64, bool, []any, map[string]any), references to other resources
// by name; a declared resource holds only the keys the file gives.
type Resource struct {
	Kind   *Kind
	Name   string // the stable key; "" for a kind with one resource per node
	ID     string // the node's id (a State's resources)
	Fields map[string]any
	Line   int    // where it starts in the file
	Path   string // its key path, e.g. destinations[2]
	lines  map[string]int
	// resolved: the ids of what it refers to are names (a State's).
	resolved bool
}

// LineOf is the line of a key path under the resource (e.g.
// "config.secret"), or the resource's own line.
func (r *Resource) LineOf(path string) int {
	for p := path; p != ""; {
		if l, ok := r.lines[p]; ok {
			return l
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return r.Line
}

// Label is how messages name the resource: its kind and name.
func (r *Resource) Label() string {
	if r.Kind.Singleton {
		return r.Kind.Noun
	}
	return fmt.Sprintf("%s %q", r.Kind.Noun, r.Name)
}

// Error is a problem in a manifest, at a line and key.
type Error struct {
	File    string
	Line    int
	Key     string // the key path, e.g. destinations[0].type
	Message string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(e.Key + ": ")
	}
	b.WriteString(e.Message)
	return b.String()
}

// Errors are the problems Parse found, in file order.
type Errors []*Error

func (es Errors) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// maxErrors is how many problems Parse reports before it stops.
const maxErrors = 20

type parser struct {
	file string
	errs Errors
	res  *Resource // the resource being read, for its lines
}

func (p *parser) fail(n *yaml.Node, key, format string, args ...any) {
	if len(p.errs) >= maxErrors {
		return
	}
	line := 0
	if n != nil {
		line = n.Line
	}
	p.errs = append(p.errs, &Error{File: p.file, Line: line, Key: key, Message: fmt.Sprintf(format, args...)})
}

// Parse reads a manifest. file names it in errors ("tandem.yaml", or
// "-" for stdin). Problems are an [Errors] of every problem found (up to
// 20), each with its line and key.
func Parse(file string, data []byte) (*Manifest, error) {
	m := &Manifest{File: file, Declared: map[string]bool{}}
	p := &parser{file: file}
	if len(data) > MaxBytes {
		p.fail(nil, "", "larger than %d bytes", MaxBytes)
		return nil, p.errs
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return m, nil // an empty file declares nothing
		}
		line, msg := yamlMessage(err)
		p.errs = append(p.errs, &Error{File: file, Line: line, Message: msg})
		return nil, p.errs
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		p.fail(&extra, "", "holds more than one YAML document; give one")
		return nil, p.errs
	}
	root := &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			return m, nil
		}
		root = root.Content[0]
	}
	if isNull(root) {
		return m, nil
	}
	if root.Kind != yaml.MappingNode {
		p.fail(root, "", "must be a mapping of keys such as sources:, destinations:, users:")
		return nil, p.errs
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		key := k.Value
		if seen[key] {
			p.fail(k, key, "given twice")
			continue
		}
		seen[key] = true
		if key == "version" {
			if isNull(v) {
				continue
			}
			if v.Kind != yaml.ScalarNode || v.Value != strconv.Itoa(Version) {
				p.fail(v, key, "must be %d, the version of this format", Version)
			}
			continue
		}
		kind := KindByKey(key)
		if kind == nil {
			p.fail(k, "", "unknown key %q; known: version, %s", key, strings.Join(kindKeys(), ", "))
			continue
		}
		if isNull(v) {
			continue // a key without a value declares nothing (--prune leaves the kind alone)
		}
		m.Declared[key] = true
		if kind.Singleton {
			if r := p.resource(kind, v, key); r != nil {
				m.Resources = append(m.Resources, r)
			}
			continue
		}
		if v.Kind != yaml.SequenceNode {
			p.fail(v, key, "must be a list of %ss", kind.Noun)
			continue
		}
		names := map[string]int{}
		for j, item := range v.Content {
			path := fmt.Sprintf("%s[%d]", key, j)
			r := p.resource(kind, item, path)
			if r == nil {
				continue
			}
			if prev, dup := names[strings.ToLower(r.Name)]; dup {
				p.fail(item, path+"."+kind.NameField, "%s %q is declared twice (also %s[%d]); names are matched ignoring case", kind.Noun, r.Name, key, prev)
				continue
			}
			names[strings.ToLower(r.Name)] = j
			m.Resources = append(m.Resources, r)
		}
	}
	if len(p.errs) > 0 {
		return nil, p.errs
	}
	sort.SliceStable(m.Resources, func(i, j int) bool { return m.Resources[i].Kind.order < m.Resources[j].Kind.order })
	return m, nil
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): `)

// yamlMessage splits a YAML syntax error into its line and message.
func yamlMessage(err error) (int, string) {
	s := err.Error()
	if m := yamlLine.FindStringSubmatch(s); m != nil {
		n, _ := strconv.Atoi(m[1])
		return n, "not valid YAML: " + s[len(m[0]):]
	}
	return 0, "not valid YAML: " + strings.TrimPrefix(s, "yaml: ")
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// resource reads one resource of kind from n at path.
func (p *parser) resource(kind *Kind, n *yaml.Node, path string) *Resource {
	r := &Resource{Kind: kind, Line: n.Line, Path: path, lines: map[string]int{}}
	p.res = r
	before := len(p.errs)
	v, ok := p.value(kind.shape, n, path, "")
	p.res = nil
	if !ok || len(p.errs) > before {
		return nil
	}
	r.Fields = v.(map[string]any)
	if !kind.Singleton {
		r.Name, _ = r.Fields[kind.NameField].(string)
	}
	if kind.check != nil {
		if key, msg := kind.check(r); msg != "" {
			p.errs = append(p.errs, &Error{File: p.file, Line: r.LineOf(key), Key: joinPath(path, key), Message: msg})
			return nil
		}
	}
	return r
}

func joinPath(base, key string) string {
	switch {
	case key == "":
		return base
	case strings.HasPrefix(key, "["):
		return base + key
	default:
		return base + "." + key
	}
}

// mapKey is how a map's key is written in a key path: as is when it is a
// plain word, else quoted in brackets (events["Order Completed"]).
func mapKey(base, k string) string {
	if plainKey.MatchString(k) {
		return joinPath(base, k)
	}
	return base + "[" + strconv.Quote(k) + "]"
}

var plainKey = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*$`)

// value reads n as shape s; path is the full key path for errors, rel the
// path under the resource (for its lines).
func (p *parser) value(s *shape, n *yaml.Node, path, rel string) (any, bool) {
	if p.res != nil && rel != "" {
		p.res.lines[rel] = n.Line
	}
	if n.Kind == yaml.AliasNode {
		p.fail(n, path, "anchors and aliases are not supported; write the value out")
		return nil, false
	}
	switch s.typ {
	case tString:
		if n.Kind != yaml.ScalarNode || isNull(n) {
			p.fail(n, path, "must be a string")
			return nil, false
		}
		v := strings.TrimSpace(n.Value)
		if len(s.enum) > 0 && !contains(s.enum, v) {
			p.fail(n, path, "unknown %s %q; known: %s", s.what(), v, strings.Join(s.enum, ", "))
			return nil, false
		}
		return v, true
	case tNumber, tInt:
		if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!int" && n.ShortTag() != "!!float") {
			p.fail(n, path, "must be a number")
			return nil, false
		}
		f, err := strconv.ParseFloat(strings.ReplaceAll(n.Value, "_", ""), 64)
		if err != nil {
			if i, ierr := strconv.ParseInt(strings.ReplaceAll(n.Value, "_", ""), 0, 64); ierr == nil {
				f, err = float64(i), nil
			}
		}
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			p.fail(n, path, "must be a finite number")
			return nil, false
		}
		if s.typ == tInt && f != math.Trunc(f) {
			p.fail(n, path, "must be a whole number")
			return nil, false
		}
		return f, true
	case tList:
		if n.Kind != yaml.SequenceNode {
			p.fail(n, path, "must be a list")
			return nil, false
		}
		out := make([]any, 0, len(n.Content))
		ok := true
		for i, c := range n.Content {
			v, vok := p.value(s.elem, c, fmt.Sprintf("%s[%d]", path, i), fmt.Sprintf("%s[%d]", rel, i))
			ok = ok && vok
			out = append(out, v)
		}
		if ok && s.unique {
			out = dedupe(out)
		}
		return out, ok
	case tObject, tMap:
		if n.Kind != yaml.MappingNode {
			p.fail(n, path, "must be a mapping")
			return nil, false
		}
		out := map[string]any{}
		ok := true
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, c := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode || isNull(k) {
				p.fail(k, path, "keys must be strings")
				ok = false
				continue
			}
			if _, dup := out[k.Value]; dup {
				p.fail(k, mapKey(path, k.Value), "given twice")
				ok = false
				continue
			}
			fs := s.elem
			if s.typ == tObject {
				f := s.field(k.Value)
				if f == nil {
					p.fail(k, path, "unknown key %q; known: %s", k.Value, strings.Join(s.keys(), ", "))
					ok = false
					continue
				}
				fs = f.shape
			}
			if isNull(c) && s.typ == tObject {
				out[k.Value] = nil // no value: not declared
				continue
			}
			var relK string
			if rel == "" {
				relK = k.Value
			} else {
				relK = mapKey(rel, k.Value)
			}
			v, vok := p.value(fs, c, mapKey(path, k.Value), relK)
			ok = ok && vok
			out[k.Value] = v
		}
		for k, v := range out {
			if v == nil && s.typ == tObject {
				delete(out, k)
			}
		}
		if s.typ == tObject {
			for _, f := range s.fields {
				if _, has := out[f.name]; f.required && !has && ok {
					p.fail(n, joinPath(path, f.name), "is required")
					ok = false
				}
			}
		}
		return out, ok
	case tJSON:
		return p.anyValue(n, path)
	}
	p.fail(n, path, "unexpected value")
	return nil, false
}

// anyValue reads any YAML value as the JSON value it stands for.
func (p *parser) anyValue(n *yaml.Node, path string) (any, bool) {
	switch n.Kind {
	case yaml.AliasNode:
		p.fail(n, path, "anchors and aliases are not supported; write the value out")
		return nil, false
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return nil, true
		case "!!bool":
			b, err := strconv.ParseBool(n.Value)
			if err != nil {
				p.fail(n, path, "is not true or false")
				return nil, false
			}
			return b, true
		case "!!int", "!!float":
			f, err := strconv.ParseFloat(strings.ReplaceAll(n.Value, "_", ""), 64)
			if err != nil {
				i, ierr := strconv.ParseInt(strings.ReplaceAll(n.Value, "_", ""), 0, 64)
				if ierr != nil {
					p.fail(n, path, "is not a number JSON can hold")
					return nil, false
				}
				f = float64(i)
			}
			if math.IsNaN(f) || math.IsInf(f, 0) {
				p.fail(n, path, "is not a number JSON can hold")
				return nil, false
			}
			return f, true
		case "!!str":
			return n.Value, true
		default:
			p.fail(n, path, "has tag %s, which JSON cannot hold", n.ShortTag())
			return nil, false
		}
	case yaml.SequenceNode:
		out := make([]any, 0, len(n.Content))
		for i, c := range n.Content {
			v, ok := p.anyValue(c, fmt.Sprintf("%s[%d]", path, i))
			if !ok {
				return nil, false
			}
			out = append(out, v)
		}
		return out, true
	case yaml.MappingNode:
		out := map[string]any{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, c := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode || isNull(k) {
				p.fail(k, path, "keys must be strings")
				return nil, false
			}
			if _, dup := out[k.Value]; dup {
				p.fail(k, mapKey(path, k.Value), "given twice")
				return nil, false
			}
			v, ok := p.anyValue(c, mapKey(path, k.Value))
			if !ok {
				return nil, false
			}
			out[k.Value] = v
		}
		return out, true
	}
	p.fail(n, path, "unexpected value")
	return nil, false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func dedupe(list []any) []any {
	out := list[:0]
	seen := map[any]bool{}
	for _, v := range list {
		if seen[v] {
			continue
		}
		seen[v] = true
		out = append(out, v)
	}
	return out
}
