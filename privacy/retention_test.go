package privacy_test

import (
	"testing"
	"time"

	"tandem/governance"
	"tandem/privacy"
)

func TestRetentionAgeOf(t *testing.T) {
	r := privacy.Retention{
		Default:    720 * time.Hour,
		Sources:    map[string]time.Duration{"Shop Web": 48 * time.Hour, "src_crm": 2000 * time.Hour},
		Categories: map[string]time.Duration{"contact": 240 * time.Hour, "payment": 0},
	}
	for _, c := range []struct {
		src   governance.Source
		age   time.Duration
		basis string
	}{
		{governance.Source{ID: "src_1", Name: "shop web", DataCategories: []string{"contact"}}, 48 * time.Hour, "source"},
		{governance.Source{ID: "src_2", Name: "app", DataCategories: []string{"behavioural", "Contact"}}, 240 * time.Hour, "category Contact"},
		{governance.Source{ID: "src_crm", Name: "crm", DataCategories: []string{"contact"}}, 240 * time.Hour, "category contact"},
		{governance.Source{ID: "src_3", Name: "pos", DataCategories: []string{"payment"}}, 720 * time.Hour, "default"},
	} {
		age, basis := r.AgeOf(c.src)
		if age != c.age || basis != c.basis {
			t.Errorf("%s: %v %q, want %v %q", c.src.Name, age, basis, c.age, c.basis)
		}
	}
	if age, basis := (privacy.Retention{}).AgeOf(governance.Source{Name: "x"}); age != 0 || basis != "" {
		t.Errorf("no policy: %v %q", age, basis)
	}
	if r.Shortest() != 48*time.Hour || (privacy.Retention{}).Shortest() != 0 {
		t.Errorf("Shortest = %v", r.Shortest())
	}
	if (privacy.Retention{}).Enabled() || !(privacy.Retention{ConsentHistory: time.Hour}).Enabled() {
		t.Error("Enabled")
	}
	for _, bad := range []privacy.Retention{
		{Default: -time.Second}, {Sources: map[string]time.Duration{"": time.Hour}},
		{Categories: map[string]time.Duration{"contact": -1}}, {Every: time.Millisecond},
	} {
		if bad.Validate() == nil {
			t.Errorf("%+v: valid", bad)
		}
	}
}

func TestClassification(t *testing.T) {
	c := privacy.NewClassification(privacy.Settings{Categories: map[string]string{
		"properties.card_last4": "payment", "context.traits.crm_id": "identity", "traits.email": "sensitive"}})
	for _, tc := range []struct{ container, name, want string }{
		{"traits", "email", "sensitive"}, {"traits", "Phone_Number", "contact"}, {"context.traits", "firstName", "contact"},
		{"traits", "crm_id", "identity"}, {"properties", "card_last4", "payment"}, {"properties", "name", ""},
		{"traits", "plan", ""},
	} {
		if got := c.Category(tc.container, tc.name); got != tc.want {
			t.Errorf("Category(%s, %s) = %q, want %q", tc.container, tc.name, got, tc.want)
		}
	}
	if err := (privacy.Settings{Categories: map[string]string{"email": "contact"}}).Validate(); err == nil {
		t.Error("a path without a container is valid")
	}
}

func TestBuildRecords(t *testing.T) {
	at := time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)
	cat := governance.Catalog{
		Tools: []governance.Tool{
			{ID: "src_shop", Kind: "source", Type: "web", Name: "shop", Owner: "marketing", Purpose: "shop analytics", DataCategories: []string{"behavioural"}, Approval: "approved"},
			{ID: "dst_crm", Kind: "destination", Type: "webhook", Name: "crm", Owner: "sales", Purpose: "follow-up", DataCategories: []string{"contact"}, ConsentPurposes: []string{"Marketing"}, Approval: "approved"},
			{ID: "dst_ads", Kind: "destination", Type: "webhook", Name: "ads", Owner: "marketing", Approval: "pending", ConsentPurposes: []string{"Advertising"}},
		},
		Flows: []governance.Flow{{From: "src_shop", To: "dst_crm", Events30d: 42, PersonalData: true}},
	}
	dests := []governance.Destination{{ID: "dst_crm", Approval: "approved"}, {ID: "dst_ads", Approval: "pending"}}
	r := privacy.BuildRecords(privacy.RecordsInput{Catalog: cat, Destinations: dests,
		Consent:          privacy.Config{Defaults: map[string]bool{"Analytics": true}, GPCPurposes: []string{"Advertising"}},
		Retention:        privacy.Retention{Sources: map[string]time.Duration{"shop": 720 * time.Hour}},
		Classification:   privacy.NewClassification(privacy.Settings{}),
		SourceCategories: map[string][]string{"src_shop": {"contact"}}, Now: at})
	if len(r.Activities) != 3 {
		t.Fatalf("%d activities", len(r.Activities))
	}
	shop := r.Activities[0]
	if shop.Tool.ID != "src_shop" || len(shop.Recipients) != 1 || shop.Recipients[0].ID != "dst_crm" || shop.Events30d != 42 ||
		shop.Retention.MaxAge != "720h0m0s" || shop.Retention.Basis != "source" || !shop.PersonalData ||
		len(shop.DataCategories) != 2 || len(shop.ConsentPurposes) != 1 || shop.ConsentPurposes[0] != "Marketing" ||
		len(shop.Purposes) != 1 || len(shop.SubjectCategories) != len(privacy.DefaultSubjects) {
		t.Errorf("shop: %+v", shop)
	}
	crm := r.Activities[1]
	if len(crm.Recipients) != 1 || crm.Recipients[0].ID != "dst_crm" || crm.Events30d != 42 || crm.Retention.Basis != "sources" {
		t.Errorf("crm: %+v", crm)
	}
	if ads := r.Activities[2]; len(ads.Purposes) != 0 || ads.Events30d != 0 {
		t.Errorf("ads: %+v", ads)
	}
	byName := map[string]privacy.PurposeRecord{}
	for _, p := range r.ConsentPurposes {
		byName[p.Purpose] = p
	}
	if byName["Analytics"].Default != "granted" || !byName["Advertising"].GPC || byName["Marketing"].Default != "refused" ||
		!byName["Marketing"].Objection {
		t.Errorf("consent purposes: %+v", r.ConsentPurposes)
	}
	if r.ClassifiedFields["traits.email"] != "contact" || r.Retention.Sources["shop"] != "720h0m0s" {
		t.Errorf("classified %v, retention %+v", r.ClassifiedFields, r.Retention)
	}
}
