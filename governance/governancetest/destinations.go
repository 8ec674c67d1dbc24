package governancetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"tandem/access"
	"tandem/governance"
	"tandem/statestore"
)

// testTypes knows one type, "hook": config {url (required), secret}.
type testTypes struct{}

func (testTypes) CheckConfig(typ string, cfg, prev map[string]any) (map[string]any, error) {
	if typ != "hook" {
		return nil, &governance.FieldError{Field: "type", Message: "unknown"}
	}
	if u, _ := cfg["url"].(string); u == "" {
		return nil, &governance.FieldError{Field: "config.url", Message: "is required"}
	}
	if _, ok := cfg["secret"]; !ok && prev != nil {
		cfg["secret"] = prev["secret"]
	}
	return cfg, nil
}

func (testTypes) Secrets(string) []string { return []string{"secret"} }

func validDestination(name string) governance.Destination {
	return governance.Destination{Name: name, Type: "hook", Config: map[string]any{"url": "http://x.example/", "secret": "s3"},
		Owner: "Marketing", Purpose: "e-mail", DataCategories: []string{"contact"}, ConsentPurposes: []string{"marketing"}, MonthlyCost: 12}
}

func testDestinations(t *testing.T, e *env) {
	ctx := context.Background()
	it, admin := e.users[access.RoleIT], e.users[access.RoleAdmin]
	if _, err := e.s.CreateDestination(ctx, validDestination("x"), e.users[access.RoleAnalyst]); !errors.Is(err, governance.ErrForbidden) {
		t.Fatalf("analyst creates: %v", err)
	}
	// The approval state asked for (the decision rights' answer) wins
	// over the default by role.
	asked := validDestination("asked")
	asked.Approval = governance.Approved
	m, err := e.s.CreateDestination(ctx, asked, e.users[access.RoleMarketing])
	if err != nil || m.Approval != governance.Approved || m.ApprovedBy != e.users[access.RoleMarketing].ID || m.ApprovedAt == nil {
		t.Fatalf("marketing creates approved: %+v %v", m, err)
	}
	asked.Name, asked.Approval = "asked pending", governance.Pending
	m2, err := e.s.CreateDestination(ctx, asked, admin)
	if err != nil || m2.Approval != governance.Pending || m2.ApprovedAt != nil {
		t.Fatalf("admin creates pending: %+v %v", m2, err)
	}
	for _, id := range []string{m.ID, m2.ID} {
		if err := e.s.DeleteDestination(ctx, id, admin); err != nil {
			t.Fatal(err)
		}
	}
	d, err := e.s.CreateDestination(ctx, validDestination("CRM"), it)
	if err != nil {
		t.Fatal(err)
	}
	if d.Approval != governance.Pending || d.ApprovedAt != nil {
		t.Fatalf("created by it: %+v", d)
	}
	if _, err := e.s.CreateDestination(ctx, validDestination("crm"), it); !errors.Is(err, statestore.ErrConflict) {
		t.Fatalf("same name: %v", err)
	}
	a, err := e.s.CreateDestination(ctx, validDestination("Ads"), admin)
	if err != nil || a.Approval != governance.Approved || a.ApprovedAt == nil || a.ApprovedBy != admin.ID {
		t.Fatalf("created by admin: %+v %v", a, err)
	}
	got, err := e.s.GetDestination(ctx, d.ID)
	if err != nil || got.Config["secret"] != "s3" || got.ConsentPurposes[0] != "marketing" || got.MonthlyCost != 12 {
		t.Fatalf("get: %+v %v", got, err)
	}
	if r := e.s.Redact(got); r.Config["secret"] != governance.SecretSet || got.Config["secret"] != "s3" {
		t.Fatalf("redact: %v (original %v)", r.Config, got.Config)
	}
	// Approve: approvedAt set; reject then approve again moves it on.
	before := time.Now().Add(-time.Millisecond)
	d1, err := e.s.DecideDestination(ctx, d.ID, governance.Approve, "ok", it)
	if err != nil || d1.Approval != governance.Approved || d1.ApprovedAt == nil || d1.ApprovedAt.Before(before) {
		t.Fatalf("approve: %+v %v", d1, err)
	}
	if _, err := e.s.DecideDestination(ctx, d.ID, governance.Reject, "no", it); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Millisecond)
	d2, err := e.s.DecideDestination(ctx, d.ID, governance.Approve, "again", it)
	if err != nil || !d2.ApprovedAt.After(*d1.ApprovedAt) {
		t.Fatalf("re-approve: %+v %v", d2, err)
	}
	if _, err := e.s.DecideDestination(ctx, d.ID, "maybe", "", it); err == nil {
		t.Fatal("bad decision accepted")
	}
	if _, err := e.s.DecideDestination(ctx, d.ID, governance.Approve, "", e.users[access.RoleAnalyst]); !errors.Is(err, governance.ErrForbidden) {
		t.Fatalf("analyst decides: %v", err)
	}
	// A patch keeps the approval state, whoever makes it (whether it
	// needs approval first is the decision rights').
	owner := "Sales"
	p1, err := e.s.UpdateDestination(ctx, d.ID, governance.DestinationPatch{Owner: &owner}, it)
	if err != nil || p1.Approval != governance.Approved || p1.Owner != "Sales" {
		t.Fatalf("patch owner: %+v %v", p1, err)
	}
	before1, after1, err := e.s.PatchDestination(ctx, d.ID, governance.DestinationPatch{Config: map[string]any{"url": "http://y.example/"}})
	if err != nil || before1.Config["url"] != "http://x.example/" || after1.Config["url"] != "http://y.example/" || after1.Config["secret"] != "s3" {
		t.Fatalf("PatchDestination: %+v %+v %v", before1, after1, err)
	}
	if got, _ := e.s.GetDestination(ctx, d.ID); got.Config["url"] != "http://x.example/" {
		t.Fatalf("PatchDestination stored the change: %v", got.Config)
	}
	if _, _, err := e.s.PatchDestination(ctx, d.ID, governance.DestinationPatch{Config: map[string]any{"url": 7}}); err == nil {
		t.Fatal("PatchDestination accepted a bad config")
	}
	p2, err := e.s.UpdateDestination(ctx, d.ID, governance.DestinationPatch{Config: map[string]any{"url": "http://y.example/"}}, it)
	if err != nil || p2.Approval != governance.Approved || p2.Config["secret"] != "s3" || p2.Config["url"] != "http://y.example/" {
		t.Fatalf("patch config: %+v %v", p2, err)
	}
	p3, err := e.s.UpdateDestination(ctx, a.ID, governance.DestinationPatch{Config: map[string]any{"url": "http://z.example/"}}, admin)
	if err != nil || p3.Approval != governance.Approved {
		t.Fatalf("admin patch config: %+v %v", p3, err)
	}
	ds, err := e.s.ListDestinationDecisions(ctx, d.ID)
	if err != nil || len(ds) != 3 {
		t.Fatalf("decisions: %+v %v", ds, err)
	}
	// A decision the decision rights reached is recorded without the
	// check of the deciding user's role.
	if r, err := e.s.RecordDestinationDecision(ctx, d.ID, governance.Reject, "policy", e.users[access.RolePrivacy]); err != nil || r.Approval != governance.Rejected {
		t.Fatalf("RecordDestinationDecision: %+v %v", r, err)
	}
	if r, err := e.s.RecordDestinationDecision(ctx, d.ID, governance.Approve, "policy", e.users[access.RoleMarketing]); err != nil ||
		r.Approval != governance.Approved || r.ApprovedBy != e.users[access.RoleMarketing].ID {
		t.Fatalf("RecordDestinationDecision approve: %+v %v", r, err)
	}
	// List pages.
	page1, next, err := e.s.ListDestinations(ctx, 1, "")
	if err != nil || len(page1) != 1 || next == "" {
		t.Fatalf("list: %v %q %v", page1, next, err)
	}
	page2, next, err := e.s.ListDestinations(ctx, 1, next)
	if err != nil || len(page2) != 1 || next != "" || page2[0].ID == page1[0].ID {
		t.Fatalf("list page 2: %v %q %v", page2, next, err)
	}
	if err := e.s.DeleteDestination(ctx, d.ID, it); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.GetDestination(ctx, d.ID); !errors.Is(err, statestore.ErrNotFound) {
		t.Fatalf("get deleted: %v", err)
	}
	if err := e.s.DeleteDestination(ctx, d.ID, it); !errors.Is(err, statestore.ErrNotFound) {
		t.Fatalf("delete again: %v", err)
	}
	all, err := e.s.AllDestinations(ctx)
	if err != nil || len(all) != 1 {
		t.Fatalf("all: %v %v", all, err)
	}
}

func testDestinationValidation(t *testing.T, e *env) {
	ctx := context.Background()
	it := e.users[access.RoleIT]
	for _, tc := range []struct {
		field string
		edit  func(d *governance.Destination)
	}{
		{"name", func(d *governance.Destination) { d.Name = "" }},
		{"type", func(d *governance.Destination) { d.Type = "" }},
		{"type", func(d *governance.Destination) { d.Type = "fax" }},
		{"config.url", func(d *governance.Destination) { d.Config = nil }},
		{"owner", func(d *governance.Destination) { d.Owner = "" }},
		{"monthlyCost", func(d *governance.Destination) { d.MonthlyCost = -1 }},
		{"consentPurposes", func(d *governance.Destination) { d.ConsentPurposes = []string{" "} }},
		{"filter.types", func(d *governance.Destination) { d.Filter.Types = []string{"click"} }},
		{"mapping[0].action", func(d *governance.Destination) {
			d.Mapping = []governance.MappingRule{{Field: "traits.email", Action: "encrypt"}}
		}},
		{"mapping[0].to", func(d *governance.Destination) {
			d.Mapping = []governance.MappingRule{{Field: "traits.email", Action: "rename"}}
		}},
		{"mapping[1].field", func(d *governance.Destination) {
			d.Mapping = []governance.MappingRule{{Field: "a", Action: "drop"}, {Field: "messageId", Action: "hash"}}
		}},
	} {
		d := validDestination("v")
		tc.edit(&d)
		_, err := e.s.CreateDestination(ctx, d, it)
		var fe *governance.FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("want a FieldError for %s, got %v", tc.field, err)
		}
	}
	d := validDestination("ok")
	d.Filter = governance.Filter{Types: []string{"track", "track"}, Events: []string{"Order Completed"}}
	d.Mapping = []governance.MappingRule{{Field: "traits.email", Action: "hash"}, {Field: "properties.a", Action: "rename", To: "properties.b"}}
	got, err := e.s.CreateDestination(ctx, d, it)
	if err != nil || len(got.Filter.Types) != 1 || len(got.Mapping) != 2 {
		t.Fatalf("valid: %+v %v", got, err)
	}
	back, err := e.s.GetDestination(ctx, got.ID)
	if err != nil || back.Filter.Events[0] != "Order Completed" || back.Mapping[1].To != "properties.b" {
		t.Fatalf("stored: %+v %v", back, err)
	}
}
