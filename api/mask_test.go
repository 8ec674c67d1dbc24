package api

import (
	"regexp"
	"strings"
	"testing"

	"tandem/privacy"
)

func TestMaskBody(t *testing.T) {
	m := masker{key: []byte("k")}
	in := `{"items":[{"userId":"ann@example.com","type":"identify","messageId":"m1",` +
		`"traits":{"email":"ANN@example.com","phone":"0151 1234567","firstName":"Ann","address":{"street":"Main St 1"},"plan":"gold"},` +
		`"context":{"ip":"203.0.113.9","traits":{"name":"Ann Smith"},"page":{"title":"Shoes"}},` +
		`"properties":{"name":"Blue shoe","contact":"call +49 151 1234 5678 today","price":12.5}}],` +
		`"identifiers":[{"type":"email","value":"ann@example.com"},{"type":"phone","value":"4915112345678"},{"type":"user_id","value":"u1"}],` +
		`"error":{"code":"invalid_field","message":"row 3: bob@example.org is taken","field":"email"},"at":"2026-12-02T10:00:00Z","count":3}` + "\n"
	out := string(m.body("application/json", []byte(in)))
	for _, secret := range []string{"@", "Ann", "Main St", "203.0.113.9", "1234567", "1234 5678", "4915112345678"} {
		if strings.Contains(out, secret) {
			t.Errorf("%q left in %s", secret, out)
		}
	}
	for _, kept := range []string{`"plan":"gold"`, `"title":"Shoes"`, `"name":"Blue shoe"`, `"price":12.5`, `"value":"u1"`,
		`"messageId":"m1"`, `"at":"2026-12-02T10:00:00Z"`, `"count":3`, `"field":"email"`, `"row 3: masked:email:`} {
		if !strings.Contains(out, kept) {
			t.Errorf("%s lost in %s", kept, out)
		}
	}
	// The members keep their order.
	if !strings.HasPrefix(out, `{"items":[{"userId":"masked:email:`) || !strings.Contains(out, `"type":"identify","messageId":"m1","traits":{"email":"masked:email:`) {
		t.Errorf("order changed: %s", out)
	}
	// Deterministic, case-insensitive for the same address, and the same
	// in a string and an identifier.
	p := m.pseudonym("email", "ann@example.com")
	if strings.Count(out, p) != 3 || !regexp.MustCompile(`^masked:email:[0-9a-f]{12}$`).MatchString(p) {
		t.Errorf("pseudonym %s: %d times in %s", p, strings.Count(out, p), out)
	}
	if (masker{key: []byte("other")}).pseudonym("email", "ann@example.com") == p {
		t.Error("the pseudonym does not depend on the key")
	}
	// Not JSON: masked as text.
	if got := string(m.body("text/csv", []byte("email\nann@example.com\n"))); strings.Contains(got, "@") {
		t.Errorf("csv: %s", got)
	}
}

// TestMaskClassified: fields the classification tags with a personal
// category are masked under traits, context.traits and properties,
// whatever their value; others (and the same names elsewhere) are kept.
func TestMaskClassified(t *testing.T) {
	m := masker{key: []byte("k"), class: privacy.NewClassification(privacy.Settings{Categories: map[string]string{
		"properties.card_last4": "payment", "traits.crm_id": "identity", "properties.loyalty": "behavioural", "traits.health": "sensitive"}})}
	in := `{"traits":{"crm_id":4711,"health":{"condition":"asthma"},"zip":"10115"},` +
		`"context":{"traits":{"crm_id":"C-99"}},` +
		`"properties":{"card_last4":"4242","loyalty":"gold","crm_id":"kept-1"},"card_last4":"kept-2"}`
	out := string(m.body("application/json", []byte(in)))
	for _, secret := range []string{"4711", "asthma", "10115", "C-99", "4242"} {
		if strings.Contains(out, secret) {
			t.Errorf("%q left in %s", secret, out)
		}
	}
	for _, kept := range []string{`"loyalty":"gold"`, `"crm_id":"kept-1"`, `"card_last4":"kept-2"`, `"card_last4":"masked:payment:`,
		`"crm_id":"masked:identity:`, `"health":"masked:sensitive:`, `"zip":"masked:contact:`} {
		if !strings.Contains(out, kept) {
			t.Errorf("%s not in %s", kept, out)
		}
	}
}
