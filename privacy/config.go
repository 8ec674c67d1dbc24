package privacy

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Config is the consent configuration (the config file's consent key).
type Config struct {
	// Defaults answer for a purpose a profile has made no decision about:
	// {Analytics: true, Advertising: false}. A purpose not listed is
	// refused.
	Defaults map[string]bool `yaml:"defaults"`
	// GPCPurposes are the sale and sharing purposes that Sec-GPC: 1 on a
	// collection request refuses for the event's profile.
	GPCPurposes []string `yaml:"gpc_purposes"`
	// ObjectionPurposes are the marketing purposes an objection (Art. 21)
	// refuses for its profile; none: [DefaultObjectionPurposes].
	ObjectionPurposes []string `yaml:"objection_purposes"`
}

// DefaultObjectionPurposes are the purposes an objection refuses when the
// configuration names none.
var DefaultObjectionPurposes = []string{"Advertising", "DataSharing", "Marketing"}

// Objection returns the purposes an objection refuses.
func (c Config) Objection() []string {
	if len(c.ObjectionPurposes) == 0 {
		return DefaultObjectionPurposes
	}
	return c.ObjectionPurposes
}

// DefaultConfig is the configuration used when the file has no consent
// key: no purpose is granted by default, and GPC refuses Advertising and
// DataSharing.
func DefaultConfig() Config {
	return Config{Defaults: map[string]bool{}, GPCPurposes: []string{"Advertising", "DataSharing"}}
}

// ValidationError names the configuration key at fault, e.g.
// consent.gpc_purposes[1].
type ValidationError struct {
	Key     string
	Message string
}

func (e *ValidationError) Error() string { return e.Key + ": " + e.Message }

// MaxPurposeLen is the longest purpose name accepted.
const MaxPurposeLen = 100

func checkPurpose(name string) string {
	switch {
	case strings.TrimSpace(name) == "":
		return "a purpose name must not be empty"
	case len(name) > MaxPurposeLen:
		return fmt.Sprintf("a purpose name is at most %d bytes", MaxPurposeLen)
	case name != strings.TrimSpace(name):
		return fmt.Sprintf("%q has space around it", name)
	}
	return ""
}

// Validate checks the configuration. Purpose names are matched without
// regard to case, so two names differing only in case are refused.
func (c Config) Validate() error {
	seen := map[string]string{}
	for _, name := range slices.Sorted(maps.Keys(c.Defaults)) {
		if msg := checkPurpose(name); msg != "" {
			return &ValidationError{Key: "consent.defaults", Message: msg}
		}
		if other, ok := seen[strings.ToLower(name)]; ok {
			return &ValidationError{Key: "consent.defaults." + name, Message: fmt.Sprintf("the same purpose as %q (names are matched without regard to case)", other)}
		}
		seen[strings.ToLower(name)] = name
	}
	seen = map[string]string{}
	for i, name := range c.GPCPurposes {
		key := fmt.Sprintf("consent.gpc_purposes[%d]", i)
		if msg := checkPurpose(name); msg != "" {
			return &ValidationError{Key: key, Message: msg}
		}
		if _, ok := seen[strings.ToLower(name)]; ok {
			return &ValidationError{Key: key, Message: fmt.Sprintf("%q is listed twice", name)}
		}
		seen[strings.ToLower(name)] = name
	}
	for i, name := range c.ObjectionPurposes {
		if msg := checkPurpose(name); msg != "" {
			return &ValidationError{Key: fmt.Sprintf("consent.objection_purposes[%d]", i), Message: msg}
		}
	}
	return nil
}

// defaultFor is the configured default of purpose, and whether it has one.
func (c Config) defaultFor(purpose string) (bool, bool) {
	if v, ok := c.Defaults[purpose]; ok {
		return v, true
	}
	for name, v := range c.Defaults {
		if strings.EqualFold(name, purpose) {
			return v, true
		}
	}
	return false, false
}
