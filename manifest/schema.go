package manifest

import (
	"encoding/json"
	"errors"
	"strings"

	"tandem/access"
	"tandem/analytics"
	"tandem/audience"
	"tandem/delivery"
	"tandem/governance"
	"tandem/identity"
	"tandem/statestore"
	"tandem/trackingplan"
)

type valueType int

const (
	tString valueType = iota
	tNumber
	tInt
	tList
	tObject // known keys (fields)
	tMap    // any string keys, each value of elem
	tJSON   // any JSON value
)

// shape is what a value may be.
type shape struct {
	typ    valueType
	elem   *shape  // tList, tMap
	fields []field // tObject
	enum   []string
	noun   string // what an enum value is, for messages ("type")
	unique bool   // tList: duplicates are dropped, as the server does
	// partial: a map compared key by key, only the keys declared (a
	// destination's config, whose other keys the server fills in).
	partial bool
}

type field struct {
	name     string
	shape    *shape
	required bool
}

func (s *shape) field(name string) *field {
	for i := range s.fields {
		if s.fields[i].name == name {
			return &s.fields[i]
		}
	}
	return nil
}

func (s *shape) keys() []string {
	out := make([]string, len(s.fields))
	for i, f := range s.fields {
		out[i] = f.name
	}
	return out
}

func (s *shape) what() string {
	if s.noun != "" {
		return s.noun
	}
	return "value"
}

func str() *shape                          { return &shape{typ: tString} }
func enum(noun string, v ...string) *shape { return &shape{typ: tString, enum: v, noun: noun} }
func num() *shape                          { return &shape{typ: tNumber} }
func whole() *shape                        { return &shape{typ: tInt} }
func names() *shape                        { return &shape{typ: tList, elem: str(), unique: true} }
func list(elem *shape) *shape              { return &shape{typ: tList, elem: elem} }
func object(fs ...field) *shape            { return &shape{typ: tObject, fields: fs} }
func req(name string, s *shape) field      { return field{name: name, shape: s, required: true} }
func opt(name string, s *shape) field      { return field{name: name, shape: s} }

// Update is how a node changes a resource of a kind.
type Update int

const (
	// Patch sends the changed fields (PATCH …/{id}).
	Patch Update = iota
	// Put sends the whole resource (PUT …/{name}, or PUT of the
	// collection path for a kind with one resource).
	Put
	// Replace deletes the resource and creates it anew (computed traits:
	// recomputed from the stored events).
	Replace
)

// Kind is a kind of resource: its key in the file, its fields and how the
// management API keeps it.
type Kind struct {
	Key       string // the top-level key, e.g. "sources"
	Noun      string // for messages, e.g. "source"
	NameField string // the stable key's field ("name"; "source" for tracking plans)
	Singleton bool   // one per node (identity rules, lifecycle stages): a mapping, not a list
	// ChangeKind is the kind of change request a change of it is
	// (POST /api/v1/changes/preview), "" when changes are never held.
	ChangeKind string
	// Path is the API's collection (GET lists, POST creates, …/{id}
	// changes and deletes); for a singleton, GET reads and PUT sets it.
	Path   string
	Update Update
	// Paged: GET Path answers a page ({items, next}) and takes limit and
	// cursor.
	Paged bool
	shape *shape
	check func(r *Resource) (key, msg string)
	order int
}

var (
	// Sources are the systems that send data.
	Sources = &Kind{Key: "sources", Noun: "source", NameField: "name", ChangeKind: "source", Path: "/api/v1/sources", Paged: true,
		shape: object(req("name", str()), req("kind", str()), req("owner", str()), opt("purpose", str()),
			opt("dataCategories", names()), opt("monthlyCost", num()), opt("allowedOrigins", names())),
		check: checkSource}
	// Destinations are where events go.
	Destinations = &Kind{Key: "destinations", Noun: "destination", NameField: "name", ChangeKind: "destination", Path: "/api/v1/destinations", Paged: true,
		shape: object(req("name", str()), req("type", enum("type", delivery.TypeNames()...)),
			req("config", &shape{typ: tMap, elem: &shape{typ: tJSON}, partial: true}),
			opt("filter", object(opt("types", &shape{typ: tList, elem: enum("event type", "identify", "track", "page", "screen", "group", "alias"), unique: true}),
				opt("events", names()), opt("sources", names()))),
			opt("mapping", list(object(req("field", str()), req("action", enum("action", governance.MapDrop, governance.MapRename, governance.MapHash)), opt("to", str())))),
			req("owner", str()), opt("purpose", str()), opt("dataCategories", names()), opt("consentPurposes", names()), opt("monthlyCost", num())),
		check: checkDestination}
	// Users are the people and machines that use the management API.
	Users = &Kind{Key: "users", Noun: "user", NameField: "name", ChangeKind: "users", Path: "/api/v1/users", Paged: true,
		shape: object(req("name", str()), req("role", enum("role", roleNames()...)))}
	// TrackingPlans are sources' tracking plans, named by their source.
	TrackingPlans = &Kind{Key: "trackingPlans", Noun: "tracking plan", NameField: "source", ChangeKind: "tracking_plan", Path: "/api/v1/tracking-plans", Update: Put,
		shape: object(req("source", str()), opt("unplanned", enum("rule", trackingplan.Allow, trackingplan.Flag, trackingplan.Block)),
			opt("events", &shape{typ: tMap, elem: object(opt("properties", &shape{typ: tJSON}), opt("traits", &shape{typ: tJSON}))})),
		check: checkPlan}
	// ComputedTraits are values computed per profile from its events.
	ComputedTraits = &Kind{Key: "computedTraits", Noun: "computed trait", NameField: "name", Path: "/api/v1/computed-traits", Update: Replace,
		shape: object(req("name", str()), req("kind", enum("kind", audience.Kinds...)), req("event", str()), opt("property", str()), opt("window", str())),
		check: checkTrait}
	// Audiences are profiles selected by a rule.
	Audiences = &Kind{Key: "audiences", Noun: "audience", NameField: "name", Path: "/api/v1/audiences",
		shape: object(req("name", str()), req("rule", str()), opt("destinations", names())),
		check: checkAudience}
	// IdentityRules are the node's identity resolution rules.
	IdentityRules = &Kind{Key: "identity", Noun: "identity rules", Singleton: true, ChangeKind: "identity_rules", Path: "/api/v1/identity/rules", Update: Put,
		shape: object(opt("types", list(object(req("name", str()), opt("priority", whole()), opt("limit", whole())))),
			opt("blocked", list(str())), opt("phoneRegion", str()), opt("phoneCountryCode", str())),
		check: checkIdentity}
	// LifecycleStages are the journey's stages.
	LifecycleStages = &Kind{Key: "journey", Noun: "lifecycle stages", Singleton: true, ChangeKind: "lifecycle_stages", Path: "/api/v1/journey/stages", Update: Put,
		shape: object(opt("stages", list(object(req("name", str()), req("department", str()), req("events", list(str())))))),
		check: checkStages}
)

// Kinds lists every kind in the order apply creates and changes them
// (what a resource refers to comes first); it deletes in reverse.
var Kinds = []*Kind{Sources, Destinations, TrackingPlans, Users, ComputedTraits, Audiences, IdentityRules, LifecycleStages}

func init() {
	for i, k := range Kinds {
		k.order = i
	}
}

// KindByKey is the kind of a top-level key, nil if none.
func KindByKey(key string) *Kind {
	for _, k := range Kinds {
		if k.Key == key {
			return k
		}
	}
	return nil
}

func kindKeys() []string {
	out := make([]string, len(Kinds))
	for i, k := range Kinds {
		out[i] = k.Key
	}
	return out
}

func roleNames() []string {
	out := make([]string, len(access.Roles))
	for i, r := range access.Roles {
		out[i] = string(r)
	}
	return out
}

// decodeInto turns a resource's fields into a domain type, through JSON.
func decodeInto(fields map[string]any, v any) error {
	b, err := json.Marshal(fields)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

func fieldOf(err error) (string, string) {
	var fe *statestore.FieldError
	if errors.As(err, &fe) {
		return fe.Field, fe.Message
	}
	return "", err.Error()
}

// checkSource normalises the allowed origins as the node does, so that
// the same origins written otherwise are no change.
func checkSource(r *Resource) (string, string) {
	list, ok := r.Fields["allowedOrigins"].([]any)
	if !ok {
		return "", ""
	}
	origins := make([]string, len(list))
	for i, v := range list {
		origins[i], _ = v.(string)
	}
	norm, err := governance.NormalizeOrigins(origins)
	if err != nil {
		return fieldOf(err)
	}
	out := make([]any, len(norm))
	for i, o := range norm {
		out[i] = o
	}
	r.Fields["allowedOrigins"] = out
	return "", ""
}

// checkDestination checks the config as the node will, and normalises
// the keys given (a URL as the node stores it), so that the same config
// written otherwise is no change. A config whose values other than
// secrets refer to variables is left to the node: their values are not
// known yet.
func checkDestination(r *Resource) (string, string) {
	cfg, _ := r.Fields["config"].(map[string]any)
	typ, _ := r.Fields["type"].(string)
	probe := make(map[string]any, len(cfg))
	for k, v := range cfg {
		if hasRef(v) {
			if !isSecret(r, k) {
				return "", ""
			}
			v = "variable"
		}
		probe[k] = v
	}
	norm, err := delivery.CheckConfig(typ, probe)
	if err != nil {
		return fieldOf(err)
	}
	for k, v := range cfg {
		if !hasRef(v) {
			cfg[k] = norm[k]
		}
	}
	return "", ""
}

func checkPlan(r *Resource) (string, string) {
	var p trackingplan.Plan
	if err := decodeInto(r.Fields, &p); err != nil {
		return "events", err.Error()
	}
	if p.Unplanned == "" {
		p.Unplanned = trackingplan.Allow
	}
	if err := trackingplan.Validate(p); err != nil {
		k, msg := fieldOf(err)
		return k, msg
	}
	return "", ""
}

func checkTrait(r *Resource) (string, string) {
	var t audience.Trait
	if err := decodeInto(r.Fields, &t); err != nil {
		return "", err.Error()
	}
	if err := t.Validate(); err != nil {
		return fieldOf(err)
	}
	return "", ""
}

func checkAudience(r *Resource) (string, string) {
	if _, err := audience.ParseRule(r.Fields["rule"].(string)); err != nil {
		_, msg := fieldOf(err)
		return "rule", msg
	}
	return "", ""
}

func checkIdentity(r *Resource) (string, string) {
	if _, ok := r.Fields["types"]; !ok {
		return "", "" // the node's types stay; it checks the whole
	}
	var rules identity.Rules
	if err := decodeInto(r.Fields, &rules); err != nil {
		return "", err.Error()
	}
	if err := rules.Validate(); err != nil {
		var ve *identity.ValidationError
		if errors.As(err, &ve) {
			return strings.TrimPrefix(strings.TrimPrefix(ve.Key, "identity"), "."), ve.Message
		}
		return "", err.Error()
	}
	// The types as the node shows them (priorities filled in, a limit of
	// 0 written out), so that the same rules written otherwise are no
	// change.
	var types []any
	if b, err := json.Marshal(rules.Types); err == nil && json.Unmarshal(b, &types) == nil {
		r.Fields["types"] = types
	}
	return "", ""
}

func checkStages(r *Resource) (string, string) {
	if _, ok := r.Fields["stages"]; !ok {
		return "", ""
	}
	var j struct {
		Stages []analytics.Stage `json:"stages"`
	}
	if err := decodeInto(r.Fields, &j); err != nil {
		return "", err.Error()
	}
	if err := analytics.ValidateStages(j.Stages, "stages"); err != nil {
		var fe *analytics.FieldError
		if errors.As(err, &fe) {
			return fe.Field, fe.Message
		}
		return "", err.Error()
	}
	return "", ""
}
