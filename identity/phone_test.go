package identity

import (
	"errors"
	"fmt"
	"testing"
)

func TestPhoneNumbersNormalisedOrRefused(t *testing.T) {
	for _, tc := range []struct {
		region, cc, in, want string // want "" means not an identifier
	}{
		{"DE", "", "0171 5550199", "+491715550199"},
		{"", "49", "0171 5550199", "+491715550199"}, // the older setting
		{"de", "", "0170/123 45 67", "+491701234567"},
		{"", "", "0171 5550199", ""}, // national form, no region: whose number is it?
		{"", "", "+49 (30) 123-4567", "+49301234567"},
		{"", "", "0044 20-7946-0000", "+442079460000"},
		{"GB", "", "020 7946 0000", "+442079460000"},
		{"US", "", "(415) 555-2671", "+14155552671"},
		{"DE", "", "+1 415 555 2671", "+14155552671"}, // international form beats the region
		{"", "", "+01715550199", ""},                  // no country code 0
		{"DE", "", "12", ""},                          // too short for any German number
		{"DE", "", "00000", ""},
		{"DE", "", "call me", ""},
		{"DE", "", "+491715550199", "+491715550199"},
	} {
		rules := DefaultRules()
		rules.PhoneRegion, rules.PhoneCountryCode = tc.region, tc.cc
		c, err := compile(rules)
		if err != nil {
			t.Fatalf("%+v: %v", tc, err)
		}
		got, ok := c.normalize(Phone, tc.in)
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("region %q cc %q: %q normalised to %q (%v), want %q", tc.region, tc.cc, tc.in, got, ok, tc.want)
		}
		// Twice, through the cache.
		if again, _ := c.normalize(Phone, tc.in); again != got {
			t.Errorf("%q: %q the second time, %q the first", tc.in, again, got)
		}
	}
}

func TestPhoneRegionValidation(t *testing.T) {
	for _, tc := range []struct {
		region, cc, key string
	}{
		{"XX", "", "identity.phone_region"},
		{"Germany", "", "identity.phone_region"},
		{"", "999", "identity.phone_country_code"},
		{"", "0049", "identity.phone_country_code"},
		{"FR", "49", "identity.phone_country_code"},
	} {
		rules := DefaultRules()
		rules.PhoneRegion, rules.PhoneCountryCode = tc.region, tc.cc
		err := rules.Validate()
		var ve *ValidationError
		if !errors.As(err, &ve) || ve.Key != tc.key {
			t.Errorf("region %q cc %q: %v, want an error naming %s", tc.region, tc.cc, err, tc.key)
		}
	}
	rules := DefaultRules()
	rules.PhoneRegion, rules.PhoneCountryCode = "de", "49"
	if err := rules.Validate(); err != nil || rules.PhoneRegion != "DE" {
		t.Errorf("matching region and code: %v, region %q", err, rules.PhoneRegion)
	}
}

// BenchmarkPhone measures a phone identifier's normalisation: parsed (a
// new number each time) and through the cache (numbers that come back).
func BenchmarkPhone(b *testing.B) {
	rules := DefaultRules()
	rules.PhoneRegion = "DE"
	c, err := compile(rules)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("parse", func(b *testing.B) {
		for i := range b.N {
			normalizePhone(fmt.Sprintf("0171 %07d", i%10000000), "DE")
		}
	})
	b.Run("cached", func(b *testing.B) {
		for i := range b.N {
			c.normalize(Phone, fmt.Sprintf("0171 %07d", i%100))
		}
	})
}
