package policy

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"tandem/access"
)

// Kind is a kind of change the decision rights speak about.
type Kind string

// The kinds of change.
const (
	Source          Kind = "source"           // a new or changed source
	Destination     Kind = "destination"      // a new or changed destination
	DataCategories  Kind = "data_categories"  // the data categories of a tool
	TrackingPlan    Kind = "tracking_plan"    // a source's tracking plan
	IdentityRules   Kind = "identity_rules"   // identity resolution rules
	LifecycleStages Kind = "lifecycle_stages" // the journey's lifecycle stages
	Retention       Kind = "retention"        // how long data is kept
	ConsentDefaults Kind = "consent_defaults" // per-purpose consent defaults
	Users           Kind = "users"            // users and roles
)

// Kinds lists every kind, in the order the docs show them.
var Kinds = []Kind{Source, Destination, DataCategories, TrackingPlan, IdentityRules, LifecycleStages, Retention, ConsentDefaults, Users}

// Valid reports whether k is one of [Kinds].
func (k Kind) Valid() bool { return slices.Contains(Kinds, k) }

// toolKinds are the kinds about a tool, to which the rules by data
// category apply.
var toolKinds = []Kind{Source, Destination, DataCategories}

// Actions of a change.
const (
	Create = "create"
	Update = "update"
	Delete = "delete"
)

// The presets.
const (
	ITLed        = "it-led"
	MarketingLed = "marketing-led"
	Joint        = "joint"
)

// Presets lists the presets.
var Presets = []string{ITLed, MarketingLed, Joint}

// Rule is the decision rights for one kind of change: the roles that may
// propose it, the roles whose approval it needs (every one of them), and
// the roles that are informed of it. Admin may always propose. In a
// configured rule, a list left out keeps the preset's.
type Rule struct {
	Propose []access.Role `yaml:"propose" json:"propose"`
	Approve []access.Role `yaml:"approve" json:"approve"`
	Inform  []access.Role `yaml:"inform" json:"inform"`
}

// Config is the decision rights as the configuration file gives them
// (its policy key).
type Config struct {
	// Preset is the table the rules start from: it-led (the default),
	// marketing-led or joint.
	Preset string `yaml:"preset"`
	// Rules replace the preset's rule for a kind, list by list.
	Rules map[Kind]Rule `yaml:"rules"`
	// Categories are the roles whose approval a tool (source or
	// destination, or a change of its data categories) needs on top of
	// its kind's rule, per data category it handles. An entry replaces
	// the default one for its category; an empty list removes it.
	Categories map[string][]access.Role `yaml:"categories"`
	// AdminApprovesAll: an admin's approval (and an admin's proposal)
	// counts for every role a change needs. false: admin's approval
	// counts only where a rule names admin.
	AdminApprovesAll bool `yaml:"admin_approves_all"`
}

// DefaultCategories are the rules by data category when the
// configuration names none: a tool handling personal data needs IT's
// approval, and one handling sensitive data privacy's too.
func DefaultCategories() map[string][]access.Role {
	it := []access.Role{access.RoleIT}
	return map[string][]access.Role{
		"contact":   it,
		"payment":   it,
		"identity":  it,
		"location":  it,
		"sensitive": {access.RoleIT, access.RolePrivacy},
	}
}

// DefaultConfig is the configuration used when the file has no policy
// key: the it-led preset, the default rules by data category, and admin
// approving for every role.
func DefaultConfig() Config {
	return Config{Preset: ITLed, Rules: map[Kind]Rule{}, Categories: DefaultCategories(), AdminApprovesAll: true}
}

func roles(rs ...access.Role) []access.Role { return rs }

var (
	it, mkt, prv, sales = access.RoleIT, access.RoleMarketing, access.RolePrivacy, access.RoleSales
)

// presets are the three tables. Admin may propose anything in each.
var presets = map[string]map[Kind]Rule{
	// IT is the gatekeeper: marketing proposes tools and tracking, IT
	// approves them; privacy decides consent defaults.
	ITLed: {
		Source:          {roles(it, mkt), roles(it), roles(mkt)},
		Destination:     {roles(it, mkt), roles(it), roles(mkt)},
		DataCategories:  {roles(it, mkt), roles(it), roles(mkt, prv)},
		TrackingPlan:    {roles(it, mkt), roles(it), roles(mkt)},
		IdentityRules:   {roles(it), roles(it), roles(mkt)},
		LifecycleStages: {roles(it, mkt), roles(it), roles(mkt, sales)},
		Retention:       {roles(it, prv), roles(it), roles(prv)},
		ConsentDefaults: {roles(it, prv), roles(prv), roles(it)},
		Users:           {roles(it), roles(it), roles()},
	},
	// Marketing runs its own tools and tracking; IT keeps identity,
	// retention and users, and is informed of the rest. The rules by data
	// category still bring IT (and privacy) in wherever personal data
	// flows.
	MarketingLed: {
		Source:          {roles(it, mkt), roles(mkt), roles(it)},
		Destination:     {roles(it, mkt), roles(mkt), roles(it)},
		DataCategories:  {roles(it, mkt), roles(mkt), roles(it, prv)},
		TrackingPlan:    {roles(it, mkt), roles(mkt), roles(it)},
		IdentityRules:   {roles(it, mkt), roles(it), roles(mkt)},
		LifecycleStages: {roles(it, mkt), roles(mkt), roles(it, sales)},
		Retention:       {roles(it, prv), roles(it), roles(mkt, prv)},
		ConsentDefaults: {roles(mkt, prv), roles(prv), roles(it, mkt)},
		Users:           {roles(it), roles(it), roles(mkt)},
	},
	// Both sign: every tool and tracking change needs IT and marketing;
	// retention IT and privacy; consent defaults privacy and marketing.
	Joint: {
		Source:          {roles(it, mkt), roles(it, mkt), roles(prv)},
		Destination:     {roles(it, mkt), roles(it, mkt), roles(prv)},
		DataCategories:  {roles(it, mkt), roles(it, mkt), roles(prv)},
		TrackingPlan:    {roles(it, mkt), roles(it, mkt), roles()},
		IdentityRules:   {roles(it, mkt), roles(it, mkt), roles(prv)},
		LifecycleStages: {roles(it, mkt), roles(it, mkt), roles(sales)},
		Retention:       {roles(it, prv), roles(it, prv), roles(mkt)},
		ConsentDefaults: {roles(mkt, prv), roles(mkt, prv), roles(it)},
		Users:           {roles(it), roles(it), roles(mkt)},
	},
}

// Preset returns a preset's table, or nil for an unknown name.
func Preset(name string) map[Kind]Rule {
	p, ok := presets[name]
	if !ok {
		return nil
	}
	out := make(map[Kind]Rule, len(p))
	for k, r := range p {
		out[k] = Rule{slices.Clone(r.Propose), slices.Clone(r.Approve), slices.Clone(r.Inform)}
	}
	return out
}

// ValidationError names the configuration key at fault, e.g.
// policy.rules.destination.approve[1].
type ValidationError struct {
	Key     string
	Message string
}

func (e *ValidationError) Error() string { return e.Key + ": " + e.Message }

func checkRoles(key string, rs []access.Role) error {
	for i, r := range rs {
		if !r.Valid() {
			return &ValidationError{Key: fmt.Sprintf("%s[%d]", key, i),
				Message: fmt.Sprintf("%q is no role (want one of %s)", r, roleNames(access.Roles))}
		}
	}
	return nil
}

// Validate checks the configuration.
func (c Config) Validate() error {
	if presets[c.Preset] == nil {
		return &ValidationError{Key: "policy.preset", Message: fmt.Sprintf("%q is no preset (want %s)", c.Preset, strings.Join(Presets, ", "))}
	}
	for _, k := range slices.Sorted(maps.Keys(c.Rules)) {
		if !k.Valid() {
			names := make([]string, len(Kinds))
			for i, k := range Kinds {
				names[i] = string(k)
			}
			return &ValidationError{Key: "policy.rules." + string(k), Message: "no such kind of change (want one of " + strings.Join(names, ", ") + ")"}
		}
		r := c.Rules[k]
		for _, l := range []struct {
			name string
			rs   []access.Role
		}{{"propose", r.Propose}, {"approve", r.Approve}, {"inform", r.Inform}} {
			if err := checkRoles("policy.rules."+string(k)+"."+l.name, l.rs); err != nil {
				return err
			}
		}
	}
	for _, cat := range slices.Sorted(maps.Keys(c.Categories)) {
		if strings.TrimSpace(cat) == "" || cat != strings.TrimSpace(cat) {
			return &ValidationError{Key: "policy.categories", Message: fmt.Sprintf("%q: a data category is a name without space around it", cat)}
		}
		if err := checkRoles("policy.categories."+cat, c.Categories[cat]); err != nil {
			return err
		}
	}
	return nil
}

// Rules are the decision rights in force: the preset with the
// configuration's rules laid over it. Safe for concurrent use (read
// only).
type Rules struct {
	preset     string
	table      map[Kind]Rule
	categories map[string][]access.Role
	adminAll   bool
}

// New returns the rules of a configuration, or its [Config.Validate]
// error.
func New(c Config) (*Rules, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	table := Preset(c.Preset)
	for k, r := range c.Rules {
		base := table[k]
		if r.Propose != nil {
			base.Propose = slices.Clone(r.Propose)
		}
		if r.Approve != nil {
			base.Approve = slices.Clone(r.Approve)
		}
		if r.Inform != nil {
			base.Inform = slices.Clone(r.Inform)
		}
		table[k] = base
	}
	cats := map[string][]access.Role{}
	for k, v := range c.Categories {
		if len(v) > 0 {
			cats[k] = slices.Clone(v)
		}
	}
	return &Rules{preset: c.Preset, table: table, categories: cats, adminAll: c.AdminApprovesAll}, nil
}

// Preset names the preset the rules start from.
func (r *Rules) Preset() string { return r.preset }

// Rule returns the rule in force for kind.
func (r *Rules) Rule(k Kind) Rule { return r.table[k] }

// Categories returns the rules by data category in force.
func (r *Rules) Categories() map[string][]access.Role { return maps.Clone(r.categories) }

// AdminApprovesAll reports whether an admin's approval counts for every
// role.
func (r *Rules) AdminApprovesAll() bool { return r.adminAll }

// ErrForbidden is matched by errors for a change the caller's role may not
// propose or approve. The API answers 403.
var ErrForbidden = errors.New("policy: forbidden")

// Assessment is what the decision rights say of a proposed change.
type Assessment struct {
	Needs    []access.Role `json:"needs"`    // roles whose approval it needs
	Informed []access.Role `json:"informed"` // roles informed of it
	// Direct: the proposer's own role satisfies every role it needs, so
	// it takes effect at once, without a change request.
	Direct bool `json:"direct"`
}

// Assess returns what the rules say of a change of kind, by a user of
// role proposer, to a tool handling the data categories (ignored for
// kinds that are not about a tool). An error matching [ErrForbidden]
// means proposer may not propose it.
func (r *Rules) Assess(k Kind, categories []string, proposer access.Role) (Assessment, error) {
	if !k.Valid() {
		return Assessment{}, fmt.Errorf("policy: %q is no kind of change", k)
	}
	rule := r.table[k]
	if proposer != access.RoleAdmin && !slices.Contains(rule.Propose, proposer) {
		return Assessment{}, fmt.Errorf("%w: role %q may not propose a change of kind %s (the decision rights let %s)",
			ErrForbidden, proposer, k, roleNames(append([]access.Role{access.RoleAdmin}, rule.Propose...)))
	}
	needs := slices.Clone(rule.Approve)
	if slices.Contains(toolKinds, k) {
		for _, c := range categories {
			needs = append(needs, r.categories[strings.TrimSpace(c)]...)
		}
	}
	a := Assessment{Needs: ordered(needs), Informed: ordered(rule.Inform)}
	a.Direct = len(r.outstanding(a.Needs, []access.Role{proposer})) == 0
	return a, nil
}

// outstanding returns the roles of needs not satisfied by approvals from
// the roles given: a role satisfies itself, and admin every role when
// the rules say so.
func (r *Rules) outstanding(needs, approvedBy []access.Role) []access.Role {
	if r.adminAll && slices.Contains(approvedBy, access.RoleAdmin) {
		return []access.Role{}
	}
	out := []access.Role{}
	for _, n := range needs {
		if !slices.Contains(approvedBy, n) {
			out = append(out, n)
		}
	}
	return out
}

// ordered de-duplicates roles and puts them in the order of
// [access.Roles]; never nil.
func ordered(rs []access.Role) []access.Role {
	out := []access.Role{}
	for _, r := range access.Roles {
		if slices.Contains(rs, r) {
			out = append(out, r)
		}
	}
	return out
}

func roleNames(rs []access.Role) string {
	names := make([]string, len(rs))
	for i, r := range rs {
		names[i] = string(r)
	}
	return strings.Join(names, ", ")
}

// AssessUser is [Rules.Assess] for a change of kind users that gives a
// user role granted (a new user, or a new role): the kind's rule, and
// two escalation rules on top that no preset or configuration lifts:
// granting admin needs an admin's approval unless an admin proposes it,
// and granting a role that reads personal data unmasked ([access.ReadPII])
// needs privacy's unless the proposer's own role reads it too. So a role
// that may propose users can never make an admin, nor gain admin's rights
// or a view of personal data it does not have through a user it creates.
func (r *Rules) AssessUser(granted, proposer access.Role) (Assessment, error) {
	a, err := r.Assess(Users, nil, proposer)
	if err != nil || proposer == access.RoleAdmin {
		return a, err
	}
	var extra access.Role
	switch {
	case granted == access.RoleAdmin:
		extra = access.RoleAdmin
	case access.Can(granted, access.ReadPII) && !access.Can(proposer, access.ReadPII):
		extra = access.RolePrivacy
	default:
		return a, nil
	}
	if !slices.Contains(a.Needs, extra) {
		a.Needs = ordered(append(a.Needs, extra))
	}
	a.Direct = false
	return a, nil
}
