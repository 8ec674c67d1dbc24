package imports

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"time"
	_ "time/tzdata" // time zones named in mappings must resolve on hosts without a zoneinfo database

	"gopkg.in/yaml.v3"
)

// MaxMappingBytes is the largest mapping document accepted.
const MaxMappingBytes = 64 << 10

// Mapping says how the rows of a file become events. It is written as a
// small YAML or JSON document (see docs/import.md); [ParseMapping] reads
// and checks it. A Mapping is not yet tied to a file: [Mapping.bind]
// resolves its column names against a CSV header or NDJSON paths.
type Mapping struct {
	Format      string // csv or ndjson; "" leaves it to the caller
	CSV         CSVOptions
	Type        string // track or identify
	Event       Value  // the event name: fixed or from a column (track only)
	Key         []string
	Timestamp   TimeSpec
	UserID      Value // column holding the userId, if any
	Identifiers []Field
	Traits      []Field
	Properties  []Field
	Channel     Value // e.g. call-centre: fixed or from a column
	Department  Value // e.g. service: fixed or from a column
	// Consent maps purposes to columns of consent decisions (booleans):
	// the events carry them as context.consent.categoryPreferences, and
	// an empty cell is no decision (see docs/privacy.md).
	Consent []Field

	// source is the document as given, kept for the import's record.
	source []byte
}

// CSVOptions are the CSV dialect of a file.
type CSVOptions struct {
	Delimiter rune   // ',' unless set
	Encoding  string // utf-8, latin-1 or windows-1252
	Decimal   byte   // '.' unless set to ','
}

// Value is where one value comes from: a column of the row, or a fixed
// value the same for every row.
type Value struct {
	Column   string
	Fixed    string
	HasFixed bool
	Type     string // string (default for CSV), number, integer, boolean; "" keeps NDJSON values as they are
	Required bool   // an empty cell fails the row
}

func (v Value) set() bool { return v.Column != "" || v.HasFixed }

// Field is a named value: an identifier (name is its type), a trait or a
// property.
type Field struct {
	Name string
	Value
	path string // mapping path, for errors
}

// TimeSpec is where the event time comes from and how to read it.
type TimeSpec struct {
	Column   string
	Format   string // rfc3339 (default), unix, unix_ms, a pattern such as DD.MM.YYYY hh:mm, or a Go layout
	Timezone string // IANA name for times without an offset; UTC by default
	layout   string
	loc      *time.Location
}

// MappingError is a mistake in a mapping document; Field names the key,
// e.g. "mapping.timestamp.format".
type MappingError struct {
	Field   string
	Message string
}

func (e *MappingError) Error() string { return e.Field + ": " + e.Message }

func merr(field, format string, args ...any) *MappingError {
	return &MappingError{Field: field, Message: fmt.Sprintf(format, args...)}
}

// Encodings accepted for CSV files.
const (
	EncodingUTF8    = "utf-8"
	EncodingLatin1  = "latin-1"
	EncodingWin1252 = "windows-1252"
)

// NormalizeEncoding returns the canonical name of an encoding, or "" if it
// is not supported.
func NormalizeEncoding(s string) string {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "utf-8", "utf8":
		return EncodingUTF8
	case "latin-1", "latin1", "iso-8859-1", "iso8859-1":
		return EncodingLatin1
	case "windows-1252", "cp1252":
		return EncodingWin1252
	}
	return ""
}

// ParseDelimiter reads a delimiter as written in a mapping or a flag: one
// character, or "tab" / "\t".
func ParseDelimiter(s string) (rune, bool) {
	switch s {
	case "":
		return ',', true
	case "tab", `\t`, "\t":
		return '\t', true
	}
	r := []rune(s)
	if len(r) != 1 || r[0] == '"' || r[0] == '\r' || r[0] == '\n' || r[0] == 0xFFFD {
		return 0, false
	}
	return r[0], true
}

var identTypeRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,39}$`)

// ParseMapping reads a mapping document, YAML or JSON (JSON is YAML), and
// checks it. Errors are *[MappingError]s naming the key.
func ParseMapping(doc []byte) (*Mapping, error) {
	if len(doc) > MaxMappingBytes {
		return nil, merr("mapping", "larger than %d KB", MaxMappingBytes>>10)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(doc, &root); err != nil {
		return nil, merr("mapping", "not valid YAML or JSON: %s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if len(root.Content) == 0 {
		return nil, merr("mapping", "is empty")
	}
	n := root.Content[0]
	if n.Kind != yaml.MappingNode {
		return nil, merr("mapping", "must be an object")
	}
	m := &Mapping{Type: "track", CSV: CSVOptions{Delimiter: ',', Encoding: EncodingUTF8, Decimal: '.'}, source: bytes.Clone(doc)}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i].Value, n.Content[i+1]
		path := "mapping." + k
		if seen[k] {
			return nil, merr(path, "given twice")
		}
		seen[k] = true
		var err error
		switch k {
		case "format":
			if m.Format, err = scalar(path, v); err == nil && m.Format != "csv" && m.Format != "ndjson" {
				err = merr(path, `must be "csv" or "ndjson"`)
			}
		case "csv":
			err = m.parseCSV(path, v)
		case "type":
			if m.Type, err = scalar(path, v); err == nil && m.Type != "track" && m.Type != "identify" {
				err = merr(path, `must be "track" or "identify"`)
			}
		case "event":
			m.Event, err = parseValue(path, v, true)
		case "key":
			m.Key, err = stringList(path, v)
		case "timestamp":
			err = m.parseTimestamp(path, v)
		case "user_id":
			m.UserID, err = parseValue(path, v, false)
		case "identifiers":
			m.Identifiers, err = parseFields(path, v)
		case "traits":
			m.Traits, err = parseFields(path, v)
		case "properties":
			m.Properties, err = parseFields(path, v)
		case "channel":
			m.Channel, err = parseValue(path, v, true)
		case "department":
			m.Department, err = parseValue(path, v, true)
		case "consent":
			m.Consent, err = parseFields(path, v)
		default:
			err = merr(path, "unknown key (want format, csv, type, event, key, timestamp, user_id, identifiers, traits, properties, channel, department, consent)")
		}
		if err != nil {
			return nil, err
		}
	}
	if err := m.check(); err != nil {
		return nil, err
	}
	return m, nil
}

// Source is the mapping document as it was given.
func (m *Mapping) Source() []byte { return m.source }

func (m *Mapping) check() error {
	if m.Type == "track" && !m.Event.set() {
		return merr("mapping.event", "required for track events: a fixed name (event: Call Centre Contact) or a column (event: {column: topic})")
	}
	if m.Type == "identify" {
		if m.Event.set() {
			return merr("mapping.event", "identify events have no name; remove it or use type: track")
		}
		if len(m.Properties) > 0 {
			return merr("mapping.properties", "identify events carry traits, not properties")
		}
	}
	if m.Timestamp.Column == "" {
		return merr("mapping.timestamp", "required: the column holding the event time (timestamp: {column: started_at, format: \"DD.MM.YYYY hh:mm\", timezone: Europe/Berlin})")
	}
	if !m.UserID.set() && len(m.Identifiers) == 0 {
		return merr("mapping.identifiers", "required: at least one identifier (identifiers: {email: customer_email}) or user_id")
	}
	if m.UserID.HasFixed {
		return merr("mapping.user_id", "must name a column, not a fixed value")
	}
	names := map[string]bool{}
	for _, f := range m.Identifiers {
		if !identTypeRE.MatchString(f.Name) {
			return merr(f.path, "identifier type must be lower-case letters, digits and _, starting with a letter")
		}
		if f.Name == "user_id" || f.Name == "anonymous_id" {
			return merr(f.path, "use the top-level user_id key for the userId")
		}
		if f.HasFixed {
			return merr(f.path, "an identifier must come from a column")
		}
		if f.Type != "" && f.Type != "string" {
			return merr(f.path+".type", "identifiers are strings")
		}
		names[f.Name] = true
	}
	for _, f := range m.Traits {
		if names[f.Name] {
			return merr(f.path, "is also an identifier; identifiers are written to the traits already")
		}
	}
	for _, list := range [][]Field{m.Identifiers, m.Traits, m.Properties, m.Consent} {
		for _, f := range list {
			if f.Name == "" {
				return merr(f.path, "empty name")
			}
		}
	}
	for i := range m.Consent {
		switch f := &m.Consent[i]; f.Type {
		case "":
			f.Type = "boolean"
		case "boolean":
		default:
			return merr(f.path+".type", "must be boolean: a consent decision is true or false")
		}
	}
	for _, v := range []struct {
		path string
		v    Value
	}{{"mapping.event", m.Event}, {"mapping.channel", m.Channel}, {"mapping.department", m.Department}, {"mapping.user_id", m.UserID}} {
		if v.v.Type != "" && v.v.Type != "string" {
			return merr(v.path+".type", "must be a string")
		}
	}
	if err := m.Timestamp.compile(); err != nil {
		return err
	}
	return nil
}

func (m *Mapping) parseCSV(path string, n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return merr(path, "must be an object with delimiter, encoding, decimal")
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i].Value, n.Content[i+1]
		p := path + "." + k
		s, err := scalar(p, v)
		if err != nil {
			return err
		}
		switch k {
		case "delimiter":
			r, ok := ParseDelimiter(s)
			if !ok {
				return merr(p, "must be one character (or \"tab\"), not a quote or line break")
			}
			m.CSV.Delimiter = r
		case "encoding":
			if m.CSV.Encoding = NormalizeEncoding(s); m.CSV.Encoding == "" {
				return merr(p, "unsupported encoding %q: want utf-8, latin-1 or windows-1252", s)
			}
		case "decimal":
			if s != "." && s != "," {
				return merr(p, `must be "." or ","`)
			}
			m.CSV.Decimal = s[0]
		default:
			return merr(p, "unknown key (want delimiter, encoding, decimal)")
		}
	}
	return nil
}

func (m *Mapping) parseTimestamp(path string, n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		m.Timestamp.Column = n.Value
		return nil
	}
	if n.Kind != yaml.MappingNode {
		return merr(path, "must be a column name or an object with column, format, timezone")
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i].Value, n.Content[i+1]
		p := path + "." + k
		s, err := scalar(p, v)
		if err != nil {
			return err
		}
		switch k {
		case "column":
			m.Timestamp.Column = s
		case "format":
			m.Timestamp.Format = s
		case "timezone":
			m.Timestamp.Timezone = s
		default:
			return merr(p, "unknown key (want column, format, timezone)")
		}
	}
	return nil
}

// compile checks the time format and zone.
func (t *TimeSpec) compile() error {
	t.loc = time.UTC
	if t.Timezone != "" {
		loc, err := time.LoadLocation(t.Timezone)
		if err != nil || t.Timezone == "Local" {
			return merr("mapping.timestamp.timezone", "unknown time zone %q: use an IANA name such as Europe/Berlin or UTC", t.Timezone)
		}
		t.loc = loc
	}
	switch f := strings.ToLower(t.Format); f {
	case "", "rfc3339", "iso8601":
		t.layout = "rfc3339"
	case "unix", "unix_ms":
		t.layout = f
	default:
		layout, err := patternLayout(t.Format)
		if err != nil {
			return merr("mapping.timestamp.format", "%s", err.Error())
		}
		t.layout = layout
	}
	return nil
}

// patternLayout turns a pattern such as "DD.MM.YYYY hh:mm" into a Go time
// layout. A pattern that already is a Go layout (it holds 2006) is kept.
func patternLayout(p string) (string, error) {
	if strings.Contains(p, "2006") {
		return p, nil
	}
	tokens := []struct{ tok, go_ string }{
		{"YYYY", "2006"}, {"YY", "06"}, {"MM", "01"}, {"M", "1"}, {"DD", "02"}, {"D", "2"},
		{"hh", "15"}, {"HH", "15"}, {"mm", "04"}, {"ss", "05"}, {"SSS", "000"}, {"Z", "Z07:00"},
	}
	var b strings.Builder
	hasYear, hasDay := false, false
	for i := 0; i < len(p); {
		matched := false
		for _, t := range tokens {
			if strings.HasPrefix(p[i:], t.tok) {
				b.WriteString(t.go_)
				i += len(t.tok)
				matched = true
				hasYear = hasYear || t.tok[0] == 'Y'
				hasDay = hasDay || t.tok[0] == 'D'
				break
			}
		}
		if matched {
			continue
		}
		c := p[i]
		if c >= '0' && c <= '9' {
			return "", fmt.Errorf("pattern %q: digits are not allowed; use YYYY, MM, DD, hh, mm, ss, SSS, Z", p)
		}
		b.WriteByte(c)
		i++
	}
	if !hasYear || !hasDay {
		return "", fmt.Errorf("pattern %q needs at least YYYY (or YY), MM and DD; or use rfc3339, unix or unix_ms", p)
	}
	return b.String(), nil
}

// scalar reads a string value.
func scalar(path string, n *yaml.Node) (string, error) {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		return "", merr(path, "must be a string")
	}
	return n.Value, nil
}

func stringList(path string, n *yaml.Node) ([]string, error) {
	if n.Kind == yaml.ScalarNode {
		s, err := scalar(path, n)
		return []string{s}, err
	}
	if n.Kind != yaml.SequenceNode || len(n.Content) == 0 {
		return nil, merr(path, "must be a column name or a list of column names")
	}
	var out []string
	for i, c := range n.Content {
		s, err := scalar(fmt.Sprintf("%s[%d]", path, i), c)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// parseValue reads a value spec. A plain string is a fixed value when
// fixedShorthand (event, channel, department), else a column name.
func parseValue(path string, n *yaml.Node, fixedShorthand bool) (Value, error) {
	var v Value
	if n.Kind == yaml.ScalarNode && n.Tag != "!!null" {
		if fixedShorthand {
			v.Fixed, v.HasFixed = n.Value, true
		} else {
			v.Column = n.Value
		}
		if n.Value == "" {
			return v, merr(path, "empty")
		}
		return v, nil
	}
	if n.Kind != yaml.MappingNode {
		return v, merr(path, "must be a string or an object with column or value")
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, c := n.Content[i].Value, n.Content[i+1]
		p := path + "." + k
		switch k {
		case "column":
			s, err := scalar(p, c)
			if err != nil {
				return v, err
			}
			v.Column = s
		case "value":
			if c.Kind != yaml.ScalarNode {
				return v, merr(p, "must be a string, number or boolean")
			}
			v.Fixed, v.HasFixed = c.Value, true
		case "type":
			s, err := scalar(p, c)
			if err != nil {
				return v, err
			}
			switch s {
			case "string", "number", "integer", "boolean":
			default:
				return v, merr(p, `must be "string", "number", "integer" or "boolean"`)
			}
			v.Type = s
		case "required":
			if c.Kind != yaml.ScalarNode || (c.Value != "true" && c.Value != "false") {
				return v, merr(p, "must be true or false")
			}
			v.Required = c.Value == "true"
		default:
			return v, merr(p, "unknown key (want column, value, type, required)")
		}
	}
	if (v.Column == "") == !v.HasFixed {
		return v, merr(path, "give exactly one of column and value")
	}
	return v, nil
}

// parseFields reads an object of named values, keeping the document's
// order (the first identifier names the anonymousId).
func parseFields(path string, n *yaml.Node) ([]Field, error) {
	if n.Kind != yaml.MappingNode {
		return nil, merr(path, "must be an object of name: column")
	}
	var out []Field
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i].Value
		p := path + "." + k
		if seen[k] {
			return nil, merr(p, "given twice")
		}
		seen[k] = true
		v, err := parseValue(p, n.Content[i+1], false)
		if err != nil {
			return nil, err
		}
		out = append(out, Field{Name: k, Value: v, path: p})
	}
	return out, nil
}
