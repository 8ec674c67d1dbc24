package privacy

import (
	"maps"
	"slices"
	"strings"
	"time"

	"tandem/governance"
)

// Records of processing activities (GDPR Art. 30), generated from the
// catalogue and the configuration: one activity per tool, with its
// purposes, the categories of data and of data subjects, the recipients,
// the retention and the consent purposes it relies on
// (GET /api/v1/privacy/records; docs/privacy.md).

// Records is the answer of GET /api/v1/privacy/records.
type Records struct {
	GeneratedAt time.Time  `json:"generatedAt"`
	Activities  []Activity `json:"activities"`
	// ConsentPurposes are the configured purposes: each with its default
	// when a person made no decision ("granted", "refused"), and whether
	// Sec-GPC or an objection refuses it.
	ConsentPurposes []PurposeRecord `json:"consentPurposes"`
	// ClassifiedFields are the fields tagged with a data category
	// (defaults, configuration, tracking plans): path → category.
	ClassifiedFields map[string]string `json:"classifiedFields"`
	// Retention is the configured retention, as Go durations ("" for none).
	Retention RetentionRecord `json:"retention"`
}

// Activity is one tool's processing.
type Activity struct {
	Tool              ToolRef     `json:"tool"`
	Purposes          []string    `json:"purposes"`
	DataCategories    []string    `json:"dataCategories"`
	PersonalData      bool        `json:"personalData"`
	SubjectCategories []string    `json:"subjectCategories"`
	Recipients        []ToolRef   `json:"recipients"`
	Retention         AgeRecord   `json:"retention"`
	ConsentPurposes   []string    `json:"consentPurposes"`
	Approval          string      `json:"approval"`
	ApprovedBy        string      `json:"approvedBy"`
	ApprovedAt        *time.Time  `json:"approvedAt"`
	Events30d         int64       `json:"events30d"` // events it sent (a source) or received (a destination) over 30 days
	Flows             []FlowCount `json:"flows"`
}

// ToolRef names a tool.
type ToolRef struct {
	ID    string `json:"id"`
	Kind  string `json:"kind"`
	Type  string `json:"type"`
	Name  string `json:"name"`
	Owner string `json:"owner"`
}

// FlowCount is the other end of one of an activity's flows.
type FlowCount struct {
	Tool      string `json:"tool"` // id
	Events30d int64  `json:"events30d"`
}

// AgeRecord is a maximum age and what sets it.
type AgeRecord struct {
	MaxAge string `json:"maxAge"` // a Go duration; "" when kept until erased
	Basis  string `json:"basis"`  // source, category NAME, default, sources (a destination: its sources'), or ""
}

// PurposeRecord is one configured consent purpose.
type PurposeRecord struct {
	Purpose   string `json:"purpose"`
	Default   string `json:"default"` // granted, refused
	GPC       bool   `json:"gpc"`
	Objection bool   `json:"objection"`
}

// RetentionRecord is the retention configuration.
type RetentionRecord struct {
	Default        string            `json:"default"`
	Sources        map[string]string `json:"sources"`
	Categories     map[string]string `json:"categories"`
	ConsentHistory string            `json:"consentHistory"`
}

// RecordsInput is what the records are built from.
type RecordsInput struct {
	Catalog        governance.Catalog
	Destinations   []governance.Destination // for their source filters
	Consent        Config
	Retention      Retention
	Classification *Classification
	// SourceCategories are the categories each source's tracking plan
	// tags fields with (added to the source's declared ones).
	SourceCategories map[string][]string
	Subjects         []string // default DefaultSubjects
	Now              time.Time
}

func dur(d time.Duration) string {
	if d <= 0 {
		return ""
	}
	return d.String()
}

func durs(m map[string]time.Duration) map[string]string {
	out := map[string]string{}
	for k, d := range m {
		out[k] = dur(d)
	}
	return out
}

// BuildRecords builds the records of processing.
func BuildRecords(in RecordsInput) Records {
	subjects := in.Subjects
	if len(subjects) == 0 {
		subjects = DefaultSubjects
	}
	r := Records{GeneratedAt: in.Now.UTC(), Activities: []Activity{}, ConsentPurposes: []PurposeRecord{},
		ClassifiedFields: in.Classification.Fields(),
		Retention: RetentionRecord{Default: dur(in.Retention.Default), Sources: durs(in.Retention.Sources),
			Categories: durs(in.Retention.Categories), ConsentHistory: dur(in.Retention.ConsentHistory)}}

	// Consent purposes: the defaults, GPC's and the objection's.
	purposes := map[string]*PurposeRecord{}
	get := func(name string) *PurposeRecord {
		k := strings.ToLower(name)
		if p := purposes[k]; p != nil {
			return p
		}
		p := &PurposeRecord{Purpose: name, Default: "refused"}
		purposes[k] = p
		return p
	}
	for name, v := range in.Consent.Defaults {
		if v {
			get(name).Default = "granted"
		} else {
			get(name)
		}
	}
	for _, name := range in.Consent.GPCPurposes {
		get(name).GPC = true
	}
	for _, name := range in.Consent.Objection() {
		get(name).Objection = true
	}

	tools := map[string]governance.Tool{}
	for _, t := range in.Catalog.Tools {
		tools[t.ID] = t
	}
	flowsFrom, flowsTo := map[string][]governance.Flow{}, map[string][]governance.Flow{}
	for _, f := range in.Catalog.Flows {
		flowsFrom[f.From] = append(flowsFrom[f.From], f)
		flowsTo[f.To] = append(flowsTo[f.To], f)
	}
	ref := func(t governance.Tool) ToolRef {
		return ToolRef{ID: t.ID, Kind: t.Kind, Type: t.Type, Name: t.Name, Owner: t.Owner}
	}
	srcAges := map[string]AgeRecord{}
	for _, t := range in.Catalog.Tools {
		if t.Kind == "source" {
			age, basis := in.Retention.AgeOf(governance.Source{ID: t.ID, Name: t.Name, DataCategories: t.DataCategories})
			srcAges[t.ID] = AgeRecord{MaxAge: dur(age), Basis: basis}
		}
	}
	for _, t := range in.Catalog.Tools {
		a := Activity{Tool: ref(t), Purposes: []string{}, DataCategories: slices.Clone(t.DataCategories),
			SubjectCategories: slices.Clone(subjects),
			Recipients:        []ToolRef{}, ConsentPurposes: []string{}, Approval: t.Approval, ApprovedBy: t.ApprovedBy,
			ApprovedAt: t.ApprovedAt, Flows: []FlowCount{}}
		for _, c := range in.SourceCategories[t.ID] {
			if t.Kind == "source" && !slices.Contains(a.DataCategories, c) {
				a.DataCategories = append(a.DataCategories, c)
			}
		}
		if a.DataCategories == nil {
			a.DataCategories = []string{}
		}
		a.PersonalData = governance.Personal(a.DataCategories)
		if strings.TrimSpace(t.Purpose) != "" {
			a.Purposes = append(a.Purposes, t.Purpose)
		}
		consent := map[string]string{}
		switch t.Kind {
		case "source":
			a.Retention = srcAges[t.ID]
			// Recipients: every approved destination whose filter lets
			// the source's events through, and any that received them in
			// the last 30 days.
			rec := map[string]bool{}
			for _, d := range in.Destinations {
				if d.Approval == governance.Approved && (len(d.Filter.Sources) == 0 || slices.Contains(d.Filter.Sources, t.ID)) {
					rec[d.ID] = true
				}
			}
			for _, f := range flowsFrom[t.ID] {
				rec[f.To] = true
				a.Events30d += f.Events30d
				a.Flows = append(a.Flows, FlowCount{Tool: f.To, Events30d: f.Events30d})
			}
			for _, id := range slices.Sorted(maps.Keys(rec)) {
				dt, ok := tools[id]
				if !ok {
					dt = governance.Tool{ID: id, Kind: "destination"}
				}
				a.Recipients = append(a.Recipients, ref(dt))
				for _, p := range dt.ConsentPurposes {
					consent[strings.ToLower(p)] = p
				}
			}
		case "destination":
			// The destination is the recipient; what tandem keeps for it
			// (dead letters, attempts) follows its sources' ages.
			a.Recipients = append(a.Recipients, ref(t))
			a.Retention = AgeRecord{Basis: "sources"}
			for _, p := range t.ConsentPurposes {
				consent[strings.ToLower(p)] = p
			}
			for _, f := range flowsTo[t.ID] {
				a.Events30d += f.Events30d
				a.Flows = append(a.Flows, FlowCount{Tool: f.From, Events30d: f.Events30d})
			}
		}
		for _, k := range slices.Sorted(maps.Keys(consent)) {
			a.ConsentPurposes = append(a.ConsentPurposes, consent[k])
			get(consent[k])
		}
		r.Activities = append(r.Activities, a)
	}
	for _, k := range slices.Sorted(maps.Keys(purposes)) {
		r.ConsentPurposes = append(r.ConsentPurposes, *purposes[k])
	}
	return r
}
