package analytics_test

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"tandem/analytics"
	"tandem/analytics/reftest"
)

// TestFunnelAgainstClickHouse compares the Go core's funnel depth per
// profile with ClickHouse's own windowFunnel on random data that both
// define alike: no two events of a profile at the same second and steps
// naming distinct events, because ClickHouse 18.16 (Debian's) orders
// equal times by arrival and matches an event to its first condition
// only. Ties and repeated steps are covered by the reference and the
// scripts.
//
// It needs a ClickHouse server's HTTP URL in TANDEM_CLICKHOUSE_URL (for
// example http://127.0.0.1:8123/). TODO(lead): once testserver.ClickHouse
// is merged, take the URL from it instead, so that CI runs this test.
func TestFunnelAgainstClickHouse(t *testing.T) {
	base := os.Getenv("TANDEM_CLICKHOUSE_URL")
	if base == "" {
		t.Skip("skipping: set TANDEM_CLICKHOUSE_URL to a ClickHouse server's HTTP URL to cross-check windowFunnel")
	}
	ch := func(q, body string) string {
		t.Helper()
		u, err := url.Parse(base)
		if err != nil {
			t.Fatal(err)
		}
		// Long queries go in the body (URLs are limited); an INSERT's data
		// follows its query there.
		resp, err := http.Post(u.String(), "text/plain", strings.NewReader(q+"\n"+body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("clickhouse: %d %s\nquery: %s", resp.StatusCode, b, q)
		}
		return string(b)
	}
	table := fmt.Sprintf("tandem_funnel_xcheck_%d", time.Now().UnixNano())
	ch("CREATE TABLE "+table+" (c UInt32, p String, t DateTime, name String) ENGINE = Memory", "")
	defer ch("DROP TABLE "+table, "")

	const cases = 3000
	o := reftest.Options{Profiles: 6, Events: 10, Names: 4, Steps: 4, MaxSeconds: 60}
	r := rand.New(rand.NewPCG(3, 5))
	all := make([]reftest.Case, cases)
	var rows strings.Builder
	for i := range all {
		c := reftest.Random(r, o)
		// Distinct seconds per profile: ClickHouse's DateTime has
		// second precision and no tie rule we share.
		used := map[string]bool{}
		for j := range c.Events {
			e := &c.Events[j]
			sec := (e.T - reftest.Base.UnixMicro()) / 1e6
			for used[e.Profile+"/"+strconv.FormatInt(sec, 10)] {
				sec = (sec + 1) % int64(o.MaxSeconds)
			}
			used[e.Profile+"/"+strconv.FormatInt(sec, 10)] = true
			e.T = reftest.Base.UnixMicro() + sec*1e6
			fmt.Fprintf(&rows, "%d\t%s\t%d\t%s\n", i, e.Profile, e.T/1e6, e.Name)
		}
		c.Query.Strict = false
		c.Query.From = analytics.At(reftest.Base)
		c.Query.To = analytics.At(reftest.Base.Add(time.Duration(o.MaxSeconds) * time.Second))
		all[i] = c
	}
	ch("INSERT INTO "+table+" (c, p, t, name) FORMAT TabSeparated", rows.String())

	compared, deep := 0, 0
	for lo := 0; lo < cases; lo += 200 {
		var parts []string
		for i := lo; i < min(lo+200, cases); i++ {
			c := &all[i]
			conds := make([]string, len(c.Query.Steps))
			for k, s := range c.Query.Steps {
				conds[k] = "name = '" + s.Event + "'"
			}
			if len(conds) == 1 {
				// windowFunnel wants at least two conditions in 18.16:
				// an impossible second step leaves the first's count.
				conds = append(conds, "name = '-'")
			}
			parts = append(parts, fmt.Sprintf("SELECT c, p, windowFunnel(%d)(t, %s) AS level FROM %s WHERE c = %d GROUP BY c, p",
				c.Query.Window.Micros/1e6, strings.Join(conds, ", "), table, i))
		}
		out := ch(strings.Join(parts, " UNION ALL ")+" FORMAT TabSeparated", "")
		got := map[string]int{}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if line == "" {
				continue
			}
			f := strings.Split(line, "\t")
			level, _ := strconv.Atoi(f[2])
			got[f[0]+"/"+f[1]] = level
		}
		for i := lo; i < min(lo+200, cases); i++ {
			c := &all[i]
			names, by := reftest.Profiles(c.Events)
			for _, p := range names {
				pf := analytics.Funnel(points(&c.Query, by[p]), len(c.Query.Steps), c.Query.Window.Micros, false)
				key := strconv.Itoa(i) + "/" + p
				if got[key] != pf.Depth {
					t.Fatalf("case %d profile %s: ClickHouse %d, tandem %d\nquery %+v\nevents %+v", i, p, got[key], pf.Depth, c.Query, by[p])
				}
				compared++
				if pf.Depth >= 2 {
					deep++
				}
			}
		}
	}
	t.Logf("%d cases, %d profiles (%d past step 1): tandem's funnel depth equals ClickHouse windowFunnel on every one", cases, compared, deep)
}
