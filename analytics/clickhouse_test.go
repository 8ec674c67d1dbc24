package analytics_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/ext"
	"github.com/ClickHouse/clickhouse-go/v2/lib/column"

	"tandem/analytics"
	"tandem/analytics/reftest"
	"tandem/testserver"
)

// TestMain stops the test servers the tests started.
func TestMain(m *testing.M) { testserver.Main(m) }

// TestFunnelAgainstClickHouse compares the Go core's funnel depth per
// profile with ClickHouse's own windowFunnel on random data that both
// define alike: no two events of a profile at the same second and steps
// naming distinct events, because ClickHouse 18.16 (Debian's) orders
// equal times by arrival and matches an event to its first condition
// only. Ties and repeated steps are covered by the reference and the
// scripts.
//
// It runs on the test ClickHouse server (testserver.ClickHouse): skipped
// when clickhouse-server is not installed, a failure when
// TANDEM_TEST_SERVERS=require.
func TestFunnelAgainstClickHouse(t *testing.T) {
	opts, err := ch.ParseDSN(testserver.ClickHouse(t))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := ch.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := context.Background()
	table := opts.Auth.Database + ".funnel_xcheck"
	if err := conn.Exec(ctx, "CREATE TABLE "+table+" (c UInt32, p String, t DateTime, name String) ENGINE = Memory"); err != nil {
		t.Fatal(err)
	}
	// Rows travel as an external table: 18.16's INSERT … VALUES and
	// native batch paths do not work with this driver (see
	// eventstore/clickhouse).
	rows, err := ext.NewTable("_rows", ext.Column("c", column.Type("UInt32")), ext.Column("p", column.Type("String")),
		ext.Column("t", column.Type("UInt32")), ext.Column("name", column.Type("String")))
	if err != nil {
		t.Fatal(err)
	}

	const cases = 3000
	o := reftest.Options{Profiles: 6, Events: 10, Names: 4, Steps: 4, MaxSeconds: 60}
	r := rand.New(rand.NewPCG(3, 5))
	all := make([]reftest.Case, cases)
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
			if err := rows.Append(uint32(i), e.Profile, uint32(e.T/1e6), e.Name); err != nil {
				t.Fatal(err)
			}
		}
		c.Query.Strict = false
		c.Query.From = analytics.At(reftest.Base)
		c.Query.To = analytics.At(reftest.Base.Add(time.Duration(o.MaxSeconds) * time.Second))
		all[i] = c
	}
	if err := conn.Exec(ch.Context(ctx, ch.WithExternalTable(rows)), "INSERT INTO "+table+" SELECT c, p, toDateTime(t), name FROM _rows"); err != nil {
		t.Fatal(err)
	}

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
		res, err := conn.Query(ctx, strings.Join(parts, " UNION ALL "))
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]int{}
		for res.Next() {
			var (
				c     uint32
				p     string
				level uint8
			)
			if err := res.Scan(&c, &p, &level); err != nil {
				t.Fatal(err)
			}
			got[fmt.Sprintf("%d/%s", c, p)] = int(level)
		}
		if err := res.Err(); err != nil {
			t.Fatal(err)
		}
		res.Close()
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
