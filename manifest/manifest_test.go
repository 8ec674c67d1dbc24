package manifest

import (
	"strings"
	"testing"
)

const sample = `version: 1
sources:
  - name: web-shop
    kind: web
    owner: marketing
    dataCategories: [behavioural, contact]
    monthlyCost: 49
destinations:
  - name: crm-hook
    type: webhook
    owner: sales
    config:
      url: https://hooks.example/tandem
      secret: ${CRM_HOOK_SECRET}
    filter: {types: [track], sources: [web-shop]}
trackingPlans:
  - source: web-shop
    unplanned: flag
    events:
      Order Completed:
        properties: {type: object, required: [price], properties: {price: {type: number}}}
users:
  - {name: Ana, role: analyst}
computedTraits:
  - {name: orders_30d, kind: count, event: Order Completed, window: 30d}
audiences:
  - {name: loyal, rule: "computed.orders_30d >= 2", destinations: [crm-hook]}
journey:
  stages:
    - {name: awareness, department: marketing, events: [Ad Clicked]}
`

func TestParseSample(t *testing.T) {
	m, err := Parse("tandem.yaml", []byte(sample))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range m.Resources {
		got = append(got, r.Label())
	}
	want := `source "web-shop", destination "crm-hook", tracking plan "web-shop", user "Ana", computed trait "orders_30d", audience "loyal", lifecycle stages`
	if strings.Join(got, ", ") != want {
		t.Errorf("resources:\n got %s\nwant %s", strings.Join(got, ", "), want)
	}
	if l := m.Resources[1].LineOf("config.secret"); l != 14 {
		t.Errorf("line of config.secret = %d, want 14", l)
	}
}

// TestParseErrors: each bad file gives the file, line and key of the
// problem.
func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"destinations:\n  - name: x\n    type: webhok\n    owner: it\n    config: {url: https://x.example/}\n",
			`tandem.yaml:3: destinations[0].type: unknown type "webhok"; known: nats, segment, webhook`},
		{"sources:\n  - name: a\n    kind: web\n    owner: it\n    colour: blue\n",
			`tandem.yaml:5: sources[0]: unknown key "colour"`},
		{"destinations:\n  - name: x\n    type: webhook\n    owner: it\n    config:\n      url: https://x.example/\n      colour: blue\n",
			`tandem.yaml:7: destinations[0].config.colour: unknown config key; known: url, secret, batch`},
		{"destinations:\n  - name: x\n    type: webhook\n    owner: it\n    config: {url: 'ftp://x.example/'}\n",
			`tandem.yaml:5: destinations[0].config.url: destination address refused: scheme "ftp": only http and https`},
		{"sources:\n  - {name: a, kind: web, owner: it, allowedOrigins: ['https://x.example/path']}\n",
			`tandem.yaml:2: sources[0].allowedOrigins:`},
		{"sorces: []\n", `tandem.yaml:1: unknown key "sorces"`},
		{"sources:\n  - name: a\n    kind: web\n", `tandem.yaml:2: sources[0].owner: is required`},
		{"sources:\n  - {name: a, kind: web, owner: it, monthlyCost: lots}\n", `tandem.yaml:2: sources[0].monthlyCost: must be a number`},
		{"users:\n  - {name: a, role: boss}\n", `tandem.yaml:2: users[0].role: unknown role "boss"`},
		{"users:\n  - {name: a, role: it}\n  - {name: A, role: it}\n", `tandem.yaml:3: users[1].name: user "A" is declared twice`},
		{"computedTraits:\n  - {name: x, kind: count, event: E, window: 3w}\n", `tandem.yaml:2: computedTraits[0].window:`},
		{"audiences:\n  - name: x\n    rule: 'computed.x >= '\n", `tandem.yaml:3: audiences[0].rule:`},
		{"sources: {name: a}\n", `tandem.yaml:1: sources: must be a list of sources`},
		{"sources:\n  - &a {name: a, kind: web, owner: it}\n  - *a\n", `tandem.yaml:3: sources[1]: anchors and aliases are not supported`},
		{"version: 2\n", `tandem.yaml:1: version: must be 1`},
		{"sources: [\n", `tandem.yaml:1: not valid YAML: did not find expected node content`},
		{"identity:\n  types:\n    - {name: email}\n", `tandem.yaml:3: identity.types: user_id must be listed`},
		{"trackingPlans:\n  - source: s\n    events:\n      E:\n        properties: {type: 7}\n", `tandem.yaml:5: trackingPlans[0].events.E.properties: not a valid JSON Schema`},
	} {
		_, err := Parse("tandem.yaml", []byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q:\n got %v\nwant %s…", tc.in, err, tc.want)
		}
	}
}

// TestNormalised: values the node stores in a normal form are read in
// that form, so writing them otherwise is no change.
func TestNormalised(t *testing.T) {
	m, err := Parse("t.yaml", []byte("sources:\n  - {name: a, kind: web, owner: it, allowedOrigins: ['HTTPS://Shop.Example.com']}\n"+
		"destinations:\n  - {name: s, type: segment, owner: it, config: {url: 'https://api.example.com/', writeKey: '${K}'}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Resources[0].Fields["allowedOrigins"].([]any)[0]; got != "https://shop.example.com" {
		t.Errorf("origin read as %q", got)
	}
	cfg := m.Resources[1].Fields["config"].(map[string]any)
	if cfg["url"] != "https://api.example.com" || cfg["writeKey"] != "${K}" || len(cfg) != 2 {
		t.Errorf("config read as %v", cfg)
	}
}

// TestDeclared: an empty list declares its kind (for --prune), a key
// without a value does not.
func TestDeclared(t *testing.T) {
	m, err := Parse("t.yaml", []byte("audiences: []\nsources:\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !m.Declared["audiences"] || m.Declared["sources"] || len(m.Resources) != 0 {
		t.Errorf("declared %v, resources %d", m.Declared, len(m.Resources))
	}
}

func TestSecretVar(t *testing.T) {
	for in, want := range map[[2]string]string{
		{"crm-hook", "secret"}:    "CRM_HOOK_SECRET",
		{"Fwd to EU", "writeKey"}: "FWD_TO_EU_WRITE_KEY",
		{"9lives", "token"}:       "SECRET_9LIVES_TOKEN",
	} {
		if got := SecretVar(in[0], in[1]); got != want {
			t.Errorf("SecretVar(%q, %q) = %q, want %q", in[0], in[1], got, want)
		}
	}
}
