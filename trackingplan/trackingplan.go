// Package trackingplan keeps each source's tracking plan and checks events
// against it. A plan says, per event, which JSON Schema its properties and
// its traits must satisfy, and what happens to events the plan does not
// name (allowed, flagged or blocked).
//
// Plans are versioned: each [Store.Put] adds a version, and the newest one
// is in force. A [Checker] compiles a plan version once and keeps it; the
// events of sources without a plan pass without a look-up.
//
// Track events are planned by their event name; other calls by their type
// ("identify", "page", "screen", "group", "alias"). An identify call's
// traits are its "traits"; any other call's are its "context.traits".
//
// The [Store] keeps its tables in a [statestore.DB]; apply [Migrations]
// with [statestore.DB.Migrate] before use.
package trackingplan

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"golang.org/x/text/language"
	"golang.org/x/text/message"

	"tandem/event"
	"tandem/metrics"
	"tandem/statestore"
)

// FieldError is the input error naming the offending JSON field.
type FieldError = statestore.FieldError

// Rules for events a plan does not name.
const (
	Allow = "allow" // stored as usual
	Flag  = "flag"  // stored, counted and listed as unplanned
	Block = "block" // quarantined with code unplanned_event
)

// Quarantine codes of events that fail a plan.
const (
	CodeViolation = "plan_violation"
	CodeUnplanned = "unplanned_event"
)

// EventPlan is the plan of one event: a JSON Schema for its properties and
// one for its traits. A missing schema accepts anything.
type EventPlan struct {
	Properties json.RawMessage `json:"properties,omitempty"`
	Traits     json.RawMessage `json:"traits,omitempty"`
}

// Plan is a source's tracking plan.
type Plan struct {
	SourceID  string               `json:"sourceId"`
	Version   int64                `json:"version"`
	Unplanned string               `json:"unplanned"` // Allow, Flag or Block
	Events    map[string]EventPlan `json:"events"`
	CreatedAt time.Time            `json:"createdAt"`
	CreatedBy string               `json:"createdBy,omitempty"`
}

// compiled is a plan ready for checking.
type compiled struct {
	version   int64
	unplanned string
	events    map[string]compiledEvent
}

type compiledEvent struct {
	properties, traits *jsonschema.Schema
}

// Validate checks p's rule and compiles its schemas, naming the offending
// field in a *[FieldError].
func Validate(p Plan) error {
	_, err := compile(p)
	return err
}

func compile(p Plan) (*compiled, error) {
	switch p.Unplanned {
	case Allow, Flag, Block:
	default:
		return nil, &FieldError{Field: "unplanned", Message: `must be "allow", "flag" or "block"`}
	}
	c := &compiled{version: p.Version, unplanned: p.Unplanned, events: make(map[string]compiledEvent, len(p.Events))}
	for name, ep := range p.Events {
		if strings.TrimSpace(name) == "" {
			return nil, &FieldError{Field: "events", Message: "an event name must not be empty"}
		}
		var ce compiledEvent
		var err error
		for part, raw := range map[string]json.RawMessage{"properties": ep.Properties, "traits": ep.Traits} {
			if err := checkCategories(raw, "events."+name+"."+part); err != nil {
				return nil, err
			}
		}
		if ce.properties, err = compileSchema(ep.Properties, "events."+name+".properties"); err != nil {
			return nil, err
		}
		if ce.traits, err = compileSchema(ep.Traits, "events."+name+".traits"); err != nil {
			return nil, err
		}
		c.events[name] = ce
	}
	return c, nil
}

func compileSchema(raw json.RawMessage, field string) (*jsonschema.Schema, error) {
	if len(bytes.TrimSpace(raw)) == 0 || string(bytes.TrimSpace(raw)) == "null" {
		return nil, nil
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, &FieldError{Field: field, Message: "not JSON: " + err.Error()}
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	// "format" (email, date-time, uri, …) is checked, not just noted: a
	// plan that says email means an e-mail address.
	c.AssertFormat()
	// No remote or file references: a plan is self-contained.
	c.UseLoader(noLoader{})
	const loc = "plan.json"
	if err := c.AddResource(loc, doc); err != nil {
		return nil, &FieldError{Field: field, Message: "not a JSON Schema: " + err.Error()}
	}
	s, err := c.Compile(loc)
	if err != nil {
		return nil, &FieldError{Field: field, Message: "not a valid JSON Schema: " + err.Error()}
	}
	return s, nil
}

type noLoader struct{}

func (noLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("references to %s are not allowed in a tracking plan", url)
}

var printer = message.NewPrinter(language.English)

// violation renders the first leaf of a validation error as a field path
// under prefix and a reason, e.g. "properties.price", "got string, want number".
func violation(prefix string, err error) (string, string) {
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return prefix, err.Error()
	}
	for len(ve.Causes) > 0 {
		ve = ve.Causes[0]
	}
	field := prefix
	for _, seg := range ve.InstanceLocation {
		field += "." + seg
	}
	msg := err.Error()
	if ve.ErrorKind != nil {
		msg = ve.ErrorKind.LocalizedString(printer)
	}
	return field, msg
}

// Store keeps tracking plans.
type Store struct {
	db  *statestore.DB
	gen atomic.Uint64 // bumped by every Put, so this node's checkers see it at once
}

// NewStore returns a Store over db, whose [Migrations] must be applied.
func NewStore(db *statestore.DB) *Store { return &Store{db: db} }

// Migrations returns the package's schema migrations.
func Migrations() []statestore.Migration {
	return []statestore.Migration{{
		Package: "trackingplan",
		Version: 1,
		SQL: `
CREATE TABLE trackingplan_versions (
	source_id TEXT NOT NULL,
	version BIGINT NOT NULL,
	body TEXT NOT NULL,
	created_at BIGINT NOT NULL,
	created_by TEXT NOT NULL,
	PRIMARY KEY (source_id, version)
);
CREATE TABLE trackingplan_unplanned (
	source_id TEXT NOT NULL,
	name TEXT NOT NULL,
	seen BIGINT NOT NULL,
	last_seen BIGINT NOT NULL,
	PRIMARY KEY (source_id, name)
);`,
	}}
}

type body struct {
	Unplanned string               `json:"unplanned"`
	Events    map[string]EventPlan `json:"events"`
}

// Put stores p as the newest version of its source's plan and returns it
// with its version and time. An invalid plan gives a *[FieldError].
func (s *Store) Put(ctx context.Context, p Plan) (Plan, error) {
	if p.Events == nil {
		p.Events = map[string]EventPlan{}
	}
	if err := Validate(p); err != nil {
		return Plan{}, fmt.Errorf("trackingplan: put: %w", err)
	}
	b, err := json.Marshal(body{Unplanned: p.Unplanned, Events: p.Events})
	if err != nil {
		return Plan{}, fmt.Errorf("trackingplan: put: %w", err)
	}
	p.CreatedAt = time.Now().UTC().Truncate(time.Microsecond)
	err = s.db.Tx(ctx, func(tx *statestore.Tx) error {
		var v int64
		if err := tx.QueryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM trackingplan_versions WHERE source_id = ?`, p.SourceID).Scan(&v); err != nil {
			return err
		}
		p.Version = v + 1
		_, err := tx.Exec(ctx, `INSERT INTO trackingplan_versions (source_id, version, body, created_at, created_by) VALUES (?, ?, ?, ?, ?)`,
			p.SourceID, p.Version, string(b), statestore.TimeToDB(p.CreatedAt), p.CreatedBy)
		return err
	})
	if err != nil {
		return Plan{}, fmt.Errorf("trackingplan: put plan of %q: %w", p.SourceID, err)
	}
	s.gen.Add(1)
	return p, nil
}

func scanPlan(r interface{ Scan(...any) error }) (Plan, error) {
	var p Plan
	var b string
	var created int64
	if err := r.Scan(&p.SourceID, &p.Version, &b, &created, &p.CreatedBy); err != nil {
		return Plan{}, err
	}
	var bd body
	if err := json.Unmarshal([]byte(b), &bd); err != nil {
		return Plan{}, err
	}
	p.Unplanned, p.Events = bd.Unplanned, bd.Events
	if p.Events == nil {
		p.Events = map[string]EventPlan{}
	}
	p.CreatedAt = statestore.TimeFromDB(created)
	return p, nil
}

const planColumns = `source_id, version, body, created_at, created_by`

// Get returns the plan in force for sourceID (version 0) or the given
// version, or an error matching [statestore.ErrNotFound].
func (s *Store) Get(ctx context.Context, sourceID string, version int64) (Plan, error) {
	q := `SELECT ` + planColumns + ` FROM trackingplan_versions WHERE source_id = ?`
	args := []any{sourceID}
	if version > 0 {
		q += ` AND version = ?`
		args = append(args, version)
	} else {
		q += ` ORDER BY version DESC LIMIT 1`
	}
	p, err := scanPlan(s.db.QueryRow(ctx, q, args...))
	if err != nil {
		return Plan{}, fmt.Errorf("trackingplan: get plan of %q: %w", sourceID, err)
	}
	return p, nil
}

// List returns the plan in force of every source that has one, by source id.
func (s *Store) List(ctx context.Context) ([]Plan, error) {
	rows, err := s.db.Query(ctx, `SELECT `+planColumns+` FROM trackingplan_versions v
		WHERE version = (SELECT MAX(version) FROM trackingplan_versions w WHERE w.source_id = v.source_id)
		ORDER BY source_id`)
	if err != nil {
		return nil, fmt.Errorf("trackingplan: list: %w", err)
	}
	defer rows.Close()
	out := []Plan{}
	for rows.Next() {
		p, err := scanPlan(rows)
		if err != nil {
			return nil, fmt.Errorf("trackingplan: list: %w", err)
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("trackingplan: list: %w", err)
	}
	return out, nil
}

// Unplanned is an event name a source sent that its plan does not name,
// under the rule "flag".
type Unplanned struct {
	Name     string    `json:"name"`
	Seen     int64     `json:"seen"`
	LastSeen time.Time `json:"lastSeen"`
}

// UnplannedEvents lists the flagged event names of sourceID, most seen first.
func (s *Store) UnplannedEvents(ctx context.Context, sourceID string) ([]Unplanned, error) {
	rows, err := s.db.Query(ctx, `SELECT name, seen, last_seen FROM trackingplan_unplanned WHERE source_id = ? ORDER BY seen DESC, name LIMIT 1000`, sourceID)
	if err != nil {
		return nil, fmt.Errorf("trackingplan: unplanned: %w", err)
	}
	defer rows.Close()
	out := []Unplanned{}
	for rows.Next() {
		var u Unplanned
		var last int64
		if err := rows.Scan(&u.Name, &u.Seen, &last); err != nil {
			return nil, fmt.Errorf("trackingplan: unplanned: %w", err)
		}
		u.LastSeen = statestore.TimeFromDB(last)
		out = append(out, u)
	}
	return out, rows.Err()
}

func (s *Store) flag(ctx context.Context, counts map[[2]string]int64) error {
	if len(counts) == 0 {
		return nil
	}
	now := statestore.TimeToDB(time.Now())
	return s.db.Tx(ctx, func(tx *statestore.Tx) error {
		for k, n := range counts {
			if _, err := tx.Exec(ctx, `INSERT INTO trackingplan_unplanned (source_id, name, seen, last_seen) VALUES (?, ?, ?, ?)
				ON CONFLICT (source_id, name) DO UPDATE SET seen = trackingplan_unplanned.seen + excluded.seen, last_seen = excluded.last_seen`,
				k[0], k[1], n, now); err != nil {
				return err
			}
		}
		return nil
	})
}

// Checker checks events against the plans in force. Safe for concurrent use.
type Checker struct {
	store   *Store
	ttl     time.Duration
	flagged *metrics.Counter

	mu       sync.Mutex
	gen      uint64
	loadedAt time.Time
	versions map[string]int64     // source → version in force
	plans    map[string]*compiled // source → compiled plan of that version
	pending  map[[2]string]int64  // (source, name) → flagged since the last Flush
}

// NewChecker returns a Checker over s. Plans put through s are seen at
// once; plans put by other nodes within refresh (default 2s). m (nil for
// none) gets the counter of flagged events.
func NewChecker(s *Store, refresh time.Duration, m *metrics.Registry) *Checker {
	if refresh <= 0 {
		refresh = 2 * time.Second
	}
	if m == nil {
		m = metrics.NewRegistry()
	}
	return &Checker{store: s, ttl: refresh, plans: map[string]*compiled{},
		flagged: m.NewCounter("tandem_trackingplan_events_flagged_total", "Events stored although their source's tracking plan does not name them (rule flag).")}
}

// Check keeps the events that pass their source's plan (or have none) and
// returns the problems of the others, for the quarantine: the pipeline's
// step.
func (c *Checker) Check(ctx context.Context, events []event.Event) ([]event.Event, []event.Problem, error) {
	res, err := c.CheckAll(ctx, events)
	return res.Keep, res.Problems, err
}

// Result is what [Checker.Check] found.
type Result struct {
	Keep     []event.Event   // events to store (planned and valid, allowed or flagged)
	Problems []event.Problem // events to quarantine, with the reason and field
	Flagged  int             // unplanned events kept under the rule "flag"
}

// CheckAll sorts events into those to keep and those that fail their
// source's plan. Events of sources without a plan are kept as they are.
func (c *Checker) CheckAll(ctx context.Context, events []event.Event) (Result, error) {
	if err := c.refresh(ctx); err != nil {
		return Result{}, err
	}
	c.mu.Lock()
	versions := c.versions
	c.mu.Unlock()
	if len(versions) == 0 {
		return Result{Keep: events}, nil
	}
	res := Result{Keep: events[:0:0]}
	var flagged map[[2]string]int64
	for i := range events {
		e := &events[i]
		v, ok := versions[e.SourceID]
		if !ok {
			res.Keep = append(res.Keep, *e)
			continue
		}
		plan, err := c.plan(ctx, e.SourceID, v)
		if err != nil {
			return Result{}, err
		}
		name := planName(e)
		ep, planned := plan.events[name]
		if !planned {
			switch plan.unplanned {
			case Block:
				res.Problems = append(res.Problems, problem(e, CodeUnplanned, nameField(e),
					fmt.Sprintf("event %q is not in the tracking plan (version %d) of its source", name, plan.version)))
				continue
			case Flag:
				if flagged == nil {
					flagged = map[[2]string]int64{}
				}
				flagged[[2]string{e.SourceID, name}]++
				res.Flagged++
			}
			res.Keep = append(res.Keep, *e)
			continue
		}
		if field, msg, bad := checkEvent(e, ep); bad {
			res.Problems = append(res.Problems, problem(e, CodeViolation, field,
				fmt.Sprintf("%s: %s (tracking plan version %d)", field, msg, plan.version)))
			continue
		}
		res.Keep = append(res.Keep, *e)
	}
	if len(flagged) > 0 {
		c.mu.Lock()
		if c.pending == nil {
			c.pending = map[[2]string]int64{}
		}
		for k, n := range flagged {
			c.pending[k] += n
		}
		c.mu.Unlock()
	}
	c.flagged.Add(uint64(res.Flagged))
	return res, nil
}

// Flush records the unplanned events flagged since the last flush (the
// list of [Store.UnplannedEvents]) in one transaction; the pipeline calls
// it once per batch. What a failed flush held is kept for the next one.
func (c *Checker) Flush(ctx context.Context) error {
	c.mu.Lock()
	pending := c.pending
	c.pending = nil
	c.mu.Unlock()
	if err := c.store.flag(ctx, pending); err != nil {
		c.mu.Lock()
		if c.pending == nil {
			c.pending = map[[2]string]int64{}
		}
		for k, n := range pending {
			c.pending[k] += n
		}
		c.mu.Unlock()
		return fmt.Errorf("trackingplan: record unplanned events: %w", err)
	}
	return nil
}

func problem(e *event.Event, code, field, msg string) event.Problem {
	return event.Problem{SourceID: e.SourceID, MessageID: e.MessageID, ReceivedAt: e.ReceivedAt,
		Code: code, Field: field, Message: msg, Raw: e.Raw,
		// The event passed collection as this type; a replay parses it so
		// (events of single-event endpoints carry no "type").
		Type: e.Type}
}

// planName is the name an event is planned under.
func planName(e *event.Event) string {
	if e.Type == "track" {
		return e.Name
	}
	return e.Type
}

func nameField(e *event.Event) string {
	if e.Type == "track" {
		return "event"
	}
	return "type"
}

// checkEvent validates e's properties and traits; it reports the first
// violation's field and reason.
func checkEvent(e *event.Event, ep compiledEvent) (string, string, bool) {
	if ep.properties == nil && ep.traits == nil {
		return "", "", false
	}
	var raw struct {
		Properties json.RawMessage `json:"properties"`
		Traits     json.RawMessage `json:"traits"`
		Context    struct {
			Traits json.RawMessage `json:"traits"`
		} `json:"context"`
	}
	if err := json.Unmarshal(e.Raw, &raw); err != nil {
		return "", "event not readable: " + err.Error(), true
	}
	if ep.properties != nil {
		if f, m, bad := validate(ep.properties, raw.Properties, "properties"); bad {
			return f, m, true
		}
	}
	if ep.traits != nil {
		traits, prefix := raw.Context.Traits, "context.traits"
		if e.Type == "identify" {
			traits, prefix = raw.Traits, "traits"
		}
		if f, m, bad := validate(ep.traits, traits, prefix); bad {
			return f, m, true
		}
	}
	return "", "", false
}

func validate(s *jsonschema.Schema, raw json.RawMessage, prefix string) (string, string, bool) {
	var v any = map[string]any{} // absent: an empty object
	if len(raw) > 0 && string(raw) != "null" {
		var err error
		if v, err = jsonschema.UnmarshalJSON(bytes.NewReader(raw)); err != nil {
			return prefix, "not JSON: " + err.Error(), true
		}
	}
	if err := s.Validate(v); err != nil {
		f, m := violation(prefix, err)
		return f, m, true
	}
	return "", "", false
}

// refresh reloads which plan version is in force per source when a Put
// happened on this node or the refresh interval passed.
func (c *Checker) refresh(ctx context.Context) error {
	c.mu.Lock()
	gen := c.store.gen.Load()
	fresh := c.versions != nil && gen == c.gen && time.Since(c.loadedAt) < c.ttl
	c.mu.Unlock()
	if fresh {
		return nil
	}
	rows, err := c.store.db.Query(ctx, `SELECT source_id, MAX(version) FROM trackingplan_versions GROUP BY source_id`)
	if err != nil {
		return fmt.Errorf("trackingplan: load versions: %w", err)
	}
	defer rows.Close()
	versions := map[string]int64{}
	for rows.Next() {
		var src string
		var v int64
		if err := rows.Scan(&src, &v); err != nil {
			return fmt.Errorf("trackingplan: load versions: %w", err)
		}
		versions[src] = v
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("trackingplan: load versions: %w", err)
	}
	c.mu.Lock()
	c.versions, c.gen, c.loadedAt = versions, gen, time.Now()
	c.mu.Unlock()
	return nil
}

// plan returns the compiled plan version v of source, compiling it once.
func (c *Checker) plan(ctx context.Context, source string, v int64) (*compiled, error) {
	c.mu.Lock()
	p := c.plans[source]
	c.mu.Unlock()
	if p != nil && p.version == v {
		return p, nil
	}
	stored, err := c.store.Get(ctx, source, v)
	if err != nil {
		return nil, err
	}
	p, err = compile(stored)
	if err != nil {
		return nil, fmt.Errorf("trackingplan: compile plan %d of %q: %w", v, source, err)
	}
	c.mu.Lock()
	c.plans[source] = p
	c.mu.Unlock()
	return p, nil
}

// Draft infers a plan from sample events (a source's recent ones): per
// planned name, an object schema listing each property's and trait's JSON
// types. Nothing is required; the user tightens it before putting it.
func Draft(sourceID string, events []event.Event) Plan {
	type acc struct{ props, traits map[string]map[string]bool }
	names := map[string]*acc{}
	add := func(m map[string]map[string]bool, obj map[string]any) {
		for k, v := range obj {
			if m[k] == nil {
				m[k] = map[string]bool{}
			}
			m[k][jsonType(v)] = true
		}
	}
	for i := range events {
		e := &events[i]
		var raw struct {
			Properties map[string]any `json:"properties"`
			Traits     map[string]any `json:"traits"`
			Context    struct {
				Traits map[string]any `json:"traits"`
			} `json:"context"`
		}
		_ = json.Unmarshal(e.Raw, &raw)
		n := planName(e)
		a := names[n]
		if a == nil {
			a = &acc{props: map[string]map[string]bool{}, traits: map[string]map[string]bool{}}
			names[n] = a
		}
		add(a.props, raw.Properties)
		if e.Type == "identify" {
			add(a.traits, raw.Traits)
		} else {
			add(a.traits, raw.Context.Traits)
		}
	}
	p := Plan{SourceID: sourceID, Unplanned: Flag, Events: map[string]EventPlan{}}
	for n, a := range names {
		var ep EventPlan
		if len(a.props) > 0 {
			ep.Properties = objectSchema(a.props)
		}
		if len(a.traits) > 0 {
			ep.Traits = objectSchema(a.traits)
		}
		p.Events[n] = ep
	}
	return p
}

func objectSchema(fields map[string]map[string]bool) json.RawMessage {
	props := map[string]any{}
	for k, types := range fields {
		ts := make([]string, 0, len(types))
		for t := range types {
			ts = append(ts, t)
		}
		sort.Strings(ts)
		if len(ts) == 1 {
			props[k] = map[string]any{"type": ts[0]}
		} else {
			props[k] = map[string]any{"type": ts}
		}
	}
	b, _ := json.Marshal(map[string]any{"type": "object", "properties": props})
	return b
}

func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case float64, json.Number:
		// Integers are numbers too: "number" does not refuse 9.99 later.
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	default:
		return "object"
	}
}

// CategoryKeyword is the schema annotation that tags a field with a data
// category: {"properties": {"email": {"type": "string", "x-category": "contact"}}}.
const CategoryKeyword = "x-category"

// Categories lists the fields the plan's schemas tag with a data
// category (CategoryKeyword on a member of a schema's top-level
// "properties"): path (properties.NAME or traits.NAME) → category.
func (p Plan) Categories() map[string]string {
	out := map[string]string{}
	for _, ep := range p.Events {
		for prefix, raw := range map[string]json.RawMessage{"properties": ep.Properties, "traits": ep.Traits} {
			for name, cat := range schemaCategories(raw) {
				out[prefix+"."+name] = cat
			}
		}
	}
	return out
}

// schemaCategories reads the x-category of each member of a schema's
// top-level properties.
func schemaCategories(raw json.RawMessage) map[string]string {
	var s struct {
		Properties map[string]map[string]json.RawMessage `json:"properties"`
	}
	if len(raw) == 0 || json.Unmarshal(raw, &s) != nil {
		return nil
	}
	out := map[string]string{}
	for name, member := range s.Properties {
		var cat string
		if json.Unmarshal(member[CategoryKeyword], &cat) == nil && strings.TrimSpace(cat) != "" {
			out[name] = strings.TrimSpace(cat)
		}
	}
	return out
}

// checkCategories refuses an x-category that is not a name.
func checkCategories(raw json.RawMessage, field string) error {
	var s struct {
		Properties map[string]map[string]json.RawMessage `json:"properties"`
	}
	if len(raw) == 0 || json.Unmarshal(raw, &s) != nil {
		return nil
	}
	for name, member := range s.Properties {
		v, ok := member[CategoryKeyword]
		if !ok {
			continue
		}
		var cat string
		if json.Unmarshal(v, &cat) != nil || strings.TrimSpace(cat) == "" || len(cat) > 100 {
			return &FieldError{Field: field + ".properties." + name + "." + CategoryKeyword, Message: "must be a data category name (contact, sensitive, payment, …) of 1 to 100 bytes"}
		}
	}
	return nil
}
