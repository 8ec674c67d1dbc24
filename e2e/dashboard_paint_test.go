package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"tandem/eventstore/duckdb"
)

// TestDashboardFirstPaint measures how soon the dashboard paints on a node
// whose event store holds TANDEM_DASHBOARD_PROFILES profiles (1000000 for
// the figure in docs/dashboard.md), against an empty node in the same
// run: the sign-in page's first contentful paint, the journey page's
// first contentful paint (a signed-in user opening the dashboard), and
// when the journey's funnel is on the page (its "tandem:journey-shown"
// performance mark: the journey query over every profile has answered).
// Three loads each, the median logged. A measurement, not a timed test: it
// fails only when a page does not work. Skipped unless the variable is
// set (generating the events takes a while).
//
//	TANDEM_DASHBOARD_PROFILES=1000000 go test ./e2e -run TestDashboardFirstPaint -count=1 -v
func TestDashboardFirstPaint(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("TANDEM_DASHBOARD_PROFILES"))
	if n <= 0 {
		t.Skip("set TANDEM_DASHBOARD_PROFILES (e.g. 1000000) to measure the dashboard's first paint over that many profiles")
	}
	exe := chromiumPath(t)

	empty := startServer(t, "", serverOpts{})
	dir := t.TempDir()
	start := time.Now()
	events := fillProfiles(t, filepath.Join(dir, "events.duckdb"), n)
	t.Logf("generated %d events of %d profiles in %.1fs", events, n, time.Since(start).Seconds())
	loaded := startServer(t, dir, serverOpts{})

	for _, node := range []struct {
		name string
		s    *server
	}{{"empty store", empty}, {fmt.Sprintf("%d profiles", n), loaded}} {
		b := startBrowser(t, exe)
		var signin, fcp, shown []float64
		for i := range 3 {
			b.must(b.do(20*time.Second, chromedp.EmulateViewport(1366, 900), chromedp.Navigate(fmt.Sprintf("%s/?load=%d", node.s.url, i))), "open the dashboard")
			_, err := waitFor[bool](b, 15*time.Second, `!!document.getElementById("token") || !!document.getElementById("who-role")`)
			b.must(err, "the first page")
			if v, _ := evalIn[bool](b, 5*time.Second, `!!document.getElementById("token")`); v {
				signin = append(signin, paint(b))
				b.signIn(node.s.url, adminToken, false)
				continue // the next loads are a signed-in user's
			}
			b.must(b.do(20*time.Second, chromedp.Navigate(fmt.Sprintf("%s/?load=%d#/journey", node.s.url, i))), "open the journey")
			at, err := waitFor[float64](b, 120*time.Second, `(performance.getEntriesByName("tandem:journey-shown")[0] || {}).startTime`)
			b.must(err, "the journey's funnel")
			fcp = append(fcp, paint(b))
			shown = append(shown, at)
		}
		// One more signed-in load, so that there are three of each.
		b.must(b.do(20*time.Second, chromedp.Navigate(node.s.url+"/?load=last#/journey")), "open the journey")
		at, err := waitFor[float64](b, 120*time.Second, `(performance.getEntriesByName("tandem:journey-shown")[0] || {}).startTime`)
		b.must(err, "the journey's funnel")
		fcp = append(fcp, paint(b))
		shown = append(shown, at)
		stages, _ := evalIn[string](b, 5*time.Second, `[...document.querySelectorAll(".stage")].map(e => e.dataset.stage + "=" + e.querySelector(".num").textContent).join(", ")`)
		t.Logf("%s: sign-in page first contentful paint %.0f ms; journey page first contentful paint median %.0f ms (%v); funnel shown median %.0f ms (%v); funnel: %s",
			node.name, median(signin), median(fcp), rounded(fcp), median(shown), rounded(shown), stages)
		b.close()
	}
}

// paint is the page's first contentful paint in ms since navigation.
func paint(b *browser) float64 {
	b.t.Helper()
	v, err := waitFor[float64](b, 10*time.Second, `(performance.getEntriesByName("first-contentful-paint")[0] || {}).startTime`)
	b.must(err, "first contentful paint")
	return v
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return -1
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func rounded(v []float64) []int {
	out := make([]int, len(v))
	for i, x := range v {
		out[i] = int(x + 0.5)
	}
	return out
}

// fillProfiles creates the event store at path with n profiles' journeys
// over the last 28 days, in SQL (as bench's funnel generator does): each
// has an Ad Clicked; 60 % view a product, 20 % order, 15 % get it
// shipped, 5 % open a ticket, an hour or more apart. It returns the
// number of events.
func fillProfiles(t *testing.T, path string, n int) int64 {
	t.Helper()
	store, err := duckdb.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	db := store.DB()
	ctx := context.Background()
	begin := time.Now().UTC().Add(-28 * 24 * time.Hour).Truncate(time.Hour)
	const span = int64(25 * 24 * 3600e6) // first events spread over 25 days, in µs
	const chunk = 250_000
	for lo := 0; lo < n; lo += chunk {
		hi := min(lo+chunk, n)
		q := fmt.Sprintf(`INSERT INTO events (source_id, message_id, type, name, user_id, timestamp, received_at, raw, key_hash)
			SELECT 'paint', 'fp' || p || '-' || k, 'track', name, 'u' || p, ts, ts,
				'{"type":"track","event":"' || name || '","userId":"u' || p || '"}', hash(p * 10 + k)
			FROM (SELECT p, k, name,
					TIMESTAMPTZ '%s' + to_microseconds((((hash(p * 7 + 1) >> 11) %% %d) + k * 3600000000 + ((hash(p * 13 + k) >> 11) %% 3600000000))::BIGINT) AS ts
				FROM range(%d, %d) t(p),
					(VALUES (0, 'Ad Clicked', 100), (1, 'Product Viewed', 60), (2, 'Order Completed', 20), (3, 'Order Shipped', 15), (4, 'Ticket Opened', 5)) s(k, name, pct)
				WHERE k = 0 OR (hash(p * 31 + k) %% 100) < pct)`,
			begin.Format(time.RFC3339), span, lo, hi)
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("generate: %v", err)
		}
	}
	if _, err := db.ExecContext(ctx, "CHECKPOINT"); err != nil {
		t.Fatal(err)
	}
	var events int64
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM events").Scan(&events); err != nil {
		t.Fatal(err)
	}
	return events
}
