package policy_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"

	"tandem/access"
	"tandem/audit"
	"tandem/policy"
	"tandem/statestore"
	"tandem/statestore/statetest"
	"tandem/testserver"
)

// TestMain stops the test servers TestStore started.
func TestMain(m *testing.M) { testserver.Main(m) }

var (
	admin     = access.User{ID: "usr_admin", Name: "Ada", Role: access.RoleAdmin}
	it        = access.User{ID: "usr_it", Name: "Ian", Role: access.RoleIT}
	it2       = access.User{ID: "usr_it2", Name: "Ina", Role: access.RoleIT}
	marketing = access.User{ID: "usr_mkt", Name: "Mia", Role: access.RoleMarketing}
	privacy   = access.User{ID: "usr_prv", Name: "Pia", Role: access.RolePrivacy}
	analyst   = access.User{ID: "usr_ana", Name: "Ann", Role: access.RoleAnalyst}
	sales     = access.User{ID: "usr_sal", Name: "Sal", Role: access.RoleSales}
)

func rules(t *testing.T, mutate func(*policy.Config)) *policy.Rules {
	t.Helper()
	c := policy.DefaultConfig()
	if mutate != nil {
		mutate(&c)
	}
	r, err := policy.New(c)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func preset(name string) func(*policy.Config) { return func(c *policy.Config) { c.Preset = name } }

func roles(rs ...access.Role) []access.Role { return rs }

// The Done-when cases as the rules see them, and the edges around them.
func TestAssess(t *testing.T) {
	itR, mktR, prvR := access.RoleIT, access.RoleMarketing, access.RolePrivacy
	for _, tc := range []struct {
		name     string
		preset   string
		kind     policy.Kind
		cats     []string
		by       access.User
		needs    []access.Role
		direct   bool
		informed []access.Role
	}{
		{"marketing-led: marketing's tool without personal data", policy.MarketingLed, policy.Source, []string{"behavioural"}, marketing, roles(mktR), true, roles(itR)},
		{"marketing-led: it proposes marketing's tool", policy.MarketingLed, policy.Destination, nil, it, roles(mktR), false, roles(itR)},
		{"marketing-led: contact brings it in", policy.MarketingLed, policy.Destination, []string{"contact"}, marketing, roles(itR, mktR), false, roles(itR)},
		{"joint: both needed", policy.Joint, policy.Source, nil, marketing, roles(itR, mktR), false, roles(prvR)},
		{"joint: it proposes", policy.Joint, policy.Destination, nil, it, roles(itR, mktR), false, roles(prvR)},
		{"it-led: contact destination by marketing", policy.ITLed, policy.Destination, []string{"contact"}, marketing, roles(itR), false, roles(mktR)},
		{"it-led: by it", policy.ITLed, policy.Destination, []string{"contact"}, it, roles(itR), true, roles(mktR)},
		{"sensitive needs it and privacy", policy.ITLed, policy.Source, []string{"sensitive", "contact"}, it, roles(itR, prvR), false, roles(mktR)},
		{"sensitive in marketing-led", policy.MarketingLed, policy.Source, []string{"sensitive"}, marketing, roles(itR, mktR, prvR), false, roles(itR)},
		{"categories count for data_categories", policy.MarketingLed, policy.DataCategories, []string{" payment "}, marketing, roles(itR, mktR), false, roles(itR, prvR)},
		{"not for a tracking plan", policy.MarketingLed, policy.TrackingPlan, []string{"sensitive"}, marketing, roles(mktR), true, roles(itR)},
		{"admin acts for every role", policy.Joint, policy.Destination, []string{"sensitive"}, admin, roles(itR, mktR, prvR), true, roles(prvR)},
		{"privacy proposes retention (joint)", policy.Joint, policy.Retention, nil, privacy, roles(itR, prvR), false, roles(mktR)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := rules(t, preset(tc.preset)).Assess(tc.kind, tc.cats, tc.by.Role)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(a.Needs, tc.needs) || a.Direct != tc.direct || !slices.Equal(a.Informed, tc.informed) {
				t.Errorf("got needs %v direct %v informed %v, want %v %v %v", a.Needs, a.Direct, a.Informed, tc.needs, tc.direct, tc.informed)
			}
		})
	}
	// Who may propose.
	for _, tc := range []struct {
		preset string
		kind   policy.Kind
		by     access.User
	}{{policy.ITLed, policy.Source, analyst}, {policy.ITLed, policy.IdentityRules, marketing}, {policy.Joint, policy.Users, sales},
		{policy.MarketingLed, policy.ConsentDefaults, it}} {
		if _, err := rules(t, preset(tc.preset)).Assess(tc.kind, nil, tc.by.Role); !errors.Is(err, policy.ErrForbidden) {
			t.Errorf("%s: %s proposes %s: %v, want forbidden", tc.preset, tc.by.Role, tc.kind, err)
		}
	}
	for _, k := range policy.Kinds {
		if _, err := rules(t, preset(policy.Joint)).Assess(k, nil, access.RoleAdmin); err != nil {
			t.Errorf("admin proposes %s: %v", k, err)
		}
	}
	if _, err := rules(t, nil).Assess("webhook", nil, access.RoleAdmin); err == nil {
		t.Error("an unknown kind was assessed")
	}
}

// Every preset has a rule for every kind, each needing someone's
// approval and letting someone besides admin propose it.
func TestPresets(t *testing.T) {
	for _, name := range policy.Presets {
		p := policy.Preset(name)
		for _, k := range policy.Kinds {
			r, ok := p[k]
			if !ok || len(r.Approve) == 0 || len(r.Propose) == 0 {
				t.Errorf("%s: %s: %+v", name, k, r)
			}
		}
	}
	if policy.Preset("cmo-led") != nil {
		t.Error("unknown preset")
	}
	// Preset returns a copy.
	policy.Preset(policy.ITLed)[policy.Source] = policy.Rule{}
	if len(policy.Preset(policy.ITLed)[policy.Source].Approve) == 0 {
		t.Error("Preset shares its table")
	}
}

// Configured rules replace the preset's list by list; a category rule
// replaces the default one, an empty one removes it; admin can be made to
// count only as admin.
func TestConfigLayers(t *testing.T) {
	r := rules(t, func(c *policy.Config) {
		c.Preset = policy.MarketingLed
		c.Rules = map[policy.Kind]policy.Rule{policy.Destination: {Approve: roles(access.RoleMarketing, access.RoleSales)}}
		c.Categories["contact"] = nil
		c.Categories["health"] = roles(access.RolePrivacy)
		c.AdminApprovesAll = false
	})
	if got := r.Rule(policy.Destination); !slices.Equal(got.Propose, roles(access.RoleIT, access.RoleMarketing)) || !slices.Equal(got.Inform, roles(access.RoleIT)) {
		t.Errorf("the preset's other lists: %+v", got)
	}
	a, err := r.Assess(policy.Destination, []string{"contact", "health"}, access.RoleMarketing)
	if err != nil || !slices.Equal(a.Needs, roles(access.RoleMarketing, access.RolePrivacy, access.RoleSales)) || a.Direct {
		t.Errorf("layered: %+v %v", a, err)
	}
	a, err = r.Assess(policy.Destination, nil, access.RoleAdmin)
	if err != nil || a.Direct {
		t.Errorf("admin without admin_approves_all: %+v %v", a, err)
	}
	for _, bad := range []func(*policy.Config){
		func(c *policy.Config) { c.Preset = "" },
		func(c *policy.Config) { c.Rules = map[policy.Kind]policy.Rule{"apps": {}} },
		func(c *policy.Config) {
			c.Rules = map[policy.Kind]policy.Rule{policy.Source: {Inform: roles("cfo")}}
		},
		func(c *policy.Config) { c.Categories[" contact"] = roles(access.RoleIT) },
		func(c *policy.Config) { c.Categories["x"] = roles("root") },
	} {
		c := policy.DefaultConfig()
		bad(&c)
		var ve *policy.ValidationError
		if _, err := policy.New(c); !errors.As(err, &ve) || ve.Key == "" {
			t.Errorf("%+v: %v, want a ValidationError", c, err)
		}
	}
}

func TestStore(t *testing.T) {
	statetest.Each(t, func(t *testing.T, open func(t *testing.T) *statestore.DB) {
		t.Run("Lifecycle", func(t *testing.T) { t.Parallel(); testLifecycle(t, open) })
		t.Run("List", func(t *testing.T) { t.Parallel(); testList(t, open) })
		t.Run("Admin", func(t *testing.T) { t.Parallel(); testAdmin(t, open) })
		t.Run("Settings", func(t *testing.T) { t.Parallel(); testSettings(t, open) })
	})
}

// The escalation rule: a user change granting admin needs an admin's
// approval, whoever else the preset lets approve users, and even when
// admin's approval does not count for every role.
func TestAssessUser(t *testing.T) {
	itR := access.RoleIT
	for _, tc := range []struct {
		name    string
		mutate  func(*policy.Config)
		granted access.Role
		by      access.User
		needs   []access.Role
		direct  bool
	}{
		{"it-led: it makes an analyst", nil, access.RoleAnalyst, it, roles(itR), true},
		{"it-led: it makes a service user, who reads personal data", nil, access.RoleService, it, roles(itR, access.RolePrivacy), false},
		{"it-led: privacy makes a service user", func(c *policy.Config) {
			c.Rules = map[policy.Kind]policy.Rule{policy.Users: {Propose: roles(access.RolePrivacy, itR), Approve: roles(itR)}}
		}, access.RoleService, privacy, roles(itR), false},
		{"it-led: it makes an admin", nil, access.RoleAdmin, it, roles(access.RoleAdmin, itR), false},
		{"joint: it makes an admin", preset(policy.Joint), access.RoleAdmin, it, roles(access.RoleAdmin, itR), false},
		{"admin makes an admin", nil, access.RoleAdmin, admin, roles(itR), true},
		{"admin not for all: it makes an admin", func(c *policy.Config) { c.AdminApprovesAll = false }, access.RoleAdmin, it,
			roles(access.RoleAdmin, itR), false},
		{"users approved by marketing alone: marketing makes an admin", func(c *policy.Config) {
			c.Rules = map[policy.Kind]policy.Rule{policy.Users: {Propose: roles(access.RoleMarketing), Approve: roles(access.RoleMarketing)}}
		}, access.RoleAdmin, marketing, roles(access.RoleAdmin, access.RoleMarketing), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := rules(t, tc.mutate).AssessUser(tc.granted, tc.by.Role)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(a.Needs, tc.needs) || a.Direct != tc.direct {
				t.Errorf("needs %v direct %v, want %v %v", a.Needs, a.Direct, tc.needs, tc.direct)
			}
		})
	}
	if _, err := rules(t, nil).AssessUser(access.RoleAnalyst, marketing.Role); !errors.Is(err, policy.ErrForbidden) {
		t.Errorf("it-led: marketing proposes a user: %v, want forbidden", err)
	}
}

// An approved setting is kept per kind, each put counting up its
// version, and read back by every kind.
func testSettings(t *testing.T, open func(t *testing.T) *statestore.DB) {
	ctx := context.Background()
	e := newEnv(t, open, rules(t, nil))
	if got, err := e.s.Settings(ctx); err != nil || len(got) != 0 {
		t.Fatalf("settings of a new store: %v %v", got, err)
	}
	if _, err := e.s.PutSetting(ctx, policy.IdentityRules, json.RawMessage(`{"types":[1]}`), it.ID, ""); err != nil {
		t.Fatal(err)
	}
	s2, err := e.s.PutSetting(ctx, policy.IdentityRules, json.RawMessage(`{"types":[2]}`), marketing.ID, "chg_x")
	if err != nil {
		t.Fatal(err)
	}
	if s2.Version != 2 || s2.Change != "chg_x" || s2.UpdatedBy != marketing.ID || string(s2.Value) != `{"types":[2]}` {
		t.Fatalf("second put: %+v", s2)
	}
	if _, err := e.s.PutSetting(ctx, policy.Retention, json.RawMessage(`{"default":"1h"}`), admin.ID, ""); err != nil {
		t.Fatal(err)
	}
	got, err := e.s.Settings(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[policy.IdentityRules].Version != 2 || string(got[policy.IdentityRules].Value) != `{"types":[2]}` ||
		got[policy.Retention].Version != 1 || got[policy.Retention].UpdatedAt.IsZero() {
		t.Errorf("settings: %+v", got)
	}
}

type env struct {
	s       *policy.Store
	log     *audit.Log
	applied []policy.Decided
	fail    error
}

func newEnv(t *testing.T, open func(t *testing.T) *statestore.DB, r *policy.Rules) *env {
	t.Helper()
	db := open(t)
	if err := db.Migrate(context.Background(), append(audit.Migrations(), policy.Migrations()...)...); err != nil {
		t.Fatal(err)
	}
	e := &env{log: audit.New(db)}
	e.s = policy.NewStore(db, r, e.log)
	for _, k := range policy.Kinds {
		e.s.Handle(k, func(_ context.Context, d policy.Decided) error {
			if e.fail != nil {
				return e.fail
			}
			e.applied = append(e.applied, d)
			return nil
		})
	}
	return e
}

func (e *env) propose(t *testing.T, k policy.Kind, cats []string, by access.User, subject string) policy.Change {
	t.Helper()
	a, err := e.s.Rules().Assess(k, cats, by.Role)
	if err != nil {
		t.Fatal(err)
	}
	c, err := e.s.Propose(context.Background(), policy.Proposal{Kind: k, Action: policy.Update, Subject: subject,
		Before: map[string]any{"dataCategories": []string{}}, After: map[string]any{"dataCategories": cats},
		Payload: map[string]any{"secret": "s3"}, By: by, Assessment: a})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func testLifecycle(t *testing.T, open func(t *testing.T) *statestore.DB) {
	ctx := context.Background()
	e := newEnv(t, open, rules(t, preset(policy.Joint)))
	// Joint, sensitive, proposed by marketing: it and privacy still needed.
	c := e.propose(t, policy.Destination, []string{"sensitive"}, marketing, "dst_1")
	if c.State != policy.Pending || !slices.Equal(c.Needs, roles(access.RoleIT, access.RoleMarketing, access.RolePrivacy)) ||
		len(c.Approvals) != 1 || c.Approvals[0].Role != access.RoleMarketing || c.ProposedBy != marketing.ID {
		t.Fatalf("proposed: %+v", c)
	}
	if got := c.Outstanding(e.s.Rules()); !slices.Equal(got, roles(access.RoleIT, access.RolePrivacy)) {
		t.Fatalf("outstanding: %v", got)
	}
	if _, err := e.s.Propose(ctx, policy.Proposal{Kind: policy.Source, Action: policy.Create, By: admin,
		Assessment: policy.Assessment{Direct: true}}); err == nil {
		t.Fatal("a direct change was kept as a change request")
	}
	// Not needed, or needed but approved already: forbidden.
	for _, u := range []access.User{analyst, sales, marketing} {
		if _, err := e.s.Decide(ctx, c.ID, policy.Approve, "", u); !errors.Is(err, policy.ErrForbidden) {
			t.Errorf("%s approves: %v, want forbidden", u.Role, err)
		}
	}
	var fe *statestore.FieldError
	if _, err := e.s.Decide(ctx, c.ID, "maybe", "", it); !errors.As(err, &fe) || fe.Field != "decision" {
		t.Errorf("bad decision: %v", err)
	}
	if _, err := e.s.Decide(ctx, "chg_nope", policy.Approve, "", it); !errors.Is(err, statestore.ErrNotFound) {
		t.Errorf("unknown change: %v", err)
	}
	c1, err := e.s.Decide(ctx, c.ID, policy.Approve, "DPA signed", it)
	if err != nil || c1.State != policy.Pending || len(c1.Approvals) != 2 || len(e.applied) != 0 {
		t.Fatalf("it approves: %+v %v (applied %d)", c1, err, len(e.applied))
	}
	// Another IT user cannot approve for IT twice.
	if _, err := e.s.Decide(ctx, c.ID, policy.Approve, "", it2); !errors.Is(err, policy.ErrForbidden) {
		t.Errorf("it approves twice: %v", err)
	}
	// The last approval carries it out; when that fails, nothing is
	// recorded and the change stays pending.
	e.fail = errors.New("name taken")
	if _, err := e.s.Decide(ctx, c.ID, policy.Approve, "", privacy); err == nil {
		t.Fatal("a failed applier was ignored")
	}
	if got, _ := e.s.Get(ctx, c.ID); got.State != policy.Pending || len(got.Approvals) != 2 {
		t.Fatalf("after the failed apply: %+v", got)
	}
	e.fail = nil
	c2, err := e.s.Decide(ctx, c.ID, policy.Approve, "ok", privacy)
	if err != nil || c2.State != policy.Approved || c2.DecidedAt == nil || len(e.applied) != 1 {
		t.Fatalf("privacy approves: %+v %v", c2, err)
	}
	d := e.applied[0]
	var payload map[string]string
	if err := json.Unmarshal(d.Payload, &payload); err != nil || payload["secret"] != "s3" || d.Decision != policy.Approve ||
		d.By.ID != privacy.ID || d.Proposer != (access.User{ID: marketing.ID, Name: marketing.Name, Role: marketing.Role}) {
		t.Errorf("applier got %+v (payload %s)", d, d.Payload)
	}
	if got, err := e.s.Get(ctx, c.ID); err != nil || got.State != policy.Approved || len(got.Approvals) != 3 ||
		got.Approvals[2].Comment != "ok" || string(got.Diff.After) != `{"dataCategories":["sensitive"]}` {
		t.Errorf("stored: %+v %v", got, err)
	}
	if _, err := e.s.Decide(ctx, c.ID, policy.Reject, "", admin); !errors.Is(err, policy.ErrDecided) {
		t.Errorf("decide a decided change: %v", err)
	}

	// A rejection settles it with the reason.
	r := e.propose(t, policy.Source, nil, it, "src_1")
	got, err := e.s.Decide(ctx, r.ID, policy.Reject, "no budget", marketing)
	if err != nil || got.State != policy.Rejected || got.Reason != "no budget" || len(e.applied) != 2 || e.applied[1].Decision != policy.Reject {
		t.Fatalf("reject: %+v %v", got, err)
	}
	if got, _ := e.s.Get(ctx, r.ID); got.Reason != "no budget" || got.State != policy.Rejected {
		t.Errorf("rejected, stored: %+v", got)
	}

	// The audit log has every proposal and decision, with the change id.
	entries, _, err := e.log.List(ctx, audit.Filter{}, 100, "")
	if err != nil {
		t.Fatal(err)
	}
	var seen []string
	for _, en := range entries {
		seen = append(seen, en.Action+" "+en.ChangeRequest+" "+en.Actor)
		if en.Resource != "change/"+en.ChangeRequest {
			t.Errorf("entry %+v", en)
		}
	}
	want := []string{"change.propose " + c.ID + " " + marketing.ID, "change.approve " + c.ID + " " + it.ID,
		"change.approve " + c.ID + " " + privacy.ID, "change.propose " + r.ID + " " + it.ID, "change.reject " + r.ID + " " + marketing.ID}
	if !slices.Equal(seen, want) {
		t.Errorf("audit:\n%q\nwant\n%q", seen, want)
	}
	if rep, err := e.log.Verify(ctx, nil); err != nil || rep.Broken != nil || rep.Entries != 5 {
		t.Errorf("verify: %+v %v", rep, err)
	}

	// PendingFor finds the oldest pending change of a subject.
	p1 := e.propose(t, policy.Source, nil, it, "src_2")
	e.propose(t, policy.DataCategories, []string{"contact"}, it, "src_2")
	if got, err := e.s.PendingFor(ctx, "src_2"); err != nil || got.ID != p1.ID {
		t.Errorf("PendingFor: %+v %v", got, err)
	}
	if got, err := e.s.PendingFor(ctx, "src_2", policy.DataCategories, policy.Destination); err != nil || got.ID == p1.ID || got.Kind != policy.DataCategories {
		t.Errorf("PendingFor data_categories: %+v %v", got, err)
	}
	if _, err := e.s.PendingFor(ctx, "src_2", policy.TrackingPlan); !errors.Is(err, statestore.ErrNotFound) {
		t.Errorf("PendingFor a kind with none pending: %v", err)
	}
	// Withdraw rejects the pending changes of a subject that went away,
	// but the one being carried out.
	n, err := e.s.Withdraw(ctx, "src_2", p1.ID, "deleted", admin)
	if err != nil || n != 1 {
		t.Fatalf("withdraw: %d %v", n, err)
	}
	if got, err := e.s.PendingFor(ctx, "src_2"); err != nil || got.ID != p1.ID {
		t.Errorf("after the withdrawal: %+v %v", got, err)
	}
	if n, err := e.s.Withdraw(ctx, "src_2", "", "deleted", admin); err != nil || n != 1 {
		t.Fatalf("withdraw all: %d %v", n, err)
	}
	if got, _ := e.s.Get(ctx, p1.ID); got.State != policy.Rejected || got.Reason != "deleted" || got.DecidedAt == nil {
		t.Errorf("withdrawn: %+v", got)
	}
	if _, err := e.s.PendingFor(ctx, "dst_1"); !errors.Is(err, statestore.ErrNotFound) {
		t.Errorf("PendingFor a subject with none pending: %v", err)
	}
}

func testList(t *testing.T, open func(t *testing.T) *statestore.DB) {
	ctx := context.Background()
	e := newEnv(t, open, rules(t, nil)) // it-led
	// Marketing proposes a contact destination: needs it, informs marketing.
	a := e.propose(t, policy.Destination, []string{"contact"}, marketing, "dst_a")
	// Marketing proposes a sensitive source: needs it and privacy.
	b := e.propose(t, policy.Source, []string{"sensitive"}, marketing, "src_b")
	// IT proposes consent defaults: privacy approves, it informed.
	c := e.propose(t, policy.ConsentDefaults, nil, it, "consent")
	ids := func(u access.User, state string) []string {
		t.Helper()
		cs, _, err := e.s.List(ctx, policy.Filter{Viewer: u, State: state}, 0, "")
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, c := range cs {
			out = append(out, c.ID)
			if !policy.Visible(c, u) {
				t.Errorf("%s sees %s, not visible to it", u.Role, c.ID)
			}
		}
		return out
	}
	for _, tc := range []struct {
		u    access.User
		want []string
	}{
		{admin, []string{a.ID, b.ID, c.ID}},
		{it, []string{a.ID, b.ID, c.ID}},
		{marketing, []string{a.ID, b.ID}},
		{privacy, []string{b.ID, c.ID}},
		{analyst, nil},
		{sales, nil},
	} {
		if got := ids(tc.u, ""); !slices.Equal(got, tc.want) {
			t.Errorf("%s sees %v, want %v", tc.u.Role, got, tc.want)
		}
	}
	// A proposer sees its own change even when its role is neither
	// needed nor informed.
	d := e.propose(t, policy.Retention, nil, privacy, "retention")
	if got := ids(privacy, ""); !slices.Contains(got, d.ID) {
		t.Errorf("privacy does not see its own proposal: %v", got)
	}
	if _, err := e.s.Decide(ctx, a.ID, policy.Approve, "", it); err != nil {
		t.Fatal(err)
	}
	if got := ids(it, policy.Approved); !slices.Equal(got, []string{a.ID}) {
		t.Errorf("approved: %v", got)
	}
	if got := ids(it, policy.Pending); !slices.Equal(got, []string{b.ID, c.ID, d.ID}) {
		t.Errorf("pending: %v", got)
	}
	if cs, _, err := e.s.List(ctx, policy.Filter{Viewer: admin, Subject: "src_b"}, 0, ""); err != nil || len(cs) != 1 || cs[0].ID != b.ID {
		t.Errorf("by subject: %v %v", cs, err)
	}
	// Pages.
	p1, next, err := e.s.List(ctx, policy.Filter{Viewer: admin}, 2, "")
	if err != nil || len(p1) != 2 || next == "" {
		t.Fatalf("page 1: %v %q %v", p1, next, err)
	}
	p2, next, err := e.s.List(ctx, policy.Filter{Viewer: admin}, 2, next)
	if err != nil || len(p2) != 2 || next != "" || p2[0].ID != c.ID || p2[1].ID != d.ID || len(p1[0].Approvals) != 1 || p1[0].Approvals[0].User != it.ID {
		t.Fatalf("page 2: %+v %q %v", p2, next, err)
	}
	var fe *statestore.FieldError
	if _, _, err := e.s.List(ctx, policy.Filter{Viewer: admin, State: "open"}, 0, ""); !errors.As(err, &fe) || fe.Field != "state" {
		t.Errorf("bad state: %v", err)
	}
	if _, _, err := e.s.List(ctx, policy.Filter{Viewer: admin}, 0, "garbage"); !errors.As(err, &fe) {
		t.Errorf("bad cursor: %v", err)
	}
}

// Admin's approval counts for every outstanding role, unless the rules
// say otherwise.
func testAdmin(t *testing.T, open func(t *testing.T) *statestore.DB) {
	ctx := context.Background()
	e := newEnv(t, open, rules(t, preset(policy.Joint)))
	c := e.propose(t, policy.Source, []string{"sensitive"}, marketing, "src_1")
	got, err := e.s.Decide(ctx, c.ID, policy.Approve, "", admin)
	if err != nil || got.State != policy.Approved || len(e.applied) != 1 {
		t.Fatalf("admin approves for all: %+v %v", got, err)
	}
	strict := newEnv(t, open, rules(t, func(c *policy.Config) { c.Preset = policy.Joint; c.AdminApprovesAll = false }))
	c = strict.propose(t, policy.Source, nil, admin, "src_2")
	if !slices.Equal(c.Needs, roles(access.RoleIT, access.RoleMarketing)) || len(c.Approvals) != 0 {
		t.Fatalf("admin's proposal under strict rules: %+v", c)
	}
	if _, err := strict.s.Decide(ctx, c.ID, policy.Approve, "", admin); !errors.Is(err, policy.ErrForbidden) {
		t.Errorf("admin approves under strict rules: %v", err)
	}
	if _, err := strict.s.Decide(ctx, c.ID, policy.Approve, "", it); err != nil {
		t.Fatal(err)
	}
	if got, err := strict.s.Decide(ctx, c.ID, policy.Approve, "", marketing); err != nil || got.State != policy.Approved {
		t.Errorf("it then marketing: %+v %v", got, err)
	}
}
