package api

import "testing"

// A config file key becomes the field of the API's body: the section
// dropped, its first part in camelCase, map keys and indexes kept.
func TestConfigField(t *testing.T) {
	for _, tc := range []struct{ key, section, want string }{
		{"identity.types[2].priority", "identity", "types[2].priority"},
		{"identity.phone_region", "identity", "phoneRegion"},
		{"consent.gpc_purposes[1]", "consent", "gpcPurposes[1]"},
		{"consent.defaults.Ad_Tracking", "consent", "defaults.Ad_Tracking"},
		{"retention.sources.shop_web", "retention", "sources.shop_web"},
		{"retention.consent_history", "retention", "consentHistory"},
		{"identity", "identity", "identity"},
	} {
		if got := configField(tc.key, tc.section); got != tc.want {
			t.Errorf("configField(%q) = %q, want %q", tc.key, got, tc.want)
		}
	}
}
