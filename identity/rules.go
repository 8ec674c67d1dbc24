package identity

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// Built-in identifier types. Every event carries a user_id or an
// anonymous_id, so these two must always be configured.
const (
	UserID      = "user_id"
	AnonymousID = "anonymous_id"
	Email       = "email"
	Phone       = "phone"
)

// Type is one identifier type with its rule.
type Type struct {
	// Name is the type, e.g. "email" or "crm_id". Besides the built-in
	// types, a type's values are read from the traits (and
	// context.traits) field of the same name and from context.externalIds
	// entries with that type.
	Name string `yaml:"name" json:"name"`
	// Priority orders the types, 1 being the highest. When merging would
	// break a limit, identifiers of the lowest priority are dropped first.
	// When no type gives one, the list's order is the priority.
	Priority int `yaml:"priority" json:"priority"`
	// Limit is the most identifiers of this type one profile may have; 0
	// means no limit.
	Limit int `yaml:"limit" json:"limit"`
}

// Rules are the identity resolution rules: configuration, checked by
// [Rules.Validate].
type Rules struct {
	// Types are the identifier types that join events into profiles. An
	// identifier of a type not listed is ignored.
	Types []Type `yaml:"types" json:"types"`
	// Blocked values never identify anyone (compared after normalising,
	// case-insensitively): test addresses, placeholders, "null".
	Blocked []string `yaml:"blocked" json:"blocked"`
	// PhoneCountryCode is the country calling code (digits, e.g. "49")
	// given to phone numbers written in national form (a leading 0).
	// Empty: such numbers only lose their formatting.
	PhoneCountryCode string `yaml:"phone_country_code" json:"phoneCountryCode,omitempty"`
}

// DefaultRules are Segment Unify's defaults, adapted: one user_id per
// profile with the highest priority, then up to 5 e-mail addresses and 5
// phone numbers, and any number of anonymous ids (devices, browsers) with
// the lowest priority.
func DefaultRules() Rules {
	return Rules{
		Types: []Type{
			{Name: UserID, Priority: 1, Limit: 1},
			{Name: Email, Priority: 2, Limit: 5},
			{Name: Phone, Priority: 3, Limit: 5},
			{Name: AnonymousID, Priority: 4, Limit: 0},
		},
		Blocked: []string{"null", "undefined", "none", "nil", "0", "00000", "-1", "unknown", "anonymous", "test@example.com", "test@test.com", "noreply@example.com"},
	}
}

var typeName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,39}$`)
var countryCode = regexp.MustCompile(`^[1-9][0-9]{0,2}$`)

// ValidationError names the configuration key at fault, e.g.
// "identity.types[2].limit".
type ValidationError struct {
	Key     string
	Message string
}

func (e *ValidationError) Error() string { return e.Key + ": " + e.Message }

// Validate checks the rules and fills in priorities from the list order
// when none is given. Errors are *[ValidationError]s whose Key is the
// configuration key under "identity".
func (r *Rules) Validate() error {
	if len(r.Types) == 0 {
		return &ValidationError{Key: "identity.types", Message: "must list at least user_id and anonymous_id"}
	}
	anyPriority := false
	for _, t := range r.Types {
		if t.Priority != 0 {
			anyPriority = true
		}
	}
	seenName := map[string]int{}
	seenPrio := map[int]string{}
	for i := range r.Types {
		t := &r.Types[i]
		key := fmt.Sprintf("identity.types[%d]", i)
		if !typeName.MatchString(t.Name) {
			return &ValidationError{Key: key + ".name", Message: fmt.Sprintf("%q is not a type name (lower-case letters, digits and _, starting with a letter)", t.Name)}
		}
		if j, dup := seenName[t.Name]; dup {
			return &ValidationError{Key: key + ".name", Message: fmt.Sprintf("%s is listed twice (also identity.types[%d])", t.Name, j)}
		}
		seenName[t.Name] = i
		if !anyPriority {
			t.Priority = i + 1
		}
		if t.Priority < 1 {
			return &ValidationError{Key: key + ".priority", Message: "must be 1 (highest) or more; give every type a priority or none"}
		}
		if other, dup := seenPrio[t.Priority]; dup {
			return &ValidationError{Key: key + ".priority", Message: fmt.Sprintf("%d is also the priority of %s", t.Priority, other)}
		}
		seenPrio[t.Priority] = t.Name
		if t.Limit < 0 {
			return &ValidationError{Key: key + ".limit", Message: "must be 0 (no limit) or more"}
		}
	}
	for _, need := range []string{UserID, AnonymousID} {
		if _, ok := seenName[need]; !ok {
			return &ValidationError{Key: "identity.types", Message: need + " must be listed: every event carries it"}
		}
	}
	for i, b := range r.Blocked {
		if strings.TrimSpace(b) == "" {
			return &ValidationError{Key: fmt.Sprintf("identity.blocked[%d]", i), Message: "must not be empty"}
		}
	}
	if r.PhoneCountryCode != "" && !countryCode.MatchString(r.PhoneCountryCode) {
		return &ValidationError{Key: "identity.phone_country_code", Message: "want a country calling code of 1 to 3 digits, e.g. 49"}
	}
	slices.SortStableFunc(r.Types, func(a, b Type) int { return a.Priority - b.Priority })
	return nil
}

// compiled is the form of Rules the resolver uses.
type compiled struct {
	rules   Rules
	rank    map[string]int // type → position in priority order (0 highest)
	limit   map[string]int
	blocked map[string]bool
}

func compile(r Rules) (*compiled, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	c := &compiled{rules: r, rank: map[string]int{}, limit: map[string]int{}, blocked: map[string]bool{}}
	for i, t := range r.Types {
		c.rank[t.Name] = i
		c.limit[t.Name] = t.Limit
	}
	for _, b := range r.Blocked {
		c.blocked[strings.ToLower(strings.TrimSpace(b))] = true
	}
	return c, nil
}

// Normalize returns the value of an identifier of type typ as it is
// matched: e-mail addresses trimmed and lower-cased, phone numbers in
// E.164 form (+ and digits), other types trimmed. ok is false for a value
// that cannot identify anyone (empty, or a phone number without digits).
func (c *compiled) normalize(typ, v string) (string, bool) {
	v = strings.TrimSpace(v)
	switch typ {
	case Email:
		v = strings.ToLower(v)
		if !strings.Contains(v, "@") {
			return "", false
		}
	case Phone:
		v = normalizePhone(v, c.rules.PhoneCountryCode)
	case UserID, AnonymousID:
		// Matched exactly as sent: the event store keys events by them.
	}
	return v, v != ""
}

func normalizePhone(v, cc string) string {
	var digits strings.Builder
	plus := strings.HasPrefix(v, "+")
	for _, r := range v {
		if r >= '0' && r <= '9' {
			digits.WriteRune(r)
		}
	}
	d := digits.String()
	switch {
	case d == "":
		return ""
	case plus:
	case strings.HasPrefix(d, "00"):
		d = d[2:]
	case strings.HasPrefix(d, "0") && cc != "":
		d = cc + d[1:]
	}
	if d == "" {
		return ""
	}
	return "+" + d
}

// isBlocked reports whether a value (raw or normalised) is blocked.
func (c *compiled) isBlocked(raw, norm string) bool {
	if c.blocked[strings.ToLower(strings.TrimSpace(raw))] {
		return true
	}
	if c.blocked[strings.ToLower(norm)] {
		return true
	}
	// A phone number's blocked form may be written in digits only.
	return strings.HasPrefix(norm, "+") && c.blocked[norm[1:]]
}

// Ident is an identifier's stored form, "type:value"; for user_id and
// anonymous_id it is the event store's profile key (see
// [eventstore.ProfileKey]).
func Ident(typ, value string) string { return typ + ":" + value }

// splitIdent splits "type:value".
func splitIdent(id string) (typ, value string) {
	typ, value, _ = strings.Cut(id, ":")
	return typ, value
}
