package access_test

import (
	"strings"
	"testing"

	"tandem/access"
	"tandem/access/accesstest"
	"tandem/statestore/statetest"
	"tandem/testserver"
)

// TestMain stops the test servers TestStore started.
func TestMain(m *testing.M) { testserver.Main(m) }

// TestStore runs the package's suite on every state store backend.
func TestStore(t *testing.T) {
	statetest.Each(t, accesstest.Run)
}

func TestCan(t *testing.T) {
	all := access.Permissions
	for _, tc := range []struct {
		role    access.Role
		allowed []access.Permission
	}{
		{access.RoleAdmin, all},
		{access.RoleIT, []access.Permission{access.ProposeChanges, access.ProposeSettings, access.DecideApprovals, access.ReadEvents,
			access.ReadQuarantine, access.ReplayQuarantine, access.ReadCatalog, access.ReadAnalytics, access.RunImports, access.ReadExperiments, access.ReadAudit, access.ManageDestinations, access.ManageTrackingPlans, access.ReadTrackingPlans, access.ReadChanges, access.ApproveChanges, access.ReadRecords}},
		{access.RoleMarketing, []access.Permission{access.ProposeChanges, access.ProposeSettings, access.ReadEvents, access.ReadCatalog, access.ReadAnalytics, access.ReadProfiles, access.ManageExperiments, access.ReadExperiments, access.ReadTrackingPlans, access.ManageAudiences, access.ReadChanges, access.ApproveChanges, access.ReadConsentRates}},
		{access.RoleAnalyst, []access.Permission{access.ReadEvents, access.ReadCatalog, access.ReadAnalytics, access.ReadProfiles, access.ManageExperiments, access.ReadExperiments, access.ManageAudiences, access.ReadConsentRates}},
		{access.RolePrivacy, []access.Permission{access.ProposeSettings, access.ReadEvents, access.ReadQuarantine, access.ReadCatalog, access.ReadProfiles, access.UnmergeProfiles, access.ReadAudit, access.WriteConsent, access.ManageRequests, access.ReadPII, access.ReadChanges, access.ApproveChanges, access.ReadConsentRates, access.ReadRecords, access.RunRetention}},
		{access.RoleService, []access.Permission{access.ReadCatalog, access.ReadAnalytics, access.ReadProfiles, access.ReadExperiments, access.ReadPII}},
		{access.RoleSales, []access.Permission{access.ReadCatalog, access.ReadAnalytics, access.ReadProfiles, access.ReadExperiments, access.ReadPII}},
		{access.Role(""), nil},
		{access.Role("root"), nil},
		{access.Role("ADMIN"), nil},
	} {
		for _, p := range all {
			want := false
			for _, a := range tc.allowed {
				want = want || a == p
			}
			if got := access.Can(tc.role, p); got != want {
				t.Errorf("Can(%q, %s) = %v, want %v", tc.role, p, got, want)
			}
		}
		if access.Can(tc.role, access.Permission("unknown")) {
			t.Errorf("Can(%q, unknown) = true", tc.role)
		}
	}
	// Only admin manages users (others with changes:propose may propose
	// new users, as the decision rights allow).
	for _, r := range access.Roles {
		if access.Can(r, access.ManageUsers) != (r == access.RoleAdmin) {
			t.Errorf("Can(%s, ManageUsers) = %v", r, access.Can(r, access.ManageUsers))
		}
	}
}

func TestRoles(t *testing.T) {
	want := []string{"admin", "it", "marketing", "analyst", "privacy", "service", "sales"}
	if len(access.Roles) != len(want) {
		t.Fatalf("Roles = %q, want %q", access.Roles, want)
	}
	for i, r := range access.Roles {
		if string(r) != want[i] || !r.Valid() {
			t.Errorf("Roles[%d] = %q (valid %v), want %q", i, r, r.Valid(), want[i])
		}
	}
	for _, r := range []access.Role{"", "Admin", "root", " admin"} {
		if r.Valid() {
			t.Errorf("Role(%q).Valid() = true", r)
		}
	}
}

func TestNewToken(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		tok, err := access.NewToken()
		if err != nil {
			t.Fatal(err)
		}
		body, ok := strings.CutPrefix(tok, access.TokenPrefix)
		if !ok || len(body) != 52 || strings.Trim(body, "abcdefghijklmnopqrstuvwxyz234567") != "" {
			t.Fatalf("NewToken = %q: want %q and 52 base32 characters", tok, access.TokenPrefix)
		}
		if seen[tok] {
			t.Fatalf("NewToken repeated %q", tok)
		}
		seen[tok] = true
	}
}

func TestValidateName(t *testing.T) {
	for _, tc := range []struct {
		value string
		ok    bool
	}{
		{"ok", true},
		{"Zoë", true},
		{"", false},
		{"a\tb", false},
		{"a\x00", false},
		{"\xff", false},
		{"abcde", true},
		{"abcdef", false},
	} {
		err := access.ValidateName("f", tc.value, 5)
		if (err == nil) != tc.ok {
			t.Errorf("ValidateName(%q) = %v, want ok %v", tc.value, err, tc.ok)
		}
		if fe, isFE := err.(*access.FieldError); err != nil && (!isFE || fe.Field != "f") {
			t.Errorf("ValidateName(%q) = %#v, want a FieldError for f", tc.value, err)
		}
	}
}
