package governance_test

import (
	"context"
	"slices"
	"testing"

	"tandem/governance"
)

type fakeDestinations struct{}

func (fakeDestinations) CatalogTools(context.Context) ([]governance.Tool, []governance.Flow, error) {
	return []governance.Tool{
			{ID: "dst_mail", Kind: "destination", Owner: "marketing", Purpose: "newsletters", DataCategories: []string{"contact"}, MonthlyCost: 100, Approval: governance.Approved},
			{ID: "dst_ads", Kind: "destination", Owner: "marketing", Purpose: "ads", DataCategories: []string{"contact"}, ConsentPurposes: []string{"advertising"}, MonthlyCost: 50, Approval: governance.Pending},
			{ID: "dst_ok", Kind: "destination", Owner: "sales", Purpose: "crm", DataCategories: []string{"contact", "payment"}, ConsentPurposes: []string{"contract"}, MonthlyCost: 20, Approval: governance.Approved},
		}, []governance.Flow{
			{From: "src_web", To: "dst_mail", Events30d: 5, PersonalData: true}, // no consent purpose
			{From: "src_web", To: "dst_ads", Events30d: 5, PersonalData: true},  // not approved
			{From: "src_web", To: "dst_ok", Events30d: 5, PersonalData: true},   // justified
			{From: "src_web", To: "dst_ads", Events30d: 5, PersonalData: false}, // personal by the destination's categories
		}, nil
}

type fakeSources struct{}

func (fakeSources) CatalogTools(context.Context) ([]governance.Tool, []governance.Flow, error) {
	return []governance.Tool{{ID: "src_web", Kind: "source", Owner: "marketing", DataCategories: []string{"behavioural"}, MonthlyCost: 10, Approval: governance.Approved}}, nil, nil
}

func TestReport(t *testing.T) {
	c, err := governance.BuildCatalog(context.Background(), fakeSources{}, fakeDestinations{})
	if err != nil || len(c.Tools) != 4 || len(c.Flows) != 4 {
		t.Fatalf("catalogue %+v %v", c, err)
	}
	r := governance.BuildReport(c)
	if r.MonthlyCost != 180 || len(r.Departments) != 2 {
		t.Fatalf("report %+v", r)
	}
	m := r.Departments[0]
	if m.Owner != "marketing" || m.MonthlyCost != 160 || m.Pending != 1 || !slices.Equal(m.Tools, []string{"src_web", "dst_mail", "dst_ads"}) ||
		!slices.Equal(m.DataCategories, []string{"behavioural", "contact"}) {
		t.Errorf("marketing %+v", m)
	}
	var to []string
	for _, f := range r.UnjustifiedFlows {
		to = append(to, f.To)
	}
	if !slices.Equal(to, []string{"dst_mail", "dst_ads", "dst_ads"}) {
		t.Errorf("unjustified flows to %v", to)
	}
	if !c.Flows[3].PersonalData || c.Flows[0].Events30d != 5 {
		t.Errorf("a flow to a destination declaring contact does not carry personal data: %+v", c.Flows[3])
	}
}
