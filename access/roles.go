//go:generate go run gen.go

package access

import "strings"

// Role is what a user is for; it decides what the user may do (see [Can]).
type Role string

// The roles. There are exactly these.
const (
	RoleAdmin     Role = "admin"     // everything, including users
	RoleIT        Role = "it"        // runs the platform: sources, approvals, events, quarantine
	RoleMarketing Role = "marketing" // reads events and the catalogue
	RoleAnalyst   Role = "analyst"   // reads events and the catalogue
	RolePrivacy   Role = "privacy"   // data protection: reads events, quarantine, catalogue
	RoleService   Role = "service"   // machine accounts: read the catalogue
	RoleSales     Role = "sales"     // reads the catalogue
)

// Roles lists every role.
var Roles = []Role{RoleAdmin, RoleIT, RoleMarketing, RoleAnalyst, RolePrivacy, RoleService, RoleSales}

// Valid reports whether r is one of [Roles].
func (r Role) Valid() bool {
	_, ok := grants[r]
	return ok
}

func roleList() string {
	names := make([]string, len(Roles))
	for i, r := range Roles {
		names[i] = string(r)
	}
	return strings.Join(names, ", ")
}

// Permission is something a role may be allowed to do. Its value is a
// stable name for logs and error messages.
type Permission string

// The permissions.
const (
	// ManageUsers: list users, and create them directly whatever the
	// decision rights say (admin); other roles with ProposeChanges
	// propose new users under the decision rights (kind users).
	ManageUsers Permission = "users:manage"
	// ProposeChanges: propose new and changed sources and destinations;
	// the decision rights (package policy) say who may propose which
	// kind of change and whether it needs approval first.
	ProposeChanges Permission = "changes:propose"
	// ProposeSettings: propose new identity rules, lifecycle stages,
	// consent defaults and retention (PUT of each); as with
	// ProposeChanges, the decision rights say who may propose which and
	// whether it needs approval first: admin, it, marketing and privacy.
	ProposeSettings   Permission = "settings:propose"
	DecideApprovals   Permission = "approvals:decide"   // approve or reject sources and destinations
	ReadEvents        Permission = "events:read"        // read events and profiles
	ReadQuarantine    Permission = "quarantine:read"    // list quarantined events (they hold raw payloads)
	ReplayQuarantine  Permission = "quarantine:replay"  // replay quarantined events
	ReadCatalog       Permission = "catalog:read"       // read the catalogue: sources, destinations, flows
	ReadAnalytics     Permission = "analytics:read"     // funnels, paths, retention, journeys (counts, sample profile ids), attribution and cost-and-return
	RunImports        Permission = "imports:run"        // bulk-import files into a source and read their reports
	ReadProfiles      Permission = "profiles:read"      // look up profiles, their timelines and explanations
	UnmergeProfiles   Permission = "profiles:unmerge"   // split a profile (a decision about a person's data)
	ManageExperiments Permission = "experiments:manage" // define experiments
	ReadExperiments   Permission = "experiments:read"   // list experiments and read their results (aggregates)
	ReadAudit         Permission = "audit:read"         // read the audit log: who changed what, who read whose data
	// ManageDestinations: create, change and delete destinations, read
	// their delivery attempts and replay their dead letters.
	ManageDestinations Permission = "destinations:manage"
	// WriteConsent records a person's consent decisions through the API
	// (PUT /profiles/{id}/consent): admin and privacy.
	WriteConsent Permission = "consent:write"
	// ManageTrackingPlans: put sources' tracking plans (the schemas their
	// events must follow) and draft them from recent events: admin and it.
	ManageTrackingPlans Permission = "trackingplans:manage"
	// ReadTrackingPlans: read tracking plans and the unplanned events a
	// source sends (marketing reads them; proposing changes comes with
	// change requests).
	ReadTrackingPlans Permission = "trackingplans:read"
	// ManageRequests files data-subject requests (access, erasure,
	// objection, portability), follows them and reads their exports:
	// admin and privacy.
	ManageRequests Permission = "privacy:requests"
	// ReadPII: see personal data (e-mails, phones, names, contact traits)
	// unmasked in every answer.
	ReadPII Permission = "pii:read"
	// ManageAudiences: define and delete computed traits and audiences
	// (reading them, and profiles' values, needs ReadProfiles).
	ManageAudiences Permission = "audiences:manage"
	// ReadConsentRates: consent rates per purpose, aggregates over
	// everyone who decided (no person): admin, privacy, marketing and
	// analyst.
	ReadConsentRates Permission = "consent:rates"
	// ReadChanges: list and read change requests (those the caller
	// proposed, must approve or is informed of; admin all).
	ReadChanges Permission = "changes:read"
	// ApproveChanges: approve or reject change requests that need the
	// caller's role.
	ApproveChanges Permission = "changes:approve"
	// ReadRecords reads the records of processing (GDPR Art. 30) and the
	// retention policy: admin, privacy and it (which answers for the
	// systems).
	ReadRecords Permission = "privacy:records"
	// RunRetention removes expired data now, outside the schedule: admin
	// and privacy.
	RunRetention Permission = "retention:run"
)

// Permissions lists every permission.
var Permissions = []Permission{ManageUsers, ProposeChanges, ProposeSettings, DecideApprovals, ReadEvents, ReadQuarantine, ReplayQuarantine, ReadCatalog, ReadAnalytics, RunImports, ReadProfiles, UnmergeProfiles, ManageExperiments, ReadExperiments, ReadAudit, ManageDestinations, WriteConsent, ReadPII, ManageTrackingPlans, ReadTrackingPlans, ManageRequests, ManageAudiences, ReadChanges, ApproveChanges, ReadConsentRates, ReadRecords, RunRetention}

// grants is the authorization table (see Can).
var grants = map[Role][]Permission{
	RoleAdmin:     Permissions,
	RoleIT:        {ProposeChanges, ProposeSettings, DecideApprovals, ReadEvents, ReadQuarantine, ReplayQuarantine, ReadCatalog, ReadAnalytics, RunImports, ReadExperiments, ReadAudit, ManageDestinations, ManageTrackingPlans, ReadTrackingPlans, ReadChanges, ApproveChanges, ReadRecords},
	RoleMarketing: {ProposeChanges, ProposeSettings, ReadEvents, ReadCatalog, ReadAnalytics, ReadProfiles, ManageExperiments, ReadExperiments, ReadTrackingPlans, ManageAudiences, ReadChanges, ApproveChanges, ReadConsentRates},
	RoleAnalyst:   {ReadEvents, ReadCatalog, ReadAnalytics, ReadProfiles, ManageExperiments, ReadExperiments, ManageAudiences, ReadConsentRates},
	RolePrivacy:   {ProposeSettings, ReadEvents, ReadQuarantine, ReadCatalog, ReadProfiles, UnmergeProfiles, ReadAudit, WriteConsent, ManageRequests, ReadPII, ReadChanges, ApproveChanges, ReadConsentRates, ReadRecords, RunRetention},
	RoleService:   {ReadCatalog, ReadAnalytics, ReadProfiles, ReadExperiments, ReadPII},
	RoleSales:     {ReadCatalog, ReadAnalytics, ReadProfiles, ReadExperiments, ReadPII},
}

// Can reports whether a user with role may do p. The table is grants
// above; docs/management.md shows it (generated by `go generate ./access`,
// and TestDocsTable fails when the docs are stale).
//
// That is: admin may do everything; it runs sources, approvals, events,
// the quarantine, bulk imports and destinations; analyst and marketing read events and
// the catalogue; every role but privacy reads the analytics (aggregates
// over the journey, with a few sample profile ids per hand-off);
// privacy reads events and the quarantine (and the catalogue, which is its
// record of processing); service and sales read the catalogue and the
// analytics. Every role but it reads profiles (customer service and sales
// look customers up; it runs the platform, not the customer
// relationship); only admin and privacy may unmerge, a decision about a
// person's data. Personal data (e-mails, phones, names, contact traits)
// is shown unmasked to admin, privacy, service and sales, who deal with
// the person; it, marketing and analyst see it masked (pseudonyms, see
// package api) in every answer. Marketing and analyst define experiments (A/B tests);
// whoever reads the analytics reads their results. The audit log (who
// changed what, who read whose data) is read by admin, it (which answers
// for the platform's changes) and privacy (which answers for reads of
// personal data). Only admin and privacy record consent decisions
// through the API (consent:write, not in the table) and file
// data-subject requests (privacy:requests); consent rates per purpose
// (aggregates) are read by admin, privacy, marketing and analyst
// (consent:rates). Tracking plans are put by
// admin and it, and read by marketing too. Admin, it and marketing
// propose sources and destinations (changes:propose); whether a proposal
// takes effect at once or becomes a change request, and whose approval
// it then needs, is the decision rights' (package policy), not this
// table's; so it is for new identity rules, lifecycle stages, consent
// defaults and retention (settings:propose: admin, it, marketing,
// privacy) and for new users (changes:propose; listing users stays
// admin's). Admin, it, marketing and privacy read and decide the change
// requests their role is part of. The records of processing and the
// retention policy are read by admin, privacy and it; only admin and
// privacy run retention outside its schedule. An unknown role may do
// nothing.
func Can(role Role, p Permission) bool {
	for _, g := range grants[role] {
		if g == p {
			return true
		}
	}
	return false
}

// PermissionsOf returns what a user with role may do, in the order of
// [Permissions]; none for an unknown role.
func PermissionsOf(role Role) []Permission {
	out := []Permission{}
	for _, p := range Permissions {
		if Can(role, p) {
			out = append(out, p)
		}
	}
	return out
}
