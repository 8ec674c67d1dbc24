package identity

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/nyaruka/phonenumbers"
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
	// PhoneRegion is the region (ISO 3166-1 alpha-2, e.g. "DE") whose
	// numbering plan reads phone numbers written in national form, such as
	// "0171 5550199". Empty: only numbers in international form ("+49 …",
	// "0049 …") are identifiers; a national one is left out (the trait
	// stays on the profile).
	PhoneRegion string `yaml:"phone_region" json:"phoneRegion,omitempty"`
	// PhoneCountryCode is the older form of PhoneRegion: a country calling
	// code (digits, e.g. "49"), read as the main region of that code ("49"
	// is DE, "1" is US, "44" is GB). Give one of the two.
	PhoneCountryCode string `yaml:"phone_country_code" json:"phoneCountryCode,omitempty"`
}

// CRMID is the identifier type of a CRM's account or customer number,
// configured by default because offline touchpoints (call-centre
// contacts, shop purchases) often carry nothing else.
const CRMID = "crm_id"

// DefaultRules are Segment Unify's defaults, adapted: one user_id per
// profile with the highest priority, then one CRM id (crm_id), up to 5
// e-mail addresses and 5 phone numbers, and any number of anonymous ids
// (devices, browsers) with the lowest priority.
func DefaultRules() Rules {
	return Rules{
		Types: []Type{
			{Name: UserID, Priority: 1, Limit: 1},
			{Name: CRMID, Priority: 2, Limit: 1},
			{Name: Email, Priority: 3, Limit: 5},
			{Name: Phone, Priority: 4, Limit: 5},
			{Name: AnonymousID, Priority: 5, Limit: 0},
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
	if r.PhoneCountryCode != "" {
		if !countryCode.MatchString(r.PhoneCountryCode) {
			return &ValidationError{Key: "identity.phone_country_code", Message: "want a country calling code of 1 to 3 digits, e.g. 49 (or set identity.phone_region, e.g. DE, instead)"}
		}
		cc, _ := strconv.Atoi(r.PhoneCountryCode)
		region := phonenumbers.GetRegionCodeForCountryCode(cc)
		if region == phonenumbers.UNKNOWN_REGION {
			return &ValidationError{Key: "identity.phone_country_code", Message: fmt.Sprintf("%s is not a country calling code in use; set identity.phone_region (e.g. DE) instead", r.PhoneCountryCode)}
		}
		if r.PhoneRegion != "" && !strings.EqualFold(r.PhoneRegion, region) {
			return &ValidationError{Key: "identity.phone_country_code", Message: fmt.Sprintf("+%s is not the calling code of identity.phone_region %s; give only phone_region", r.PhoneCountryCode, r.PhoneRegion)}
		}
		if r.PhoneRegion == "" {
			r.PhoneRegion = region
		}
	}
	if r.PhoneRegion != "" {
		r.PhoneRegion = strings.ToUpper(r.PhoneRegion)
		if !phonenumbers.GetSupportedRegions()[r.PhoneRegion] {
			return &ValidationError{Key: "identity.phone_region", Message: fmt.Sprintf("%q is not a region with a numbering plan; want an ISO 3166 code such as DE, GB or US", r.PhoneRegion)}
		}
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
	// blockedLens has bit n set when a blocked value is n bytes long
	// (n < 64; bit 63 for any longer one): an ASCII value of another
	// length (lower-casing keeps it) is not blocked, without a lookup.
	blockedLens uint64
	phones      *phoneCache
}

func compile(r Rules) (*compiled, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	c := &compiled{rules: r, rank: map[string]int{}, limit: map[string]int{}, blocked: map[string]bool{}, phones: newPhoneCache(phoneCacheSize)}
	for i, t := range r.Types {
		c.rank[t.Name] = i
		c.limit[t.Name] = t.Limit
	}
	for _, b := range r.Blocked {
		v := strings.ToLower(strings.TrimSpace(b))
		c.blocked[v] = true
		c.blockedLens |= 1 << min(len(v), 63)
	}
	return c, nil
}

// Normalize returns the value of an identifier of type typ as it is
// matched: e-mail addresses trimmed and lower-cased, phone numbers in
// E.164 form (+ and digits), other types trimmed. ok is false for a value
// that cannot identify anyone (empty, or not a valid phone number; see
// [normalizePhone]).
func (c *compiled) normalize(typ, v string) (string, bool) {
	v = strings.TrimSpace(v)
	switch typ {
	case Email:
		v = strings.ToLower(v)
		if !strings.Contains(v, "@") {
			return "", false
		}
	case Phone:
		v = c.phones.normalize(v, c.rules.PhoneRegion)
	case UserID, AnonymousID:
		// Matched exactly as sent: the event store keys events by them.
	}
	return v, v != ""
}

// normalizePhone returns v in E.164 form ("+" and digits), or "" when v
// is not a valid number: it does not parse, its country calling code is
// unknown, its length or range fits no number of that country's numbering
// plan (as the phonenumbers library knows it), or it is written in
// national form and no region is configured. "00" before a number is read
// as "+" whatever the region. Extensions are dropped.
func normalizePhone(v, region string) string {
	v = strings.TrimSpace(v)
	if strings.HasPrefix(v, "00") {
		v = "+" + v[2:]
	}
	if !strings.HasPrefix(v, "+") && region == "" {
		return ""
	}
	n, err := phonenumbers.Parse(v, region)
	if err != nil || !phonenumbers.IsValidNumber(n) {
		return ""
	}
	return phonenumbers.Format(n, phonenumbers.E164)
}

// phoneCacheSize bounds the phone cache: parsing a number costs a few
// microseconds, and the same numbers come back (a profile's identify, its
// call-centre contacts).
const phoneCacheSize = 4096

// phoneCache remembers normalised phone numbers by their raw form, in two
// generations like [setCache], so memory stays bounded.
type phoneCache struct {
	mu         sync.Mutex
	young, old map[string]string
	half       int
}

func newPhoneCache(size int) *phoneCache {
	return &phoneCache{young: map[string]string{}, old: map[string]string{}, half: max(size/2, 1)}
}

func (c *phoneCache) normalize(v, region string) string {
	c.mu.Lock()
	n, ok := c.young[v]
	if !ok {
		n, ok = c.old[v]
	}
	c.mu.Unlock()
	if ok {
		return n
	}
	n = normalizePhone(v, region)
	if len(v) > 64 {
		return n // not worth keeping
	}
	c.mu.Lock()
	if len(c.young) >= c.half {
		c.old, c.young = c.young, map[string]string{}
	}
	c.young[v] = n
	c.mu.Unlock()
	return n
}

// isBlocked reports whether a value (raw or normalised) is blocked.
func (c *compiled) isBlocked(raw, norm string) bool {
	if !c.mayBeBlocked(strings.TrimSpace(raw)) && !c.mayBeBlocked(norm) &&
		!(strings.HasPrefix(norm, "+") && c.mayBeBlocked(norm[1:])) {
		return false
	}
	if c.blocked[strings.ToLower(strings.TrimSpace(raw))] {
		return true
	}
	if c.blocked[strings.ToLower(norm)] {
		return true
	}
	// A phone number's blocked form may be written in digits only.
	return strings.HasPrefix(norm, "+") && c.blocked[norm[1:]]
}

// mayBeBlocked reports whether v, lower-cased, may be a blocked value: an
// ASCII value whose length no blocked value has is not (lower-casing
// keeps an ASCII value's length).
func (c *compiled) mayBeBlocked(v string) bool {
	if c.blockedLens&(1<<min(len(v), 63)) != 0 {
		return true
	}
	for i := 0; i < len(v); i++ {
		if v[i] >= 0x80 {
			return true
		}
	}
	return false
}

// rankOf returns the rank of identifier id's type (its position in
// priority order), false for a type the rules do not name.
func (c *compiled) rankOf(id string) (int, bool) {
	typ, _ := splitIdent(id)
	k, ok := c.rank[typ]
	return k, ok
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
