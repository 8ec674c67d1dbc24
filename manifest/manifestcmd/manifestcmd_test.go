package manifestcmd

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"tandem/config"
	"tandem/server"
)

const adminToken = "tdm_manifest-test-admin-0123456789abcdef"

// node is a real tandem node on loopback with its data in a temp dir.
type node struct {
	t   *testing.T
	url string
}

func startNode(t *testing.T) *node {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.Addr = "127.0.0.1:0"
	cfg.ShutdownTimeout = 10 * time.Second
	cfg.DestinationAllow = []string{"127.0.0.0/8"}
	t.Setenv("TANDEM_ADMIN_TOKEN", adminToken)
	ctx, cancel := context.WithCancel(context.Background())
	s, err := server.Open(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return &node{t: t, url: "http://" + ln.Addr().String()}
}

// api calls the management API as the admin and decodes the answer.
func (n *node) api(method, path string, body any) (int, map[string]any) {
	n.t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, n.url+path, r)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		n.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func (n *node) names(path string) []string {
	n.t.Helper()
	status, out := n.api("GET", path, nil)
	if status != 200 {
		n.t.Fatalf("GET %s: %d %v", path, status, out)
	}
	var names []string
	for _, it := range out["items"].([]any) {
		m := it.(map[string]any)
		name, _ := m["name"].(string)
		if name == "" {
			name, _ = m["sourceName"].(string)
		}
		names = append(names, name)
	}
	return names
}

// run runs apply or export against the node.
func (n *node) run(cmd string, stdin string, env map[string]string, args ...string) (int, string, string) {
	n.t.Helper()
	getenv := func(k string) string {
		if v, ok := env[k]; ok {
			return v
		}
		switch k {
		case "TANDEM_ADDR":
			return n.url
		case "TANDEM_TOKEN":
			return adminToken
		}
		return ""
	}
	var out, errb bytes.Buffer
	var code int
	switch cmd {
	case "apply":
		code = Apply(args, getenv, strings.NewReader(stdin), &out, &errb)
	case "export":
		code = Export(args, getenv, &out, &errb)
	}
	return code, out.String(), errb.String()
}

const shop = `# the shop's tools
sources:
  - name: web-shop
    kind: web
    owner: marketing
    purpose: product analytics of the shop
    dataCategories: [behavioural, contact]
    monthlyCost: 49
  - name: crm
    kind: crm
    owner: sales
destinations:
  - name: crm-hook
    type: webhook
    owner: sales
    purpose: orders to the CRM
    dataCategories: [contact]
    config:
      url: http://127.0.0.1:9/hook
      secret: ${CRM_HOOK_SECRET}
      batch: 10
    filter: {types: [track], events: [Order Completed], sources: [web-shop]}
    mapping:
      - {field: traits.email, action: hash}
trackingPlans:
  - source: web-shop
    unplanned: flag
    events:
      Order Completed:
        properties:
          type: object
          required: [price]
          properties: {price: {type: number, minimum: 0}}
users:
  - {name: Ana (web analytics), role: analyst}
computedTraits:
  - {name: orders_30d, kind: count, event: Order Completed, window: 30d}
audiences:
  - {name: loyal, rule: "computed.orders_30d >= 2", destinations: [crm-hook]}
`

var secretEnv = map[string]string{"CRM_HOOK_SECRET": "s3cret-for-the-hook"}

// TestApplyPlanApplyAgainExport is the whole cycle on a real node: the
// dry run shows the plan and changes nothing, apply carries it out, a
// second apply is a no-op, and an export applied as a dry run shows no
// changes.
func TestApplyPlanApplyAgainExport(t *testing.T) {
	n := startNode(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "tandem.yaml")
	if err := os.WriteFile(file, []byte(shop), 0o644); err != nil {
		t.Fatal(err)
	}

	code, out, errs := n.run("apply", "", nil, "-f", file, "--dry-run")
	if code != 0 {
		t.Fatalf("dry run: exit %d\n%s%s", code, out, errs)
	}
	for _, want := range []string{
		`+ create source "web-shop"`, `    kind: "web"`, `    dataCategories: ["behavioural","contact"]`,
		`+ create source "crm"`,
		`+ create destination "crm-hook"`, `"secret":"(secret)"`, `"url":"http://127.0.0.1:9/hook"`,
		`+ create tracking plan "web-shop"`, `+ create user "Ana (web analytics)"`, `    role: "analyst"`,
		`+ create computed trait "orders_30d"`, `+ create audience "loyal"`,
		"plan: 7 to create, 0 to change, 0 to delete",
	} {
		if !strings.Contains(out, want+"") {
			t.Errorf("dry run does not show %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, secretEnv["CRM_HOOK_SECRET"]) {
		t.Errorf("dry run shows the secret:\n%s", out)
	}
	if got := n.names("/api/v1/sources"); strings.Join(got, ",") != "default" {
		t.Fatalf("the dry run changed the node: sources %v", got)
	}

	// Apply: without the secret's variable it refuses before changing
	// anything.
	code, out, errs = n.run("apply", "", nil, "-f", file)
	if code != 2 || !strings.Contains(errs, "tandem.yaml:20: destinations[0].config.secret: the environment variable CRM_HOOK_SECRET is not set") {
		t.Fatalf("apply without CRM_HOOK_SECRET: exit %d\n%s%s", code, out, errs)
	}
	if got := n.names("/api/v1/sources"); len(got) != 1 {
		t.Fatalf("apply refused for a variable but created sources: %v", got)
	}
	code, out, errs = n.run("apply", "", secretEnv, "-f", file)
	if code != 0 {
		t.Fatalf("apply: exit %d\n%s%s", code, out, errs)
	}
	for _, want := range []string{`created destination "crm-hook" (dst_`, `created user "Ana (web analytics)" (usr_`, "; token tdm_",
		`created tracking plan "web-shop"`, `created audience "loyal" (aud_`, "applied: 7 created, 0 changed, 0 deleted"} {
		if !strings.Contains(out, want) {
			t.Errorf("apply output lacks %q:\n%s", want, out)
		}
	}
	// The node holds what the file declares, references as ids.
	if got := strings.Join(n.names("/api/v1/sources"), ","); got != "crm,default,web-shop" && got != "default,web-shop,crm" {
		t.Errorf("sources after apply: %s", got)
	}
	_, dests := n.api("GET", "/api/v1/destinations", nil)
	d := dests["items"].([]any)[0].(map[string]any)
	cfg := d["config"].(map[string]any)
	if cfg["secret"] != "(set)" || cfg["batch"] != 10.0 || cfg["url"] != "http://127.0.0.1:9/hook" {
		t.Errorf("destination config: %v", cfg)
	}
	srcs := d["filter"].(map[string]any)["sources"].([]any)
	if len(srcs) != 1 || !strings.HasPrefix(srcs[0].(string), "src_") {
		t.Errorf("filter.sources = %v, want the web-shop's id", srcs)
	}
	_, plan := n.api("GET", "/api/v1/tracking-plans/web-shop", nil)
	if plan["unplanned"] != "flag" || plan["events"].(map[string]any)["Order Completed"] == nil {
		t.Errorf("tracking plan: %v", plan)
	}
	_, auds := n.api("GET", "/api/v1/audiences", nil)
	if ds := auds["items"].([]any)[0].(map[string]any)["destinations"].([]any); len(ds) != 1 || ds[0] != d["id"] {
		t.Errorf("audience destinations %v, want [%v]", ds, d["id"])
	}

	// Again: nothing to do, with or without the variable.
	for _, env := range []map[string]string{secretEnv, nil} {
		code, out, errs = n.run("apply", "", env, "-f", file)
		if code != 0 || strings.TrimSpace(out) != "no changes" {
			t.Errorf("second apply: exit %d\n%s%s", code, out, errs)
		}
	}

	// Export, then apply the export as a dry run: no changes.
	code, exported, errs := n.run("export", "", nil)
	if code != 0 {
		t.Fatalf("export: exit %d\n%s", code, errs)
	}
	for _, want := range []string{"secret: ${CRM_HOOK_SECRET}", "sources: [web-shop]", "destinations: [crm-hook]", "- name: default", "Order Completed:"} {
		if !strings.Contains(exported, want) {
			t.Errorf("export lacks %q:\n%s", want, exported)
		}
	}
	if strings.Contains(exported, secretEnv["CRM_HOOK_SECRET"]) || strings.Contains(exported, "tdm_") || strings.Contains(exported, "wk_") {
		t.Errorf("export holds a secret:\n%s", exported)
	}
	code, out, errs = n.run("apply", exported, nil, "-f", "-", "--dry-run")
	if code != 0 || strings.TrimSpace(out) != "no changes" {
		t.Errorf("export | apply --dry-run: exit %d\n%s%s\nexport:\n%s", code, out, errs, exported)
	}
	code, out, errs = n.run("apply", exported, nil, "-f", "-", "--dry-run", "--prune")
	if code != 0 || strings.TrimSpace(out) != "no changes" {
		t.Errorf("export | apply --dry-run --prune: exit %d\n%s%s", code, out, errs)
	}

	// A change shows the field before and after, and applies.
	changed := strings.Replace(shop, "monthlyCost: 49", "monthlyCost: 59", 1)
	changed = strings.Replace(changed, "batch: 10", "batch: 20", 1)
	changed = strings.Replace(changed, "window: 30d", "window: 60d", 1)
	code, out, _ = n.run("apply", changed, nil, "-f", "-", "--dry-run")
	for _, want := range []string{`~ change destination "crm-hook"`, "    config.batch: 10 → 20",
		`~ change computed trait "orders_30d" (deleted and created anew`, `    window: "30d" → "60d"`, "plan: 0 to create, 3 to change, 0 to delete"} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run of a change lacks %q:\n%s", want, out)
		}
	}
	code, out, errs = n.run("apply", strings.Replace(changed, "monthlyCost: 59", "monthlyCost: 49", 1), nil, "-f", "-")
	if code != 0 || !strings.Contains(out, "applied: 0 created, 2 changed, 0 deleted") {
		t.Errorf("apply of a change: exit %d\n%s%s", code, out, errs)
	}
	_, dests = n.api("GET", "/api/v1/destinations/"+d["id"].(string), nil)
	if c := dests["config"].(map[string]any); c["batch"] != 20.0 || c["secret"] != "(set)" {
		t.Errorf("after the change, config %v (the secret must be kept)", c)
	}

	// --prune deletes what a declared kind does not name, only with it.
	fewer := strings.Replace(changed, `  - {name: orders_30d, kind: count, event: Order Completed, window: 60d}`, `  - {name: orders_60d, kind: count, event: Order Completed, window: 60d}`, 1)
	fewer = strings.Replace(fewer, "computed.orders_30d", "computed.orders_60d", 1)
	code, out, _ = n.run("apply", strings.Replace(fewer, "monthlyCost: 59", "monthlyCost: 49", 1), nil, "-f", "-", "--dry-run", "--prune")
	if !regexp.MustCompile(`(?s)\+ create computed trait "orders_60d".*- delete computed trait "orders_30d"`).MatchString(out) {
		t.Errorf("prune dry run:\n%s", out)
	}
	if !strings.Contains(out, `- delete source "default"`) {
		t.Errorf("prune dry run does not delete the undeclared source default:\n%s", out)
	}
	if strings.Contains(out, "delete user") {
		t.Errorf("prune would delete the user apply runs as (the only one the file does not name):\n%s", out)
	}

	// A key left out is not managed: a plan changed by a file without
	// unplanned keeps its rule.
	noRule := strings.Replace(strings.Replace(shop, "    unplanned: flag\n", "", 1), "minimum: 0", "minimum: 1", 1)
	code, out, errs = n.run("apply", noRule, nil, "-f", "-")
	if code != 0 || !strings.Contains(out, "changed tracking plan") {
		t.Fatalf("apply without unplanned: exit %d\n%s%s", code, out, errs)
	}
	_, plan = n.api("GET", "/api/v1/tracking-plans/web-shop", nil)
	if plan["unplanned"] != "flag" || !strings.Contains(must(json.Marshal(plan["events"])), `"minimum":1`) {
		t.Errorf("tracking plan after a change without unplanned: %v", plan)
	}
}

func must(b []byte, err error) string {
	if err != nil {
		panic(err)
	}
	return string(b)
}

// TestApplyInvalidFile: an invalid file is refused before anything is
// sent, naming the file, the line and the key.
func TestApplyInvalidFile(t *testing.T) {
	n := startNode(t)
	file := filepath.Join(t.TempDir(), "tandem.yaml")
	bad := "sources:\n  - {name: a, kind: web, owner: it}\ndestinations:\n  - name: hook\n    type: webhok\n    owner: it\n    config: {url: http://127.0.0.1:9/}\n  - name: hook2\n    type: webhook\n    owner: it\n    colour: blue\n    config: {url: http://127.0.0.1:9/}\n"
	os.WriteFile(file, []byte(bad), 0o644)
	code, out, errs := n.run("apply", "", nil, "-f", file)
	if code != 2 {
		t.Errorf("exit %d, want 2\n%s%s", code, out, errs)
	}
	for _, want := range []string{
		file + `:5: destinations[0].type: unknown type "webhok"; known: nats, segment, webhook`,
		file + `:11: destinations[1]: unknown key "colour"`,
	} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
	if got := n.names("/api/v1/sources"); len(got) != 1 {
		t.Errorf("an invalid file changed the node: sources %v", got)
	}
	// A reference to nothing is an error of the plan, with its line.
	code, _, errs = n.run("apply", "audiences:\n  - {name: x, rule: 'traits.plan == \"pro\"', destinations: [nowhere]}\n", nil, "-f", "-", "--dry-run")
	if code != 2 || !strings.Contains(errs, `stdin:2: audiences[0].destinations[0]: no destination "nowhere" in this file or on the node`) {
		t.Errorf("dangling reference: exit %d, %s", code, errs)
	}
}

// user creates a user of role and returns its token.
func (n *node) user(name, role string) string {
	n.t.Helper()
	status, out := n.api("POST", "/api/v1/users", map[string]any{"name": name, "role": role})
	if status != 201 {
		n.t.Fatalf("create %s user: %d %v", role, status, out)
	}
	return out["token"].(string)
}

// TestApplyActsAsItsUser: apply changes what the token's role may change,
// as the API decides it: it says the approval state a source IT registers
// is in, and a role that may not register sources is refused with the
// API's answer.
func TestApplyActsAsItsUser(t *testing.T) {
	n := startNode(t)
	file := "sources:\n  - {name: crm, kind: crm, owner: sales, dataCategories: [contact]}\n"
	it := map[string]string{"TANDEM_TOKEN": n.user("Olaf (IT)", "it")}
	code, out, errs := n.run("apply", file, it, "-f", "-")
	if code != 0 || !regexp.MustCompile(`created source "crm" \(src_\w+\); write key wk_\w+ \(shown only this once\)`).MatchString(out) {
		t.Errorf("apply as it: exit %d\n%s%s", code, out, errs)
	}
	_, src := n.api("GET", "/api/v1/sources/crm", nil)
	if appr := src["approval"]; (appr == "approved") == strings.Contains(out, "approval") || appr != "approved" && !strings.Contains(out, fmt.Sprintf("approval %s", appr)) {
		t.Errorf("the node says the source is %v; apply said:\n%s", appr, out)
	}
	if code, out, _ = n.run("apply", file, it, "-f", "-"); code != 0 || strings.TrimSpace(out) != "no changes" {
		t.Errorf("second apply as it: exit %d\n%s", code, out)
	}
	analyst := map[string]string{"TANDEM_TOKEN": n.user("Ana", "analyst")}
	code, out, errs = n.run("apply", strings.ReplaceAll(file, "crm", "erp"), analyst, "-f", "-")
	if code != 1 || !strings.Contains(errs, `tandem apply: create source "erp": 403 forbidden`) {
		t.Errorf("apply as analyst: exit %d\n%s%s", code, out, errs)
	}
	if got := n.names("/api/v1/sources"); len(got) != 2 {
		t.Errorf("sources %v, want default and crm", got)
	}
}

// TestApplyChangeRequests: on a node that keeps decision rights, the dry
// run shows the approvals a step needs, apply files the change request
// and says so, and applying again files nothing more. (Skipped on a node
// without POST /api/v1/changes/preview.)
func TestApplyChangeRequests(t *testing.T) {
	n := startNode(t)
	if status, _ := n.api("POST", "/api/v1/changes/preview", map[string]any{"kind": "source", "action": "create", "after": map[string]any{}}); status == 404 || status == 405 {
		t.Skip("this node has no POST /api/v1/changes/preview")
	}
	file := "sources:\n  - {name: clinic, kind: server, owner: service, dataCategories: [sensitive]}\n"
	it := map[string]string{"TANDEM_TOKEN": n.user("Olaf (IT)", "it")}
	code, out, errs := n.run("apply", file, it, "-f", "-", "--dry-run")
	t.Logf("dry run:\n%s", out)
	if code != 0 || !regexp.MustCompile(`approval: needs .*privacy`).MatchString(out) {
		t.Errorf("dry run of a sensitive source: exit %d\n%s%s", code, out, errs)
	}
	code, out, errs = n.run("apply", file, it, "-f", "-")
	t.Logf("apply:\n%s", out)
	if code != 0 || !regexp.MustCompile(`source "clinic": change request chg_\w+ filed, needs .*privacy`).MatchString(out) {
		t.Errorf("apply of a sensitive source: exit %d\n%s%s", code, out, errs)
	}
	code, out, errs = n.run("apply", file, it, "-f", "-")
	t.Logf("apply again:\n%s", out)
	if code != 0 || strings.Contains(out, "filed") {
		t.Errorf("second apply filed again: exit %d\n%s%s", code, out, errs)
	}

	// A change of a tool that needs approval stays as it is until then
	// (202), and applying again does not file it twice.
	hook := "destinations:\n  - {name: lab, type: webhook, owner: service, dataCategories: [sensitive], purpose: %s, config: {url: 'http://127.0.0.1:9/'}}\n"
	if code, out, errs = n.run("apply", fmt.Sprintf(hook, "results"), nil, "-f", "-"); code != 0 {
		t.Fatalf("admin creates the destination: exit %d\n%s%s", code, out, errs)
	}
	code, out, errs = n.run("apply", fmt.Sprintf(hook, "lab results"), it, "-f", "-")
	t.Logf("change:\n%s", out)
	if code != 0 || !regexp.MustCompile(`destination "lab": change request chg_\w+ filed, needs .*privacy`).MatchString(out) ||
		!strings.Contains(out, "applied: 0 created, 0 changed, 0 deleted; 1 held for approval") {
		t.Errorf("change of a sensitive destination: exit %d\n%s%s", code, out, errs)
	}
	code, out, errs = n.run("apply", fmt.Sprintf(hook, "lab results"), it, "-f", "-")
	t.Logf("change again:\n%s", out)
	if code != 0 || !regexp.MustCompile(`destination "lab": change request chg_\w+ is pending \(needs .*privacy\); not filed again`).MatchString(out) ||
		!strings.Contains(out, "no changes") {
		t.Errorf("the same change again: exit %d\n%s%s", code, out, errs)
	}
}

// TestApplySettings: identity rules and lifecycle stages are applied
// through their PUT endpoints: at once by a role the decision rights let
// carry them out alone (admin), as a change request otherwise (marketing
// under it-led, for stages), filed once; users held for approval (an
// admin proposed by it) likewise, with the token shown.
func TestApplySettings(t *testing.T) {
	n := startNode(t)
	file := `identity:
  types:
    - {name: user_id, priority: 1, limit: 1}
    - {name: email, priority: 2, limit: 3}
    - {name: anonymous_id, priority: 3}
journey:
  stages:
    - {name: awareness, department: marketing, events: [Ad Clicked]}
    - {name: purchase, department: sales, events: [Order Completed]}
`
	code, out, errs := n.run("apply", file, nil, "-f", "-")
	if code != 0 || !strings.Contains(out, "changed identity rules") || !strings.Contains(out, "changed lifecycle stages") {
		t.Fatalf("apply settings as admin: exit %d\n%s%s", code, out, errs)
	}
	_, rules := n.api("GET", "/api/v1/identity/rules", nil)
	if ts := rules["types"].([]any); len(ts) != 3 || ts[1].(map[string]any)["limit"] != 3.0 {
		t.Errorf("identity rules after apply: %v", rules)
	}
	if bl := rules["blocked"].([]any); len(bl) == 0 {
		t.Errorf("apply dropped the blocked values the file leaves out: %v", rules)
	}
	if code, out, _ = n.run("apply", file, nil, "-f", "-"); code != 0 || strings.TrimSpace(out) != "no changes" {
		t.Errorf("second apply: exit %d\n%s", code, out)
	}
	code, exported, _ := n.run("export", "", nil)
	if code, out, _ = n.run("apply", exported, nil, "-f", "-", "--dry-run"); code != 0 || strings.TrimSpace(out) != "no changes" {
		t.Errorf("export | apply --dry-run: exit %d\n%s", code, out)
	}

	mkt := map[string]string{"TANDEM_TOKEN": n.user("Mia", "marketing")}
	more := strings.Replace(file, "    - {name: purchase", "    - {name: trial, department: sales, events: [Trial Started]}\n    - {name: purchase", 1)
	code, out, errs = n.run("apply", more, mkt, "-f", "-", "--dry-run")
	if code != 0 || !strings.Contains(out, "approval: needs it") {
		t.Errorf("dry run of stages by marketing: exit %d\n%s%s", code, out, errs)
	}
	code, out, errs = n.run("apply", more, mkt, "-f", "-")
	if code != 0 || !regexp.MustCompile(`lifecycle stages: change request chg_\w+ filed, needs it`).MatchString(out) {
		t.Errorf("apply of stages by marketing: exit %d\n%s%s", code, out, errs)
	}
	_, stages := n.api("GET", "/api/v1/journey/stages", nil)
	if len(stages["stages"].([]any)) != 2 {
		t.Errorf("a held change of the stages took effect: %v", stages)
	}
	code, out, _ = n.run("apply", more, mkt, "-f", "-")
	if code != 0 || !regexp.MustCompile(`lifecycle stages: change request chg_\w+ is pending \(needs it\); not filed again`).MatchString(out) {
		t.Errorf("apply again: exit %d\n%s", code, out)
	}

	it := map[string]string{"TANDEM_TOKEN": n.user("Olaf (IT)", "it")}
	users := "users:\n  - {name: Root, role: admin}\n"
	code, out, errs = n.run("apply", users, it, "-f", "-")
	if code != 0 || !regexp.MustCompile(`user "Root": token tdm_\w+ \(shown only this once; it works once the change is approved\)`).MatchString(out) ||
		!regexp.MustCompile(`user "Root": change request chg_\w+ filed, needs admin, it`).MatchString(out) {
		t.Errorf("apply of an admin by it: exit %d\n%s%s", code, out, errs)
	}
	code, out, _ = n.run("apply", users, it, "-f", "-")
	if code != 0 || !strings.Contains(out, "not filed again") {
		t.Errorf("apply of the admin again: exit %d\n%s", code, out)
	}
}
