package server

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"tandem/access"
	"tandem/config"
	"tandem/policy"
	"tandem/testserver"
)

// TestSettingsUnderPolicy: identity rules, lifecycle stages, consent
// defaults, retention and users go through the decision rights, through
// a real node with a real user of each role, on the embedded state store
// and on PostgreSQL. A proposal that needs approval stays pending and
// changes nothing (events processed meanwhile follow the old value); the
// last approval puts it in force (events processed after follow the new
// one); a rejected one never takes effect. The approved value outlives a
// restart and, on PostgreSQL, reaches another node.
func TestSettingsUnderPolicy(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { testSettingsUnderPolicy(t, nil) })
	t.Run("postgres", func(t *testing.T) {
		pg := testserver.PostgresInstance(t)
		testSettingsUnderPolicy(t, func(t *testing.T) string { return pg.NewDatabase(t) })
	})
}

func testSettingsUnderPolicy(t *testing.T, state func(t *testing.T) string) {
	start := func(t *testing.T, preset, dir, url string) *node {
		return startNode(t, dir, func(c *config.Config) {
			c.Policy.Preset = preset
			c.State = url
		})
	}
	newState := func(t *testing.T) string {
		if state == nil {
			return ""
		}
		return state(t)
	}

	t.Run("IdentityRules", func(t *testing.T) {
		dir, url := t.TempDir(), newState(t)
		n := start(t, policy.Joint, dir, url)
		tok := n.roleTokens()
		// Under joint, identity rules need it and marketing: marketing
		// proposes a new identifier type, loyalty_id.
		rules := n.setting("/api/v1/identity/rules")
		withLoyalty := addType(rules, "loyalty_id")
		r := n.put(tok[access.RoleMarketing], "/api/v1/identity/rules", withLoyalty)
		if r.status != 202 {
			t.Fatalf("marketing proposes rules: %d %s", r.status, r.body)
		}
		c := r.json(t)["change"].(map[string]any)
		if c["kind"] != "identity_rules" || c["state"] != "pending" || !equalRoles(c["needs"], "it", "marketing") ||
			c["subject"] != "identity_rules" || c["diff"].(map[string]any)["before"] == nil {
			t.Fatalf("change: %v", c)
		}
		// Pending: the rules in force are the old ones, and events
		// processed now are resolved by them.
		if typeNames(n.setting("/api/v1/identity/rules")) != typeNames(rules) {
			t.Fatal("a pending change of the identity rules took effect")
		}
		n.identify("early-1", "loyalty_id", "L-1")
		n.identify("early-2", "loyalty_id", "L-1")
		n.drain()
		if a, b := n.profileOf("anonymous_id:early-1"), n.profileOf("anonymous_id:early-2"); a == b {
			t.Fatalf("before approval, a loyalty_id joined two profiles (%s)", a)
		}
		// IT approves: the last approval puts the rules in force.
		if r := n.decideChange(tok[access.RoleIT], c["id"], "approve", "ok"); r.status != 200 || r.json(t)["state"] != "approved" {
			t.Fatalf("it approves: %d %s", r.status, r.body)
		}
		if !strings.Contains(typeNames(n.setting("/api/v1/identity/rules")), "loyalty_id") {
			t.Fatalf("approved rules not in force: %v", n.setting("/api/v1/identity/rules"))
		}
		n.identify("late-1", "loyalty_id", "L-2")
		n.identify("late-2", "loyalty_id", "L-2")
		n.drain()
		if a, b := n.profileOf("anonymous_id:late-1"), n.profileOf("anonymous_id:late-2"); a != b || a != n.profileOf("loyalty_id:L-2") {
			t.Fatalf("after approval, loyalty_id did not join the profiles: %s %s", a, b)
		}
		// A rejected change never takes effect.
		r = n.put(tok[access.RoleMarketing], "/api/v1/identity/rules", addType(n.setting("/api/v1/identity/rules"), "member_no"))
		if r.status != 202 {
			t.Fatalf("second proposal: %d %s", r.status, r.body)
		}
		rid := r.json(t)["change"].(map[string]any)["id"]
		if r := n.decideChange(tok[access.RoleIT], rid, "reject", "not needed"); r.status != 200 || r.json(t)["state"] != "rejected" {
			t.Fatalf("it rejects: %d %s", r.status, r.body)
		}
		n.identify("rej-1", "member_no", "M-1")
		n.identify("rej-2", "member_no", "M-1")
		n.drain()
		if strings.Contains(typeNames(n.setting("/api/v1/identity/rules")), "member_no") ||
			n.profileOf("anonymous_id:rej-1") == n.profileOf("anonymous_id:rej-2") {
			t.Fatal("a rejected change of the identity rules took effect")
		}
		// The audit log has the proposal, the decision and the put, with
		// the change's id.
		audit := n.admin("GET", "/api/v1/audit?resource=identity-rules", nil)
		if !strings.Contains(string(audit.body), `"action":"identity-rules.put"`) || !strings.Contains(string(audit.body), c["id"].(string)) {
			t.Errorf("audit of the put: %s", audit.body)
		}
		if url != "" {
			// Another node on the same state store picks the rules up at
			// its next reload.
			otherDir := t.TempDir()
			key, err := os.ReadFile(filepath.Join(dir, "default.writekey"))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(otherDir, "default.writekey"), key, 0o600); err != nil {
				t.Fatal(err)
			}
			other := start(t, policy.Joint, otherDir, url)
			if !strings.Contains(typeNames(other.setting("/api/v1/identity/rules")), "loyalty_id") {
				t.Errorf("a node started after the approval does not have the rules: %v", other.setting("/api/v1/identity/rules"))
			}
			admin := n.put(n.token, "/api/v1/identity/rules", addType(n.setting("/api/v1/identity/rules"), "crm_no"))
			if admin.status != 200 {
				t.Fatalf("admin puts rules: %d %s", admin.status, admin.body)
			}
			deadline := time.Now().Add(30 * time.Second)
			for !strings.Contains(typeNames(other.setting("/api/v1/identity/rules")), "crm_no") {
				if time.Now().After(deadline) {
					t.Fatal("the other node did not reload the rules in 30s")
				}
				time.Sleep(200 * time.Millisecond)
			}
			return
		}
		// The approved rules outlive a restart: they override the file's.
		n.stop()
		n = start(t, policy.Joint, dir, url)
		if !strings.Contains(typeNames(n.setting("/api/v1/identity/rules")), "loyalty_id") {
			t.Errorf("after a restart, the rules in force: %v", n.setting("/api/v1/identity/rules"))
		}
	})

	t.Run("LifecycleStages", func(t *testing.T) {
		n := start(t, policy.Joint, "", newState(t))
		tok := n.roleTokens()
		aud := n.admin("POST", "/api/v1/audiences", map[string]any{"name": "trialists", "rule": `"trial" in stages`})
		if aud.status != 201 {
			t.Fatalf("audience: %d %s", aud.status, aud.body)
		}
		audID := aud.json(t)["id"].(string)
		stages := n.setting("/api/v1/journey/stages")
		trial := addStage(stages, "trial", "Trial Started")
		r := n.put(tok[access.RoleMarketing], "/api/v1/journey/stages", trial)
		if r.status != 202 {
			t.Fatalf("marketing proposes stages: %d %s", r.status, r.body)
		}
		c := r.json(t)["change"].(map[string]any)
		if c["kind"] != "lifecycle_stages" || !equalRoles(c["needs"], "it", "marketing") {
			t.Fatalf("change: %v", c)
		}
		n.trackAs("early", "Trial Started")
		n.drain()
		if stageNames(n.setting("/api/v1/journey/stages")) != stageNames(stages) {
			t.Fatal("a pending change of the lifecycle stages took effect")
		}
		if m := n.members(audID); len(m) != 0 {
			t.Fatalf("before approval, members %v", m)
		}
		if r := n.decideChange(tok[access.RoleIT], c["id"], "approve", ""); r.status != 200 || r.json(t)["state"] != "approved" {
			t.Fatalf("it approves: %d %s", r.status, r.body)
		}
		if !strings.HasSuffix(stageNames(n.setting("/api/v1/journey/stages")), ",trial") {
			t.Fatalf("approved stages not in force: %v", n.setting("/api/v1/journey/stages"))
		}
		n.trackAs("late", "Trial Started")
		n.drain()
		late := n.profileOf("user_id:late")
		if m := n.members(audID); !slices.Equal(m, []string{late}) {
			t.Fatalf("after approval, members %v, want only %s (early's event came before)", m, late)
		}
		// The journey report uses the stages in force.
		j := n.admin("POST", "/api/v1/analytics/journey", map[string]any{})
		if j.status != 200 || !strings.Contains(string(j.body), `"trial"`) {
			t.Errorf("journey report: %d %s", j.status, j.body)
		}
		// Rejected: never in force.
		r = n.put(tok[access.RoleMarketing], "/api/v1/journey/stages", addStage(n.setting("/api/v1/journey/stages"), "churn", "Account Closed"))
		rid := r.json(t)["change"].(map[string]any)["id"]
		if r := n.decideChange(tok[access.RoleIT], rid, "reject", "no"); r.status != 200 {
			t.Fatalf("reject: %d %s", r.status, r.body)
		}
		if strings.Contains(stageNames(n.setting("/api/v1/journey/stages")), "churn") {
			t.Fatal("a rejected change of the lifecycle stages took effect")
		}
	})

	t.Run("AdminNeedsAnAdmin", func(t *testing.T) {
		// Users need it and privacy, and admin's approval counts only for
		// admin: an admin proposed by IT needs admin, it and privacy, and
		// is created on the last approval, whoever gives it.
		n := startNode(t, "", func(c *config.Config) {
			c.State = newState(t)
			c.Policy.AdminApprovesAll = false
			c.Policy.Rules = map[policy.Kind]policy.Rule{policy.Users: {Approve: []access.Role{access.RoleIT, access.RolePrivacy}}}
		})
		tok := n.roleTokens() // admin creates them: direct, whatever the rules
		r := n.post(tok[access.RoleIT], "/api/v1/users", map[string]string{"name": "Root", "role": "admin"})
		if r.status != 202 || !equalRoles(r.json(t)["change"].(map[string]any)["needs"], "admin", "it", "privacy") {
			t.Fatalf("it proposes an admin: %d %s", r.status, r.body)
		}
		token, id := r.json(t)["token"].(string), r.json(t)["change"].(map[string]any)["id"]
		if r := n.decideChange(n.token, id, "approve", ""); r.status != 200 || r.json(t)["state"] != "pending" {
			t.Fatalf("admin approves: %d %s", r.status, r.body)
		}
		checkError(t, n.do("GET", "/api/v1/me", "bearer:"+token, nil, nil), 401, "unauthenticated", "")
		if r := n.decideChange(tok[access.RolePrivacy], id, "approve", ""); r.status != 200 || r.json(t)["state"] != "approved" {
			t.Fatalf("privacy approves last: %d %s", r.status, r.body)
		}
		if me := n.do("GET", "/api/v1/me", "bearer:"+token, nil, nil); me.status != 200 || me.json(t)["role"] != "admin" {
			t.Fatalf("the approved admin: %d %s", me.status, me.body)
		}
		// An analyst proposed by IT needs it and privacy, not admin.
		r = n.post(tok[access.RoleIT], "/api/v1/users", map[string]string{"name": "Ana", "role": "analyst"})
		if r.status != 202 || !equalRoles(r.json(t)["change"].(map[string]any)["needs"], "it", "privacy") {
			t.Fatalf("it proposes an analyst: %d %s", r.status, r.body)
		}
	})

	t.Run("ConsentRetentionUsers", func(t *testing.T) {
		n := start(t, policy.ITLed, "", newState(t))
		tok := n.roleTokens()
		// it-led: privacy decides consent defaults, so its own proposal
		// is in force at once; IT's waits for privacy.
		consent := map[string]any{"defaults": map[string]bool{"Analytics": true}, "gpcPurposes": []string{"Advertising"}}
		if r := n.put(tok[access.RolePrivacy], "/api/v1/privacy/consent-defaults", consent); r.status != 200 || r.json(t)["defaults"].(map[string]any)["Analytics"] != true {
			t.Fatalf("privacy puts consent defaults: %d %s", r.status, r.body)
		}
		consent["defaults"] = map[string]bool{"Analytics": true, "Personalisation": true}
		r := n.put(tok[access.RoleIT], "/api/v1/privacy/consent-defaults", consent)
		if r.status != 202 || !equalRoles(r.json(t)["change"].(map[string]any)["needs"], "privacy") {
			t.Fatalf("it proposes consent defaults: %d %s", r.status, r.body)
		}
		if d := n.setting("/api/v1/privacy/consent-defaults")["defaults"].(map[string]any); len(d) != 1 {
			t.Fatalf("a pending change of the consent defaults took effect: %v", d)
		}
		// Retention: privacy proposes, IT approves; the event log follows
		// the shortest age.
		ret := map[string]any{"default": "", "sources": map[string]string{"default": "100h"}, "categories": map[string]string{"contact": "2160h"}, "consentHistory": ""}
		r = n.put(tok[access.RolePrivacy], "/api/v1/privacy/retention", ret)
		if r.status != 202 {
			t.Fatalf("privacy proposes retention: %d %s", r.status, r.body)
		}
		if p := n.setting("/api/v1/privacy/retention")["policy"].(map[string]any); len(p["categories"].(map[string]any)) != 0 {
			t.Fatalf("a pending retention took effect: %v", p)
		}
		if r := n.decideChange(tok[access.RoleIT], r.json(t)["change"].(map[string]any)["id"], "approve", ""); r.status != 200 {
			t.Fatalf("it approves retention: %d %s", r.status, r.body)
		}
		if p := n.setting("/api/v1/privacy/retention")["policy"].(map[string]any); p["categories"].(map[string]any)["contact"] != "2160h0m0s" {
			t.Fatalf("approved retention not in force: %v", p)
		}
		if st, err := n.srv.jsLog.Stats(context.Background()); err != nil || st.MaxAge != 100*time.Hour {
			t.Errorf("the event log's max age after the retention: %v %v, want 100h", st.MaxAge, err)
		}
		if got := n.setting("/api/v1/privacy/retention")["logMaxAge"]; got != "100h0m0s" {
			t.Errorf("logMaxAge shown: %v", got)
		}
		// Marketing may not propose retention under it-led.
		checkError(t, n.put(tok[access.RoleMarketing], "/api/v1/privacy/retention", ret), 403, "forbidden", "")

		// Users: IT makes an analyst directly under it-led, but an admin
		// only with an admin's approval.
		if r := n.post(tok[access.RoleIT], "/api/v1/users", map[string]string{"name": "Ana", "role": "analyst"}); r.status != 201 {
			t.Fatalf("it creates an analyst: %d %s", r.status, r.body)
		}
		checkError(t, n.post(tok[access.RoleMarketing], "/api/v1/users", map[string]string{"name": "Max", "role": "analyst"}), 403, "forbidden", "")
		r = n.post(tok[access.RoleIT], "/api/v1/users", map[string]string{"name": "Root", "role": "admin"})
		if r.status != 202 {
			t.Fatalf("it proposes an admin: %d %s", r.status, r.body)
		}
		held := r.json(t)
		token, c := held["token"].(string), held["change"].(map[string]any)
		if !equalRoles(c["needs"], "admin", "it") {
			t.Fatalf("an admin proposed by it needs %v", c["needs"])
		}
		checkError(t, n.do("GET", "/api/v1/me", "bearer:"+token, nil, nil), 401, "unauthenticated", "")
		// IT approved by proposing; it cannot decide for admin.
		checkError(t, n.decideChange(tok[access.RoleIT], c["id"], "approve", ""), 403, "forbidden", "")
		if r := n.decideChange(n.token, c["id"], "approve", "yes"); r.status != 200 || r.json(t)["state"] != "approved" {
			t.Fatalf("admin approves: %d %s", r.status, r.body)
		}
		me := n.do("GET", "/api/v1/me", "bearer:"+token, nil, nil)
		if me.status != 200 || me.json(t)["role"] != "admin" || me.json(t)["name"] != "Root" {
			t.Fatalf("the approved admin: %d %s", me.status, me.body)
		}
		// Bad bodies: 400 naming the field, before the decision rights.
		for _, tc := range []struct {
			path  string
			body  any
			code  string
			field string
		}{
			{"/api/v1/identity/rules", map[string]any{"types": []any{map[string]any{"name": "User ID"}}, "blocked": []string{}}, "invalid_field", "types[0].name"},
			{"/api/v1/identity/rules", map[string]any{"types": []any{}}, "missing_field", "blocked"},
			{"/api/v1/journey/stages", map[string]any{"stages": []any{map[string]any{"name": "a", "department": "", "events": []string{"x"}}}}, "invalid_field", "stages[0].department"},
			{"/api/v1/privacy/consent-defaults", map[string]any{"defaults": map[string]bool{}, "gpcPurposes": []string{" x"}}, "invalid_field", "gpcPurposes[0]"},
			{"/api/v1/privacy/retention", map[string]any{"default": "3 days", "sources": map[string]string{}, "categories": map[string]string{}, "consentHistory": ""}, "invalid_field", "default"},
			{"/api/v1/privacy/retention", map[string]any{"default": "", "sources": map[string]string{"shop": "-1h"}, "categories": map[string]string{}, "consentHistory": ""}, "invalid_field", "sources.shop"},
			{"/api/v1/privacy/retention", map[string]any{"default": "", "sources": map[string]string{}, "categories": map[string]string{}, "consentHistory": "", "colour": 1}, "unknown_field", "colour"},
		} {
			checkError(t, n.put(tok[access.RoleMarketing], tc.path, tc.body), 400, tc.code, tc.field)
		}
	})
}

func (n *node) put(token, path string, body any) response {
	n.t.Helper()
	b, _ := json.Marshal(body)
	return n.do("PUT", path, "bearer:"+token, b, nil)
}

func (n *node) post(token, path string, body any) response {
	n.t.Helper()
	b, _ := json.Marshal(body)
	return n.do("POST", path, "bearer:"+token, b, nil)
}

// setting reads a setting as the admin.
func (n *node) setting(path string) map[string]any {
	n.t.Helper()
	r := n.admin("GET", path, nil)
	if r.status != 200 {
		n.t.Fatalf("GET %s: %d %s", path, r.status, r.body)
	}
	return r.json(n.t)
}

// addType returns rules with one more identifier type, of the lowest
// priority.
func addType(rules map[string]any, name string) map[string]any {
	types := slices.Clone(rules["types"].([]any))
	types = append(types, map[string]any{"name": name, "priority": len(types) + 1, "limit": 1})
	out := map[string]any{"types": types, "blocked": rules["blocked"]}
	return out
}

func typeNames(rules map[string]any) string {
	var names []string
	for _, t := range rules["types"].([]any) {
		names = append(names, t.(map[string]any)["name"].(string))
	}
	return strings.Join(names, ",")
}

func addStage(lifecycle map[string]any, name, event string) map[string]any {
	stages := slices.Clone(lifecycle["stages"].([]any))
	stages = append(stages, map[string]any{"name": name, "department": "sales", "events": []string{event}})
	return map[string]any{"stages": stages}
}

func stageNames(lifecycle map[string]any) string {
	var names []string
	for _, s := range lifecycle["stages"].([]any) {
		names = append(names, s.(map[string]any)["name"].(string))
	}
	return strings.Join(names, ",")
}

// identify sends an identify of an anonymous id with one trait.
func (n *node) identify(anon, trait, value string) {
	n.t.Helper()
	b, _ := json.Marshal(map[string]any{"anonymousId": anon, "traits": map[string]string{trait: value}})
	if r := n.do("POST", "/v1/identify", "basic:"+n.writeKey, b, nil); r.status != 200 {
		n.t.Fatalf("identify: %d %s", r.status, r.body)
	}
}

func (n *node) trackAs(user, event string) {
	n.t.Helper()
	b, _ := json.Marshal(map[string]any{"userId": user, "event": event})
	if r := n.do("POST", "/v1/track", "basic:"+n.writeKey, b, nil); r.status != 200 {
		n.t.Fatalf("track: %d %s", r.status, r.body)
	}
}

func (n *node) profileOf(ident string) string {
	n.t.Helper()
	return n.lookup(ident)["id"].(string)
}

func (n *node) members(audience string) []string {
	n.t.Helper()
	r := n.admin("GET", "/api/v1/audiences/"+audience+"/members", nil)
	if r.status != 200 {
		n.t.Fatalf("members: %d %s", r.status, r.body)
	}
	var page struct {
		Items []struct {
			ProfileID string `json:"profileId"`
		} `json:"items"`
	}
	_ = json.Unmarshal(r.body, &page)
	out := []string{}
	for _, m := range page.Items {
		out = append(out, m.ProfileID)
	}
	return out
}
