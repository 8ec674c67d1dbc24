package governance

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"
)

// Tool is one system in the catalogue: a source, or (from the delivery
// side, through a [ToolProvider]) a destination.
type Tool struct {
	ID              string     `json:"id"`
	Kind            string     `json:"kind"` // "source" or "destination"
	Type            string     `json:"type"` // a source's kind (web, crm, …), a destination's type (webhook, …)
	Name            string     `json:"name"`
	Owner           string     `json:"owner"` // the department
	Purpose         string     `json:"purpose"`
	DataCategories  []string   `json:"dataCategories"`
	ConsentPurposes []string   `json:"consentPurposes"`
	MonthlyCost     float64    `json:"monthlyCost"`
	Approval        string     `json:"approval"`
	ApprovedBy      string     `json:"approvedBy"` // user id; "" when not approved
	ApprovedAt      *time.Time `json:"approvedAt"` // null when not approved
}

// Flow is data going from one tool to another.
type Flow struct {
	From         string `json:"from"` // tool ids
	To           string `json:"to"`
	Events30d    int64  `json:"events30d"`    // events carried in the last 30 days
	PersonalData bool   `json:"personalData"` // it carries a personal data category
}

// ToolProvider contributes tools and flows to the catalogue. The
// governance [Store] is the provider of sources ([Store.CatalogTools]);
// destinations plug in with a provider of their own (api.Options.Catalog).
type ToolProvider interface {
	CatalogTools(ctx context.Context) ([]Tool, []Flow, error)
}

// Catalog is the answer of GET /catalog.
type Catalog struct {
	Tools []Tool `json:"tools"`
	Flows []Flow `json:"flows"`
}

// BuildCatalog asks every provider for its tools and flows. A flow
// carries personal data when its provider says so, or when either end
// declares a personal data category ([Personal]).
func BuildCatalog(ctx context.Context, providers ...ToolProvider) (Catalog, error) {
	c := Catalog{Tools: []Tool{}, Flows: []Flow{}}
	for _, p := range providers {
		tools, flows, err := p.CatalogTools(ctx)
		if err != nil {
			return Catalog{}, err
		}
		c.Tools = append(c.Tools, tools...)
		c.Flows = append(c.Flows, flows...)
	}
	byID := make(map[string]Tool, len(c.Tools))
	for _, t := range c.Tools {
		byID[t.ID] = t
	}
	for i, f := range c.Flows {
		if Personal(byID[f.From].DataCategories) || Personal(byID[f.To].DataCategories) {
			c.Flows[i].PersonalData = true
		}
	}
	return c, nil
}

// personalCategories are the data categories that are personal data about
// an identified person (in the sense of the decision-rights rules).
var personalCategories = map[string]bool{"contact": true, "sensitive": true, "payment": true, "identity": true, "location": true}

// Personal reports whether any of the categories is personal data.
func Personal(categories []string) bool {
	return slices.ContainsFunc(categories, func(c string) bool { return personalCategories[c] })
}

// CatalogTools lists every source as a tool. Who approved it and when is
// the last decision that approved it, or its creator at creation for a
// source an admin created (approved at once).
func (s *Store) CatalogTools(ctx context.Context) ([]Tool, []Flow, error) {
	var tools []Tool
	cursor := ""
	for {
		srcs, next, err := s.ListSources(ctx, 1000, cursor)
		if err != nil {
			return nil, nil, err
		}
		for _, src := range srcs {
			t := Tool{ID: src.ID, Kind: "source", Type: src.Kind, Name: src.Name, Owner: src.Owner, Purpose: src.Purpose,
				DataCategories: append([]string{}, src.DataCategories...), ConsentPurposes: []string{},
				MonthlyCost: src.MonthlyCost, Approval: src.Approval}
			if src.Approval == Approved {
				ds, err := s.ListDecisions(ctx, src.ID)
				if err != nil {
					return nil, nil, fmt.Errorf("governance: catalogue: %w", err)
				}
				by, at := src.CreatedBy, src.CreatedAt
				for _, d := range ds {
					if d.To == Approved && !d.DecidedAt.Before(at) {
						by, at = d.By, d.DecidedAt
					}
				}
				t.ApprovedBy, t.ApprovedAt = by, &at
			}
			tools = append(tools, t)
		}
		if next == "" {
			return tools, nil, nil
		}
		cursor = next
	}
}

// Department is one owner's part of the stack.
type Department struct {
	Owner          string   `json:"owner"`
	Tools          []string `json:"tools"` // tool ids
	MonthlyCost    float64  `json:"monthlyCost"`
	DataCategories []string `json:"dataCategories"` // sorted, each once
	Pending        int      `json:"pending"`        // tools not approved (pending, rejected or suspended)
}

// Report is the stack report by department (GET /catalog/report).
type Report struct {
	Departments []Department `json:"departments"`
	MonthlyCost float64      `json:"monthlyCost"`
	// UnjustifiedFlows carry personal data to a tool that is not approved,
	// states no purpose, or (a destination) names no consent purpose.
	UnjustifiedFlows []Flow `json:"unjustifiedFlows"`
}

// BuildReport sums the catalogue up by department.
func BuildReport(c Catalog) Report {
	r := Report{Departments: []Department{}, UnjustifiedFlows: []Flow{}}
	byOwner := map[string]*Department{}
	byID := map[string]Tool{}
	for _, t := range c.Tools {
		byID[t.ID] = t
		d := byOwner[t.Owner]
		if d == nil {
			d = &Department{Owner: t.Owner, DataCategories: []string{}}
			byOwner[t.Owner] = d
		}
		d.Tools = append(d.Tools, t.ID)
		d.MonthlyCost += t.MonthlyCost
		r.MonthlyCost += t.MonthlyCost
		for _, cat := range t.DataCategories {
			if !slices.Contains(d.DataCategories, cat) {
				d.DataCategories = append(d.DataCategories, cat)
			}
		}
		if t.Approval != Approved {
			d.Pending++
		}
	}
	for _, d := range byOwner {
		slices.Sort(d.DataCategories)
		r.Departments = append(r.Departments, *d)
	}
	slices.SortFunc(r.Departments, func(a, b Department) int { return cmp.Compare(a.Owner, b.Owner) })
	for _, f := range c.Flows {
		to, ok := byID[f.To]
		if f.PersonalData && (!ok || to.Approval != Approved || to.Purpose == "" || (to.Kind == "destination" && len(to.ConsentPurposes) == 0)) {
			r.UnjustifiedFlows = append(r.UnjustifiedFlows, f)
		}
	}
	return r
}

// DestinationTools is the catalogue's provider of destinations (the
// governance [Store] keeps them; the delivery engine sends to them and
// provides the flows, from its delivery counts).
type DestinationTools struct{ Store *Store }

// CatalogTools lists every destination as a tool, with who approved it
// and when (its last approval).
func (d DestinationTools) CatalogTools(ctx context.Context) ([]Tool, []Flow, error) {
	var tools []Tool
	cursor := ""
	for {
		ds, next, err := d.Store.ListDestinations(ctx, 1000, cursor)
		if err != nil {
			return nil, nil, fmt.Errorf("governance: catalogue: %w", err)
		}
		for _, dst := range ds {
			t := Tool{ID: dst.ID, Kind: "destination", Type: dst.Type, Name: dst.Name, Owner: dst.Owner, Purpose: dst.Purpose,
				DataCategories: append([]string{}, dst.DataCategories...), ConsentPurposes: append([]string{}, dst.ConsentPurposes...),
				MonthlyCost: dst.MonthlyCost, Approval: dst.Approval}
			if dst.Approval == Approved && dst.ApprovedAt != nil {
				at := *dst.ApprovedAt
				t.ApprovedBy, t.ApprovedAt = dst.ApprovedBy, &at
			}
			tools = append(tools, t)
		}
		if next == "" {
			return tools, nil, nil
		}
		cursor = next
	}
}
