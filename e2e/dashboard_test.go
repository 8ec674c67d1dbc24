package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// The dashboard (package web) in headless Chromium against the real
// binary: sign in with a user token, follow a hand-off gap of the journey
// to a stuck profile, look a customer up by e-mail and read the timeline,
// approve a pending source; and a role that may not read profiles is told
// so. Screenshots go to $TANDEM_TEST_ARTIFACTS (default: the test's temp
// dir) and their paths are logged.

// artifactDir is where the test's screenshots go.
func artifactDir(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("TANDEM_TEST_ARTIFACTS"); d != "" {
		d = filepath.Join(d, t.Name())
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

// call is one management API request with token.
func call(t *testing.T, base, token, method, path string, body any) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := apiClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var out map[string]any
	b, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(b, &out)
	return resp.StatusCode, out
}

// screenshot saves the whole page as name.png, after checking that the
// page shows no JavaScript leftovers ("null", "undefined", "NaN").
func (b *browser) screenshot(dir, name string) {
	b.t.Helper()
	if bad, _ := evalIn[string](b, 5*time.Second, `(document.body.innerText.match(/.*\b(null|undefined|NaN)\b.*/) || [""])[0]`); bad != "" {
		b.t.Errorf("%s: the page shows %q", name, bad)
	}
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Errorf("screenshot %s: %v", name, err)
		return
	}
	p := filepath.Join(dir, name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		b.t.Errorf("screenshot %s: %v", name, err)
		return
	}
	b.t.Logf("screenshot: %s", p)
}

// must fails the test now, with what the page showed, when err is set.
func (b *browser) must(err error, what string) {
	b.t.Helper()
	if err == nil {
		return
	}
	text, _ := evalIn[string](b, 5*time.Second, `document.getElementById("main") ? document.getElementById("main").innerText.slice(0, 1500) : ""`)
	_, problems, console := b.snapshot()
	b.t.Fatalf("%s: %v\nthe page shows:\n%s\nproblems: %v\nconsole: %v", what, err, text, problems, console)
}

// signIn opens the dashboard and signs in with token: by clicking the
// button, or with the keyboard alone (the page puts the focus in the
// token field; Enter submits).
func (b *browser) signIn(base, token string, keyboard bool) {
	b.t.Helper()
	b.must(b.do(20*time.Second, chromedp.EmulateViewport(1366, 900), chromedp.Navigate(base+"/")), "open the dashboard")
	b.must(b.do(15*time.Second, chromedp.WaitVisible(chromedp.CSS("#token"))), "the sign-in form")
	if fcp, _ := evalIn[float64](b, 5*time.Second, `(performance.getEntriesByName("first-contentful-paint")[0] || {startTime: -1}).startTime`); fcp >= 0 {
		b.t.Logf("first contentful paint of the sign-in page: %.0f ms", fcp)
	}
	if keyboard {
		focused, _ := evalIn[string](b, 5*time.Second, `document.activeElement.id`)
		if focused != "token" {
			b.t.Errorf("the focus is on %q, not the token field", focused)
		}
		b.must(b.do(15*time.Second, chromedp.KeyEvent(token+"\r")), "sign in with the keyboard")
	} else {
		b.must(b.do(15*time.Second, chromedp.SendKeys(chromedp.CSS("#token"), token),
			chromedp.Click(chromedp.CSS(`#signin button[type="submit"]`))), "sign in")
	}
	_, err := waitFor[bool](b, 15*time.Second, `!!document.getElementById("who-role")`)
	b.must(err, "the role after signing in")
}

func TestDashboard(t *testing.T) {
	t.Parallel()
	exe := chromiumPath(t)
	s := startServer(t, "", serverOpts{args: []string{"--destination-allow=127.0.0.0/8"}})
	shots := artifactDir(t)

	// Two webhook receivers: one takes everything, one always fails.
	var received atomic.Int64
	okHook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		received.Add(1)
		w.WriteHeader(200)
	}))
	t.Cleanup(okHook.Close)
	badHook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "crm down", 500)
	}))
	t.Cleanup(badHook.Close)
	for name, u := range map[string]string{"Warehouse": okHook.URL, "Broken CRM": badHook.URL} {
		st, d := call(t, s.url, adminToken, "POST", "/api/v1/destinations", map[string]any{
			"name": name, "type": "webhook", "config": map[string]any{"url": u, "batch": 1},
			"filter": map[string]any{"types": []string{"track"}}, "owner": "operations", "purpose": "reporting",
			"dataCategories": []string{"behaviour"}, "monthlyCost": 80})
		if st != 201 {
			t.Fatalf("create destination %s: %d %v", name, st, d)
		}
	}
	// A second source with a strict tracking plan, and an experiment
	// defined before its exposures arrive.
	st, shop := call(t, s.url, adminToken, "POST", "/api/v1/sources", map[string]any{"name": "Shop app", "kind": "app", "owner": "sales", "purpose": "orders", "monthlyCost": 40})
	if st != 201 {
		t.Fatalf("create shop source: %d %v", st, shop)
	}
	if st, plan := call(t, s.url, adminToken, "PUT", "/api/v1/tracking-plans/"+shop["id"].(string), map[string]any{
		"unplanned": "block",
		"events": map[string]any{"Order Completed": map[string]any{"properties": map[string]any{"type": "object",
			"properties": map[string]any{"price": map[string]any{"type": "number"}}, "required": []string{"price"}}}}}); st != 200 && st != 201 {
		t.Fatalf("put tracking plan: %d %v", st, plan)
	}
	st, exp := call(t, s.url, adminToken, "POST", "/api/v1/experiments", map[string]any{
		"key": "hero-2026", "name": "New hero image",
		"variations": []map[string]any{{"key": "control", "weight": 50}, {"key": "new-hero", "weight": 50}},
		"metrics":    []map[string]any{{"name": "newsletter", "kind": "conversion", "event": "Newsletter Joined", "window": "7d"}},
		"from":       time.Now().UTC().Add(-30 * 24 * time.Hour).Format(time.RFC3339)})
	if st != 201 {
		t.Fatalf("create experiment: %d %v", st, exp)
	}

	// A journey 20 days old: Ann goes from the ad to the order (in a
	// store, by sales); Bob and Cy viewed products and never ordered, so
	// they are stuck at the marketing→sales hand-off.
	at := time.Now().UTC().Add(-20 * 24 * time.Hour).Truncate(time.Second)
	ts := func(h int) string { return at.Add(time.Duration(h) * time.Hour).Format(time.RFC3339) }
	run := fmt.Sprint(time.Now().UnixNano())
	var batch []map[string]any
	var ids []string
	add := func(m map[string]any) {
		m["messageId"] = fmt.Sprintf("dash-%s-%d", run, len(batch))
		ids = append(ids, m["messageId"].(string))
		batch = append(batch, m)
	}
	consent := map[string]bool{"u-ann": true, "u-bob": false}
	for _, p := range []struct{ user, email string }{{"u-ann", "ann@example.com"}, {"u-bob", "bob@example.com"}, {"u-cy", "cy@example.com"}} {
		ident := map[string]any{"type": "identify", "userId": p.user, "timestamp": ts(0), "traits": map[string]any{"email": p.email, "plan": "pro"}}
		if g, ok := consent[p.user]; ok {
			ident["context"] = map[string]any{"consent": map[string]any{"categoryPreferences": map[string]any{"Advertising": g}}}
		}
		add(ident)
		add(map[string]any{"type": "track", "userId": p.user, "event": "Signed Up", "timestamp": ts(0)})
		add(map[string]any{"type": "track", "userId": p.user, "event": "Ad Clicked", "timestamp": ts(-1), "properties": map[string]any{"channel": "web", "department": "marketing"}})
		add(map[string]any{"type": "track", "userId": p.user, "event": "Product Viewed", "timestamp": ts(2), "properties": map[string]any{"channel": "app", "department": "marketing", "sku": "S-1"}})
	}
	add(map[string]any{"type": "track", "userId": "u-ann", "event": "Order Completed", "timestamp": ts(30), "properties": map[string]any{"channel": "store", "department": "sales", "revenue": 42}})
	// Dora's tablet and Dora become one profile by a merge, which the
	// customer view offers to undo.
	add(map[string]any{"type": "page", "anonymousId": "tablet-" + run, "name": "Home", "timestamp": ts(0)})
	add(map[string]any{"type": "track", "userId": "dora", "event": "Login", "timestamp": ts(1)})
	add(map[string]any{"type": "identify", "userId": "dora", "anonymousId": "tablet-" + run, "timestamp": ts(2)})
	// Eve's phone likewise, for a role that may not unmerge.
	add(map[string]any{"type": "page", "anonymousId": "phone-" + run, "name": "Home", "timestamp": ts(0)})
	add(map[string]any{"type": "track", "userId": "eve", "event": "Login", "timestamp": ts(1)})
	add(map[string]any{"type": "identify", "userId": "eve", "anonymousId": "phone-" + run, "timestamp": ts(2)})
	// A call-centre contact, as an import maps it (top-level channel,
	// context.department).
	add(map[string]any{"type": "track", "userId": "u-ann", "event": "Ticket Opened", "timestamp": ts(40), "channel": "call-centre",
		"context": map[string]any{"department": "service"}})
	// Zoe, whose erasure the privacy officer files.
	add(map[string]any{"type": "identify", "userId": "u-zoe", "timestamp": ts(0), "traits": map[string]any{"email": "zoe@example.com"}})
	// The experiment's exposures: 40 in control, 8 in new-hero (a sample
	// ratio mismatch against the planned 50/50); some join the newsletter.
	for i := range 48 {
		v, user := "control", fmt.Sprintf("exp-c-%d", i)
		if i >= 40 {
			v, user = "new-hero", fmt.Sprintf("exp-n-%d", i)
		}
		add(map[string]any{"type": "track", "userId": user, "event": "Experiment Viewed", "timestamp": ts(1),
			"properties": map[string]any{"experiment_id": "hero-2026", "variation_id": v}})
		if i%4 == 0 || i >= 44 {
			add(map[string]any{"type": "track", "userId": user, "event": "Newsletter Joined", "timestamp": ts(3)})
		}
	}
	body, _ := json.Marshal(map[string]any{"batch": batch})
	status, resp, err := postBatch(context.Background(), apiClient, s.url, s.writeKey, body)
	if err != nil || status != 200 {
		t.Fatalf("batch: %d %s %v", status, resp, err)
	}
	s.waitEvents(ids, 30*time.Second)
	// An event without userId or anonymousId is held in the quarantine.
	body, _ = json.Marshal(map[string]any{"batch": []map[string]any{{"type": "track", "event": "Broken Event", "messageId": "dash-broken-" + run}}})
	if status, resp, err := postBatch(context.Background(), apiClient, s.url, s.writeKey, body); err != nil || status != 200 || !strings.Contains(string(resp), "quarantined") {
		t.Fatalf("batch with a broken event: %d %s %v", status, resp, err)
	}

	// An order the shop's plan refuses (a price as text) is held.
	body, _ = json.Marshal(map[string]any{"batch": []map[string]any{{"type": "track", "userId": "u-ann", "event": "Order Completed",
		"messageId": "dash-plan-" + run, "properties": map[string]any{"price": "12.50"}}}})
	if status, resp, err := postBatch(context.Background(), apiClient, s.url, shop["writeKey"].(string), body); err != nil || status != 200 {
		t.Fatalf("batch breaking the plan: %d %s %v", status, resp, err)
	}

	// Attribution: a web shop source (121.75 a month, four average
	// months of 30.4375 days: 120.00 over a 30-day range) through which
	// two customers touch and buy a plan. Pat clicks a paid-search ad,
	// comes back two days later from Bing (organic search) and buys for
	// 150; Quinn comes from a newsletter (e-mail) and buys for 30. By
	// channel, first touch gives paid-search 150 (1), e-mail 30 (1); last
	// touch organic-search 150 (1), e-mail 30 (1); linear splits Pat's
	// 150 into 75 (0.5) each. Both conversions' touches came through the
	// web shop: under linear it earns 2 conversions worth 180 for its
	// 120.00, 60.00 per conversion; e-mail's share of its cost is 120 ×
	// 1/2 = 60.00 for 1 conversion worth 30.
	const webShopMonthly = 121.75
	st, webShop := call(t, s.url, adminToken, "POST", "/api/v1/sources", map[string]any{"name": "Web shop", "kind": "web", "owner": "ecommerce",
		"purpose": "online sales", "monthlyCost": webShopMonthly})
	if st != 201 {
		t.Fatalf("create web shop source: %d %v", st, webShop)
	}
	var attrBatch []map[string]any
	var attrIDs []string
	for _, e := range []map[string]any{
		{"type": "page", "userId": "att-pat", "name": "Landing", "timestamp": ts(0),
			"context": map[string]any{"campaign": map[string]any{"medium": "cpc", "source": "google", "name": "spring"}}},
		{"type": "page", "userId": "att-pat", "name": "Home", "timestamp": ts(48),
			"context": map[string]any{"page": map[string]any{"url": "https://shop.example/", "referrer": "https://www.bing.com/"}}},
		{"type": "track", "userId": "att-pat", "event": "Plan Purchased", "timestamp": ts(50), "properties": map[string]any{"amount": 150}},
		{"type": "page", "userId": "att-quinn", "name": "Landing", "timestamp": ts(10),
			"context": map[string]any{"campaign": map[string]any{"medium": "email", "source": "newsletter", "name": "spring"}}},
		{"type": "track", "userId": "att-quinn", "event": "Plan Purchased", "timestamp": ts(12), "properties": map[string]any{"amount": 30}},
	} {
		e["messageId"] = fmt.Sprintf("dash-attr-%s-%d", run, len(attrBatch))
		attrIDs = append(attrIDs, e["messageId"].(string))
		attrBatch = append(attrBatch, e)
	}
	body, _ = json.Marshal(map[string]any{"batch": attrBatch})
	if status, resp, err := postBatch(context.Background(), apiClient, s.url, webShop["writeKey"].(string), body); err != nil || status != 200 {
		t.Fatalf("the web shop's batch: %d %s %v", status, resp, err)
	}
	s.waitEvents(attrIDs, 30*time.Second)

	// A source of contact data a marketing user proposed waits for IT's
	// approval (the default decision rights; an admin's counts for it).
	st, mkt := call(t, s.url, adminToken, "POST", "/api/v1/users", map[string]any{"name": "Mia from marketing", "role": "marketing"})
	if st != 201 {
		t.Fatalf("create marketing user: %d %v", st, mkt)
	}
	mktToken := mkt["token"].(string)
	st, it := call(t, s.url, adminToken, "POST", "/api/v1/users", map[string]any{"name": "Ivo from IT", "role": "it"})
	if st != 201 {
		t.Fatalf("create it user: %d %v", st, it)
	}
	itToken := it["token"].(string)
	st, src := call(t, s.url, mktToken, "POST", "/api/v1/sources", map[string]any{"name": "Field sales CRM", "kind": "crm", "owner": "sales",
		"purpose": "visit reports", "dataCategories": []string{"contact"}, "monthlyCost": 120})
	if st != 201 || src["approval"] != "pending" {
		t.Fatalf("create pending source: %d %v", st, src)
	}
	srcID := src["id"].(string)
	st, dst := call(t, s.url, mktToken, "POST", "/api/v1/destinations", map[string]any{"name": "Ad network", "type": "webhook",
		"config": map[string]any{"url": okHook.URL}, "owner": "marketing", "purpose": "retargeting", "dataCategories": []string{"contact"},
		"consentPurposes": []string{"Advertising"}, "monthlyCost": 500})
	if st != 201 || dst["approval"] != "pending" {
		t.Fatalf("create pending destination: %d %v", st, dst)
	}

	t.Run("admin", func(t *testing.T) {
		b := startBrowser(t, exe)
		b.signIn(s.url, adminToken, false)
		role, _ := evalIn[string](b, 5*time.Second, `document.getElementById("who-role").textContent`)
		if role != "admin" {
			t.Errorf("role shown %q, want admin", role)
		}

		// Journey: the funnel, the highlighted gap, through to a stuck profile.
		b.must(b.do(10*time.Second, chromedp.Navigate(s.url+"/#/journey")), "open the journey")
		gap := `button.gap[data-handoff="consideration→purchase"]`
		label, err := waitFor[string](b, 30*time.Second, `(document.querySelector('`+gap+`') || {}).textContent`)
		b.must(err, "the marketing→sales hand-off gap")
		if !strings.Contains(label, "2 of 3 stuck") || !strings.Contains(label, "marketing→sales") {
			t.Errorf("hand-off shows %q, want 2 of 3 stuck at marketing→sales", label)
		}
		stages, _ := evalIn[string](b, 5*time.Second, `[...document.querySelectorAll(".stage")].map(e => e.dataset.stage + "=" + e.querySelector(".num").textContent).join(",")`)
		for _, want := range []string{"awareness=3 profiles", "consideration=3 profiles", "purchase=1 profiles"} {
			if !strings.Contains(stages, want) {
				t.Errorf("funnel %q lacks %q", stages, want)
			}
		}
		gaps, _ := evalIn[string](b, 5*time.Second, `document.getElementById("gaps").innerText`)
		if !strings.Contains(gaps, "marketing→sales\t2") || strings.Contains(gaps, "marketing→marketing") {
			t.Errorf("the hand-off gaps table:\n%s", gaps)
		}
		if n, _ := evalIn[int](b, 5*time.Second, `document.querySelectorAll("button.gap").length`); n != 3 {
			t.Errorf("%d highlighted hand-offs, want 3 (marketing→sales, sales→operations, service→marketing)", n)
		}
		_, err = waitFor[bool](b, 30*time.Second, `!!document.querySelector("#retention") && !!document.querySelector(".panel svg")`)
		b.must(err, "paths or retention")
		b.screenshot(shots, "1-journey")
		b.must(b.do(10*time.Second, chromedp.Click(chromedp.CSS(gap))), "click the gap")
		stuck, err := waitFor[string](b, 10*time.Second, `(document.querySelector(".handoff ul.stuck:not([hidden]) a") || {}).textContent`)
		b.must(err, "the stuck profiles")
		b.screenshot(shots, "2-journey-gap-open")
		b.must(b.do(10*time.Second, chromedp.Click(chromedp.CSS(".handoff ul.stuck:not([hidden]) a"))), "click a stuck profile")
		shown, err := waitFor[string](b, 20*time.Second, `(document.getElementById("profile-id") || {}).textContent`)
		b.must(err, "the stuck profile")
		if shown != stuck {
			t.Errorf("opened profile %q, clicked %q", shown, stuck)
		}
		tl, err := waitFor[string](b, 20*time.Second, `(document.getElementById("timeline-table") || {}).innerText`)
		b.must(err, "the stuck profile's timeline")
		if !strings.Contains(tl, "Product Viewed") || strings.Contains(tl, "Order Completed") {
			t.Errorf("a stuck profile's timeline: %q", tl)
		}

		// Customer view: search by e-mail, see the timeline with channels
		// and departments.
		b.must(b.do(10*time.Second, chromedp.Navigate(s.url+"/#/customer"),
			chromedp.WaitVisible(chromedp.CSS("#c-identifier")),
			chromedp.SendKeys(chromedp.CSS("#c-identifier"), "ann@example.com"),
			chromedp.Click(chromedp.CSS(`#c-search button[type="submit"]`))), "search ann@example.com")
		tl, err = waitFor[string](b, 20*time.Second, `(document.getElementById("timeline-table") || {}).innerText`)
		b.must(err, "Ann's timeline")
		for _, want := range []string{"Order Completed", "store", "sales", "Product Viewed", "app", "marketing", "identify", "track\tTicket Opened\tcall-centre\tservice"} {
			if !strings.Contains(tl, want) {
				t.Errorf("Ann's timeline lacks %q:\n%s", want, tl)
			}
		}
		idents, _ := evalIn[string](b, 5*time.Second, `document.getElementById("identifiers").innerText`)
		if !strings.Contains(idents, "ann@example.com") || !strings.Contains(idents, "u-ann") {
			t.Errorf("identifiers: %q", idents)
		}
		_, err = waitFor[string](b, 20*time.Second, `(document.getElementById("explain-summary") || {}).textContent`)
		b.must(err, "why is this one person")
		b.screenshot(shots, "3-customer")

		// Unmerge Dora's tablet from Dora.
		b.must(b.do(10*time.Second, chromedp.Navigate(s.url+"/#/customer"),
			chromedp.WaitVisible(chromedp.CSS("#c-identifier")),
			chromedp.SendKeys(chromedp.CSS("#c-identifier"), "user_id:dora"),
			chromedp.Click(chromedp.CSS(`#c-search button[type="submit"]`))), "search user_id:dora")
		_, err = waitFor[bool](b, 20*time.Second, `!!document.querySelector("form.unmerge input")`)
		b.must(err, "the unmerge form on Dora's merge")
		b.must(b.do(10*time.Second, chromedp.SendKeys(chromedp.CSS("form.unmerge input"), "shared tablet"),
			chromedp.Click(chromedp.CSS(`form.unmerge button[type="submit"]`))), "unmerge")
		split, err := waitFor[int](b, 20*time.Second, `document.querySelectorAll("form.unmerge [role=status] a").length`)
		b.must(err, "the unmerge's result")
		if split != 2 {
			t.Errorf("the unmerge shows %d profiles, want 2", split)
		}
		b.screenshot(shots, "3b-customer-unmerged")

		// Stack: approve the pending source.
		b.must(b.do(10*time.Second, chromedp.Navigate(s.url+"/#/stack")), "open the stack")
		row := `tr[data-tool="Field sales CRM"]`
		_, err = waitFor[bool](b, 20*time.Second, `(document.querySelector('`+row+` [data-approval]') || {}).textContent === "pending"`)
		b.must(err, "the pending source")
		b.screenshot(shots, "4-stack-pending")
		b.must(b.do(10*time.Second, chromedp.Click(chromedp.CSS(row+` button[data-action="approve"]`))), "approve")
		_, err = waitFor[bool](b, 20*time.Second, `(document.querySelector('`+row+` [data-approval]') || {}).textContent === "approved"`)
		b.must(err, "the source approved on the page")
		// Its change request leaves the list of those waiting.
		_, err = waitFor[bool](b, 20*time.Second, `!!document.querySelector("#changes-table, #changes p") && ![...document.querySelectorAll("#changes-table tr[data-change]")].some(r => r.textContent.includes("`+srcID+`"))`)
		b.must(err, "the approved source's change request gone from those waiting")
		b.screenshot(shots, "5-stack-approved")

		// The quarantine lists the broken event; replaying it validates it
		// again, and it is still invalid.
		held, err := waitFor[string](b, 20*time.Second, `(document.getElementById("quarantine-table") || {}).innerText`)
		b.must(err, "the quarantine")
		if !strings.Contains(held, "missing_field") || !strings.Contains(held, "held") {
			t.Errorf("the quarantine shows:\n%s", held)
		}
		b.must(b.do(10*time.Second, chromedp.Click(chromedp.CSS(`#quarantine-table tr[data-code="missing_field"] input[type="checkbox"]`)), chromedp.Click(chromedp.CSS("#replay"))), "replay")
		replayed, err := waitFor[string](b, 20*time.Second, `[...document.querySelectorAll("#quarantine [role=status]")].map(e => e.textContent).join("").match(/Replay: .*/)?.[0]`)
		b.must(err, "the replay's result")
		if replayed != "Replay: 1 invalid" {
			t.Errorf("replay shows %q, want Replay: 1 invalid", replayed)
		}
		b.screenshot(shots, "5b-quarantine-replayed")
		if st, got := call(t, s.url, adminToken, "GET", "/api/v1/sources/"+srcID, nil); st != 200 || got["approval"] != "approved" {
			t.Errorf("after approving on the page the API shows %d %v", st, got)
		}

		// The catalogue lists the destinations too; the pending one is
		// approved through its own endpoint.
		kinds, _ := evalIn[string](b, 5*time.Second, `[...document.querySelectorAll("#tools-table tr[data-tool]")].map(r => r.dataset.tool + ":" + r.dataset.kind).sort().join(",")`)
		for _, want := range []string{"Warehouse:destination", "Broken CRM:destination", "Ad network:destination", "Shop app:source", "default:source"} {
			if !strings.Contains(kinds, want) {
				t.Errorf("the catalogue table %q lacks %s", kinds, want)
			}
		}
		adRow := `tr[data-tool="Ad network"]`
		b.must(b.do(10*time.Second, chromedp.Click(chromedp.CSS(adRow+` button[data-action="approve"]`))), "approve the destination")
		_, err = waitFor[bool](b, 20*time.Second, `(document.querySelector('`+adRow+` [data-approval]') || {}).textContent === "approved"`)
		b.must(err, "the destination approved on the page")
		if st, got := call(t, s.url, adminToken, "GET", "/api/v1/destinations/"+dst["id"].(string), nil); st != 200 || got["approval"] != "approved" {
			t.Errorf("after approving the destination on the page the API shows %d %v", st, got)
		}
		_, err = waitFor[bool](b, 20*time.Second, `!!document.querySelector("#flows .chart canvas") && !!document.querySelector("#cost .chart canvas")`)
		b.must(err, "the data-flow picture and the cost chart")
		cost, _ := evalIn[string](b, 5*time.Second, `document.getElementById("cost-table").innerText`)
		if !strings.Contains(cost, "operations\t160.00") || !strings.Contains(cost, "marketing\t500.00") {
			t.Errorf("cost by department:\n%s", cost)
		}
		viol, err := waitFor[string](b, 20*time.Second, `(document.querySelector('#violations-table tr[data-violation="properties.price"]') || {}).innerText`)
		b.must(err, "the tracking-plan violation")
		if !strings.Contains(viol, shop["id"].(string)) || !strings.Contains(viol, "\t1\t") {
			t.Errorf("the violation row: %q", viol)
		}
		b.screenshot(shots, "5c-stack-catalogue-flows-violations")

		// Funnels: build Ad Clicked → Product Viewed → Order Completed.
		b.must(b.do(10*time.Second, chromedp.Navigate(s.url+"/#/funnels"), chromedp.WaitVisible(chromedp.CSS("#f-steps input")),
			chromedp.SetValue(chromedp.CSS("#f-steps li:nth-child(1) input"), "Ad Clicked"),
			chromedp.SetValue(chromedp.CSS("#f-steps li:nth-child(2) input"), "Product Viewed"),
			chromedp.Click(chromedp.CSS("#f-add")),
			chromedp.SendKeys(chromedp.CSS("#f-steps li:nth-child(3) input"), "Order Completed"),
			chromedp.Click(chromedp.CSS(`#funnel-form button[type="submit"]`))), "build a funnel")
		ft, err := waitFor[string](b, 30*time.Second, `document.querySelector("#funnel-out .chart canvas") && document.getElementById("funnel-table").innerText`)
		b.must(err, "the funnel")
		for _, want := range []string{"1\tAd Clicked\t3\t100.0 %", "2\tProduct Viewed\t3\t100.0 %", "3\tOrder Completed\t1\t33.3 %\t33.3 %"} {
			if !strings.Contains(ft, want) {
				t.Errorf("the funnel table lacks %q:\n%s", want, ft)
			}
		}
		if hint, _ := evalIn[string](b, 5*time.Second, `[...document.querySelectorAll("#event-names option")].map(o => o.value).join(",")`); !strings.Contains(hint, "Ad Clicked") || !strings.Contains(hint, "Newsletter Joined") {
			t.Errorf("event name suggestions: %q", hint)
		}
		b.screenshot(shots, "9-funnel")

		// Experiments: the list, then the results with the SRM warning.
		b.must(b.do(10*time.Second, chromedp.Navigate(s.url+"/#/experiments")), "open experiments")
		_, err = waitFor[bool](b, 20*time.Second, `!!document.querySelector('#experiments-table tr[data-experiment="hero-2026"] a')`)
		b.must(err, "the experiment list")
		b.must(b.do(10*time.Second, chromedp.Click(chromedp.CSS(`#experiments-table tr[data-experiment="hero-2026"] a`))), "open the experiment")
		warn, err := waitFor[string](b, 30*time.Second, `(document.getElementById("srm-warning") || {}).textContent`)
		b.must(err, "the SRM warning")
		if !strings.Contains(warn, "Sample ratio mismatch") {
			t.Errorf("SRM warning: %q", warn)
		}
		srmT, _ := evalIn[string](b, 5*time.Second, `document.getElementById("srm-table").innerText`)
		if !strings.Contains(srmT, "control\t40") || !strings.Contains(srmT, "new-hero\t8") {
			t.Errorf("SRM table:\n%s", srmT)
		}
		res, err := waitFor[string](b, 20*time.Second, `document.querySelector("#metrics .chart canvas") && document.querySelector('table.results[data-metric="newsletter"]').innerText`)
		b.must(err, "the metric's results")
		// control: 10 of 40 joined (25 %); new-hero: 5 of 8 (62.5 %), +37.5 pp.
		if !strings.Contains(res, "control (control)\t40\t25.0 %") || !strings.Contains(res, "new-hero\t8\t62.5 %\t37.50 pp") {
			t.Errorf("the newsletter results:\n%s", res)
		}
		b.screenshot(shots, "10-experiment")

		// Privacy: file Zoe's erasure; it is listed with its deadline.
		b.must(b.do(10*time.Second, chromedp.Navigate(s.url+"/#/privacy"), chromedp.WaitVisible(chromedp.CSS("#dsr-identity")),
			chromedp.SetValue(chromedp.CSS("#dsr-type"), "erasure"),
			chromedp.SetValue(chromedp.CSS("#dsr-identity-type"), "email"),
			chromedp.SendKeys(chromedp.CSS("#dsr-identity"), "zoe@example.com"),
			chromedp.SendKeys(chromedp.CSS("#dsr-method"), "e-mail round trip"),
			chromedp.Click(chromedp.CSS(`#dsr-form button[type="submit"]`))), "file an erasure")
		filed, err := waitFor[string](b, 20*time.Second, `((document.getElementById("dsr-result") || {}).textContent || "").match(/Filed (dsr_\S+?):/)?.[1]`)
		b.must(err, "the filed request")
		reqRow, err := waitFor[string](b, 20*time.Second, `(document.querySelector('#requests-table tr[data-request="`+filed+`"]') || {}).innerText`)
		b.must(err, "the request in the list")
		// The identifier, or once the person is erased (the request then
		// keeps its keyed hash only) that it is erased.
		if !strings.Contains(reqRow, "erasure") || !strings.Contains(reqRow, "zoe@example.com") && !strings.Contains(reqRow, "email (erased)") || !regexp.MustCompile(`received|in progress|completed|failed`).MatchString(reqRow) {
			t.Errorf("the erasure's row: %q", reqRow)
		}
		if st, got := call(t, s.url, adminToken, "GET", "/api/v1/privacy/requests/"+filed, nil); st != 200 || got["type"] != "erasure" {
			t.Errorf("the request filed on the page: %d %v", st, got)
		} else if id, _ := got["identity"].(map[string]any); strings.Contains(reqRow, "(erased)") && (id == nil || id["value"] != nil && id["value"] != "" || id["hash"] == nil) {
			t.Errorf("the row %q says erased; the API shows the identity %v", reqRow, id)
		} else if dl, _ := time.Parse(time.RFC3339, fmt.Sprint(got["deadline"])); !strings.Contains(reqRow, dl.UTC().Format("2006-01-02")) {
			t.Errorf("the row %q does not show the deadline %v", reqRow, got["deadline"])
		}
		rates, err := waitFor[string](b, 20*time.Second, `(document.querySelector('#rates-table tr[data-purpose="Advertising"]') || {}).innerText`)
		b.must(err, "the consent rates")
		if rates != "Advertising\t1\t1\t50.0 %\tnone (refused)" && !strings.HasPrefix(rates, "Advertising\t1\t1\t50.0 %") {
			t.Errorf("Advertising's consent rate: %q", rates)
		}
		if n, _ := evalIn[bool](b, 5*time.Second, `document.getElementById("records-panel").hidden`); !n {
			if st, _ := call(t, s.url, adminToken, "GET", "/api/v1/privacy/records", nil); st == 404 {
				t.Errorf("records of processing shown though GET /privacy/records is 404")
			}
		}
		b.screenshot(shots, "11-privacy-erasure-filed")

		// Operations reads /metrics and /readyz.
		b.must(b.do(10*time.Second, chromedp.Navigate(s.url+"/#/operations")), "open operations")
		acc, err := waitFor[string](b, 20*time.Second, `(document.getElementById("ops-accepted") || {}).textContent`)
		b.must(err, "operations")
		if acc == "0" || acc == "" {
			t.Errorf("accepted events shown %q after %d were sent", acc, len(batch))
		}
		if q, _ := evalIn[string](b, 5*time.Second, `document.getElementById("ops-quarantined").textContent`); q != "2" {
			t.Errorf("quarantined events shown %q, want 2 (the broken event and the plan violation)", q)
		}
		health, err := waitFor[string](b, 30*time.Second, `(() => { const r = [...document.querySelectorAll("#destinations-table tr[data-destination]")].map(r => r.dataset.destination + "=" + r.dataset.health).sort().join(","); return r.includes("Warehouse=healthy") && r.includes("Broken CRM=failing") ? r : ""; })()`)
		b.must(err, "destination health")
		if received.Load() == 0 {
			t.Errorf("the healthy receiver got nothing (health %s)", health)
		}
		_, err = waitFor[bool](b, 20*time.Second, `document.querySelectorAll("#main .chart canvas").length >= 2`)
		b.must(err, "the operations charts")
		b.screenshot(shots, "6-operations")

		// Sign out: the token is gone from the tab.
		b.must(b.do(10*time.Second, chromedp.Click(chromedp.CSS("#signout"))), "sign out")
		_, err = waitFor[bool](b, 10*time.Second, `!!document.getElementById("token") && !sessionStorage.getItem("tandem.token")`)
		b.must(err, "signed out")

		b.close()
		host := strings.TrimPrefix(s.url, "http://")
		b.checkRequests(host)
	})

	t.Run("role", func(t *testing.T) {
		// IT runs the platform and may not read profiles: no Customers
		// page in its navigation, and the page says why.
		b := startBrowser(t, exe)
		b.signIn(s.url, itToken, true)
		nav, _ := evalIn[string](b, 5*time.Second, `document.getElementById("nav").innerText + " / " + document.getElementById("who-role").textContent`)
		if strings.Contains(nav, "Customers") || !strings.Contains(nav, "/ it") {
			t.Errorf("an it user's navigation: %q", nav)
		}
		b.must(b.do(10*time.Second, chromedp.Navigate(s.url+"/#/customer")), "open customers")
		msg, err := waitFor[string](b, 10*time.Second, `(document.querySelector(".forbidden") || {}).textContent`)
		b.must(err, "the forbidden note")
		if !strings.Contains(msg, "Your role may not see this") || !strings.Contains(msg, "profiles:read") {
			t.Errorf("forbidden note %q", msg)
		}
		b.screenshot(shots, "7-it-role-customers")
	})

	t.Run("sales", func(t *testing.T) {
		// Sales reads profiles but may not unmerge: no Unmerge on Eve's
		// merge, and a note why.
		st, u := call(t, s.url, adminToken, "POST", "/api/v1/users", map[string]any{"name": "Sam from sales", "role": "sales"})
		if st != 201 {
			t.Fatalf("create sales user: %d %v", st, u)
		}
		st, p := call(t, s.url, adminToken, "GET", "/api/v1/profiles/lookup?identifier=user_id:eve", nil)
		if st != 200 {
			t.Fatalf("lookup: %d %v", st, p)
		}
		b := startBrowser(t, exe)
		b.signIn(s.url, u["token"].(string), false)
		b.must(b.do(10*time.Second, chromedp.Navigate(s.url+"/#/customer/"+p["id"].(string))), "open Eve")
		explain, err := waitFor[string](b, 20*time.Second, `document.getElementById("explain-summary") && document.getElementById("explain").innerText`)
		b.must(err, "Eve's explanation")
		if !strings.Contains(explain, "merged with profile") || !strings.Contains(explain, "Unmerging is for roles with profiles:unmerge; your role is sales") {
			t.Errorf("Eve's explanation for sales:\n%s", explain)
		}
		if n, _ := evalIn[int](b, 5*time.Second, `document.querySelectorAll("form.unmerge").length`); n != 0 {
			t.Errorf("a sales user is offered %d unmerges", n)
		}
		b.screenshot(shots, "8-sales-no-unmerge")
		b.close()
		b.checkRequests(strings.TrimPrefix(s.url, "http://"))
	})

	t.Run("attribution", func(t *testing.T) {
		// Marketing asks which channels earn the plans, under three models
		// side by side, and what the web shop returns for its cost.
		b := startBrowser(t, exe)
		b.signIn(s.url, mktToken, false)
		nav, _ := evalIn[string](b, 5*time.Second, `document.getElementById("nav").innerText`)
		if !strings.Contains(nav, "Attribution") {
			t.Errorf("marketing's navigation lacks Attribution: %q", nav)
		}
		from := time.Date(at.Year(), at.Month(), at.Day(), 0, 0, 0, 0, time.UTC).AddDate(0, 0, -2)
		to := from.AddDate(0, 0, 30)
		b.must(b.do(10*time.Second, chromedp.Navigate(s.url+"/#/attribution"), chromedp.WaitVisible(chromedp.CSS("#a-event")),
			chromedp.SetValue(chromedp.CSS("#a-event"), "Plan Purchased"),
			chromedp.SetValue(chromedp.CSS("#a-value"), "amount"),
			chromedp.SetValue(chromedp.CSS("#a-from"), from.Format("2006-01-02")),
			chromedp.SetValue(chromedp.CSS("#a-to"), to.Format("2006-01-02"))), "fill the attribution form")
		// The keyboard: focus the submit button and press Enter.
		b.must(b.do(10*time.Second, chromedp.Focus(chromedp.CSS(`#attribution-form button[type="submit"]`)), chromedp.KeyEvent("\r")), "run the attribution")
		credits, err := waitFor[string](b, 30*time.Second, `document.querySelector("#credits-out .chart canvas") && [...document.querySelectorAll("#credits-table tbody tr")].map(r =>
			r.dataset.key + ":" + [...r.querySelectorAll("td")].map(td => td.dataset.model + "=" + td.textContent).join("|")).join("\n")`)
		b.must(err, "the credits")
		for _, want := range []string{
			"paid-search:first_touch=150.00 (1)|last_touch=–|linear=75.00 (0.5)",
			"organic-search:first_touch=–|last_touch=150.00 (1)|linear=75.00 (0.5)",
			"e-mail:first_touch=30.00 (1)|last_touch=30.00 (1)|linear=30.00 (1)",
		} {
			if !strings.Contains(credits, want) {
				t.Errorf("the credits lack %q:\n%s", want, credits)
			}
		}
		if sum, _ := evalIn[string](b, 5*time.Second, `document.getElementById("credits-summary").textContent`); !strings.Contains(sum, "2 conversions worth 180.00 by channel") {
			t.Errorf("the credits' summary: %q", sum)
		}
		if lbl, _ := evalIn[string](b, 5*time.Second, `document.querySelector("#credits-out .chart").getAttribute("aria-label")`); !strings.Contains(lbl, "Linear: paid-search 75.00") {
			t.Errorf("the credits chart's label: %q", lbl)
		}

		// The web shop's cost from the catalogue over the 30 days.
		days := to.Sub(from).Hours() / 24
		cost := math.Round(webShopMonthly*days/30.4375*100) / 100
		shopRow, err := waitFor[string](b, 30*time.Second, `document.querySelector("#roi-out .chart canvas") && (document.querySelector('#roi-tools tr[data-tool="Web shop"]') || {}).innerText`)
		b.must(err, "the web shop's cost and return")
		if want := fmt.Sprintf("Web shop\tsource\t%.2f\t2\t180.00\t%.2f\t%.2f", cost, cost/2, 180/cost); shopRow != want {
			t.Errorf("the web shop's row %q, want %q", shopRow, want)
		}
		email, _ := evalIn[string](b, 5*time.Second, `(document.querySelector('#roi-channels tr[data-channel="e-mail"]') || {}).innerText`)
		if want := fmt.Sprintf("e-mail\t%.2f\t1\t30.00\t%.2f\t%.2f", cost/2, cost/2, 30/(cost/2)); email != want {
			t.Errorf("e-mail's row %q, want %q", email, want)
		}
		// The destinations earn nothing: listed for review, costliest first.
		review, _ := evalIn[string](b, 5*time.Second, `[...document.querySelectorAll("#review-table tbody tr")].map(r => r.innerText).join("\n")`)
		if want := fmt.Sprintf("Ad network\t%.2f\tcontact", math.Round(500*days/30.4375*100)/100); !strings.HasPrefix(review, want) || !strings.Contains(review, "Warehouse") {
			t.Errorf("the tools to review:\n%s\nwant first %q and the Warehouse", review, want)
		}
		b.screenshot(shots, "14-attribution")
		b.close()
		b.checkRequests(strings.TrimPrefix(s.url, "http://"))
	})

	t.Run("analyst-masked", func(t *testing.T) {
		// An analyst may not see personal data (no pii:read): on every
		// page the dashboard offers, no e-mail address of the test's
		// customers appears anywhere in the rendered page (text,
		// attributes, form values), and the customer view shows Ann's
		// e-mail masked while her timeline is there.
		st, u := call(t, s.url, adminToken, "POST", "/api/v1/users", map[string]any{"name": "Ana the analyst", "role": "analyst"})
		if st != 201 {
			t.Fatalf("create analyst: %d %v", st, u)
		}
		b := startBrowser(t, exe)
		b.signIn(s.url, u["token"].(string), false)
		emails := []string{"ann@example.com", "bob@example.com", "cy@example.com", "zoe@example.com"}
		// Everything the page shows or holds: its text, its markup (the
		// attributes: labels, titles, links) and the values of its fields.
		const everything = `document.title + "\n" + document.body.innerText + "\n" + document.documentElement.outerHTML + "\n" +
			[...document.querySelectorAll("input, select, textarea")].map(e => e.value).join("\n")`
		scan := func(page string) {
			t.Helper()
			all, err := evalIn[string](b, 5*time.Second, everything)
			if err != nil {
				t.Errorf("%s: read the page: %v", page, err)
				return
			}
			for _, e := range emails {
				if strings.Contains(strings.ToLower(all), e) {
					t.Errorf("the analyst sees %s on the %s page", e, page)
				}
			}
		}
		nav, _ := evalIn[string](b, 5*time.Second, `[...document.querySelectorAll("#nav a")].map(a => a.getAttribute("href")).join(",")`)
		pages := []struct{ hash, ready string }{
			{"#/journey", `!!document.querySelector("button.gap") && !!document.getElementById("retention")`},
			{"#/funnels", `!!document.querySelector("#event-names option")`},
			// The attribution page is scanned with its results (the
			// condition runs it once).
			{"#/attribution", `(document.getElementById("attribution-form") && !window.attributionRan && (window.attributionRan = true, document.querySelector('#attribution-form button[type="submit"]').click()), !!document.querySelector("#roi-out .chart canvas") && !!document.querySelector("#credits-out .chart canvas"))`},
			{"#/experiments", `!!document.querySelector('#experiments-table tr[data-experiment="hero-2026"]')`},
			{"#/stack", `!!document.querySelector("#tools-table tr[data-tool]") && !!document.querySelector("#flows .chart canvas")`},
			{"#/privacy", `!!document.querySelector("#rates-table tr[data-purpose]")`},
			{"#/operations", `!!document.querySelector("#destinations-table tr[data-destination]") && document.getElementById("ops-accepted").textContent !== ""`},
			{"#/customer", `!!document.getElementById("c-identifier")`},
		}
		for _, p := range pages {
			if !strings.Contains(nav, p.hash) {
				t.Errorf("the analyst's navigation %q lacks %s", nav, p.hash)
				continue
			}
			b.must(b.do(10*time.Second, chromedp.Navigate(s.url+"/"+p.hash)), "open "+p.hash)
			_, err := waitFor[bool](b, 30*time.Second, p.ready)
			b.must(err, p.hash+" for the analyst")
			scan(p.hash)
			b.screenshot(shots, "12-analyst-"+strings.TrimPrefix(p.hash, "#/"))
		}
		// Every page the navigation offers was scanned.
		for _, h := range strings.Split(nav, ",") {
			found := false
			for _, p := range pages {
				found = found || p.hash == h
			}
			if !found {
				t.Errorf("the analyst is offered %s, which this test does not scan", h)
			}
		}
		// The experiment's results and a customer found by e-mail.
		b.must(b.do(10*time.Second, chromedp.Navigate(s.url+"/#/experiments/"+exp["id"].(string))), "open the experiment")
		_, err := waitFor[bool](b, 30*time.Second, `!!document.querySelector("table.results")`)
		b.must(err, "the experiment's results for the analyst")
		scan("experiment results")
		b.must(b.do(10*time.Second, chromedp.Navigate(s.url+"/#/customer"),
			chromedp.WaitVisible(chromedp.CSS("#c-identifier")),
			chromedp.SendKeys(chromedp.CSS("#c-identifier"), "ann@example.com"),
			chromedp.Click(chromedp.CSS(`#c-search button[type="submit"]`))), "search ann@example.com as the analyst")
		tl, err := waitFor[string](b, 20*time.Second, `document.getElementById("profile-id") && (document.getElementById("timeline-table") || {}).innerText`)
		b.must(err, "Ann's timeline for the analyst")
		if !strings.Contains(tl, "Order Completed") {
			t.Errorf("the analyst's view of Ann's timeline:\n%s", tl)
		}
		idents, _ := evalIn[string](b, 5*time.Second, `document.getElementById("identifiers").innerText`)
		if !strings.Contains(idents, "email") || !strings.Contains(idents, "u-ann") {
			t.Errorf("Ann's identifiers for the analyst (an e-mail, masked, and her user id): %q", idents)
		}
		_, err = waitFor[string](b, 20*time.Second, `(document.getElementById("explain-summary") || {}).textContent`)
		b.must(err, "why is this one person, for the analyst")
		scan("customer")
		b.screenshot(shots, "13-analyst-customer-masked")
		b.close()
		b.checkRequests(strings.TrimPrefix(s.url, "http://"))
	})

}
