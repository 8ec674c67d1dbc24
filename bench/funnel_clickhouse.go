package bench

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"tandem/eventstore/clickhouse"
)

// eventsFlag is --events: a number of events, or a ClickHouse URL.
type eventsFlag struct{ o *funnelOptions }

var _ flag.Value = eventsFlag{}

func (f eventsFlag) String() string {
	if f.o == nil {
		return "10000000"
	}
	return strconv.FormatInt(f.o.Events, 10)
}

func (f eventsFlag) Set(v string) error {
	if strings.HasPrefix(v, "clickhouse://") {
		f.o.EventsURL = v
		return nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return fmt.Errorf("want a number of events or a clickhouse:// URL")
	}
	f.o.Events = n
	return nil
}

// runClickHouseFunnelBench loads the generated events into the empty
// ClickHouse database of o.EventsURL and times the queries through the
// ClickHouse analytics backend, with windowFunnel as the baseline. The
// database's tables are dropped afterwards unless o.Keep (the database
// too when this run created it).
func runClickHouseFunnelBench(ctx context.Context, o funnelOptions, progress io.Writer) *FunnelReport {
	logf := func(format string, args ...any) { fmt.Fprintf(progress, format+"\n", args...) }
	rep := &FunnelReport{Command: "tandem bench funnel", Flags: o, Window: o.Window.String(),
		GOMAXPROCS: runtime.GOMAXPROCS(0), NumCPU: runtime.NumCPU(), Go: runtime.Version()}
	if u, err := url.Parse(o.EventsURL); err == nil {
		rep.Dir = u.Redacted()
		rep.Flags.EventsURL = rep.Dir
	}
	fail := func(err error) *FunnelReport {
		rep.Failures = append(rep.Failures, err.Error())
		return rep
	}
	opts, err := ch.ParseDSN(o.EventsURL)
	if err != nil {
		return fail(fmt.Errorf("--events: %w", err))
	}
	db := opts.Auth.Database
	if db == "" {
		db = "default"
	}
	existed, err := databaseExists(ctx, o.EventsURL, db)
	if err != nil {
		return fail(err)
	}
	store, err := clickhouse.Open(ctx, o.EventsURL)
	if err != nil {
		return fail(err)
	}
	defer store.Close()
	conn := store.Conn()
	events := store.Table("events")
	var stored, links uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM "+events).Scan(&stored); err != nil {
		return fail(err)
	}
	if err := conn.QueryRow(ctx, "SELECT count() FROM "+store.Table("profile_links")).Scan(&links); err != nil {
		return fail(err)
	}
	if stored > 0 || links > 0 {
		return fail(fmt.Errorf("database %s already holds %d events and %d profile links; give an empty one", db, stored, links))
	}
	if !o.Keep {
		defer func() {
			// A fresh context: the run's may be cancelled.
			cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if !existed {
				_ = conn.Exec(cctx, "DROP DATABASE IF EXISTS "+quoteIdent(db))
				return
			}
			for _, t := range []string{"events", "event_keys", "profile_links", "schema_version"} {
				_ = conn.Exec(cctx, "DROP TABLE IF EXISTS "+store.Table(t))
			}
		}()
	}
	_ = conn.QueryRow(ctx, "SELECT version()").Scan(&rep.ClickHouse)

	start := time.Now()
	if err := generateClickHouse(ctx, conn, events, o, logf); err != nil {
		return fail(fmt.Errorf("generate: %w", err))
	}
	rep.LoadSeconds = time.Since(start).Seconds()
	if n, err := store.Count(ctx); err != nil {
		return fail(err)
	} else {
		rep.Stored = n
	}
	logf("loaded %d events in %.1fs", rep.Stored, rep.LoadSeconds)
	// Background merges of the fresh parts would compete with the first
	// queries; a settled table is what a running deployment queries.
	settle := time.Now()
	for time.Since(settle) < 5*time.Minute && ctx.Err() == nil {
		var merges uint64
		if err := conn.QueryRow(ctx, "SELECT count() FROM system.merges WHERE database = "+clickhouse.Quote(db)).Scan(&merges); err != nil || merges == 0 {
			break
		}
		time.Sleep(time.Second)
	}
	var parts uint64
	_ = conn.QueryRow(ctx, "SELECT count() FROM system.parts WHERE active AND database = "+clickhouse.Quote(db)+" AND table = 'events'").Scan(&parts)
	logf("background merges settled after %.1fs: %d active parts", time.Since(settle).Seconds(), parts)

	windowFunnel := func(from, to time.Time) string {
		return WindowFunnelSQL(events, benchNames[:4], int64(o.Window/time.Second), from, to)
	}
	run := func(ctx context.Context, q string) ([]int64, error) { return runWindowFunnel(ctx, conn, q, 4) } // the funnel's 4 steps
	if err := timeQueries(ctx, store.Analytics(), baseline{name: "windowFunnel", label: "windowFunnel", sql: windowFunnel, run: run}, o, rep, logf); err != nil {
		return fail(err)
	}
	return rep
}

// databaseExists asks the server of rawURL whether database db exists.
func databaseExists(ctx context.Context, rawURL, db string) (bool, error) {
	opts, err := ch.ParseDSN(rawURL)
	if err != nil {
		return false, err
	}
	opts.Auth.Database = ""
	for i, a := range opts.Addr {
		if !strings.Contains(a, ":") {
			opts.Addr[i] = a + ":9000"
		}
	}
	conn, err := ch.Open(opts)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	var n uint64
	err = conn.QueryRow(ctx, "SELECT count() FROM system.databases WHERE name = "+clickhouse.Quote(db)).Scan(&n)
	return n > 0, err
}

func quoteIdent(name string) string {
	return "`" + strings.NewReplacer(`\`, `\\`, "`", "\\`").Replace(name) + "`"
}

// generateClickHouse inserts the events in ClickHouse SQL, a million per
// statement, with the distributions of the DuckDB generator (see
// generate): each profile active for two weeks from a random day of the
// span, events at random microseconds in them, names uniform. The hash
// functions differ, so the rows are not the DuckDB run's. The event_keys
// index (dedup and Get) is not filled: analytics do not read it.
func generateClickHouse(ctx context.Context, conn driver.Conn, table string, o funnelOptions, logf func(string, ...any)) error {
	names := make([]string, o.Names)
	for i, n := range benchNames[:o.Names] {
		names[i] = clickhouse.Quote(n)
	}
	span := int64(o.Days) * 86400e6
	active := min(span, 14*86400e6)
	const chunk = 1_000_000
	for lo := int64(0); lo < o.Events; lo += chunk {
		n := min(chunk, o.Events-lo)
		q := fmt.Sprintf(`INSERT INTO %[1]s (profile_key, timestamp, source_id, message_id, type, name, user_id, received_at, raw, stored_at)
			SELECT concat('user_id:', uid), ts, 'bench', concat('b', toString(i)), 'track', nm, uid, ts,
				concat('{"type":"track","event":"', nm, '","userId":"', uid, '","properties":{"plan":"p', toString(i %% 3), '"}}'), ts
			FROM (SELECT number AS i, [%[2]s][1 + intHash64(i * 17 + 2) %% %[3]d] AS nm, intHash64(i * 29 + 4) %% %[4]d AS p,
				concat('u', toString(p)) AS uid,
				toInt64(%[5]d + intHash64(p * 7 + 1) %% %[6]d + intHash64(i * 13 + 3) %% %[7]d) AS ts
				FROM numbers(%[8]d, %[9]d))`,
			table, strings.Join(names, ", "), o.Names, o.Profiles, benchBase.UnixMicro(), span-active+1, active, lo, n)
		if err := conn.Exec(ctx, q); err != nil {
			return err
		}
		logf("generated %d/%d events", lo+n, o.Events)
	}
	return nil
}

// WindowFunnelSQL is the ClickHouse baseline: windowFunnel over each user
// id's events of the steps, at DateTime's second precision (all 18.16
// takes), then the count of profiles per level. Its rules differ from
// tandem's on equal times and repeated steps, and it has no profile links,
// filters, strict mode or step times.
func WindowFunnelSQL(table string, steps []string, windowSeconds int64, from, to time.Time) string {
	conds := make([]string, len(steps))
	names := make([]string, len(steps))
	for i, s := range steps {
		names[i] = clickhouse.Quote(s)
		conds[i] = "name = " + names[i]
	}
	return fmt.Sprintf(`SELECT level, count() FROM (
	SELECT user_id, windowFunnel(%d)(toDateTime(intDiv(timestamp, 1000000)), %s) AS level
	FROM %s WHERE timestamp >= %d AND timestamp < %d AND name IN (%s) GROUP BY user_id
) GROUP BY level`, windowSeconds, strings.Join(conds, ", "), table, from.UnixMicro(), to.UnixMicro(), strings.Join(names, ", "))
}

// runWindowFunnel returns the profiles reaching each step.
func runWindowFunnel(ctx context.Context, conn driver.Conn, q string, steps int) ([]int64, error) {
	rows, err := conn.Query(ctx, q)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	counts := make([]int64, steps)
	for rows.Next() {
		var (
			level uint8
			n     uint64
		)
		if err := rows.Scan(&level, &n); err != nil {
			return nil, err
		}
		for k := 0; k < int(level) && k < steps; k++ {
			counts[k] += int64(n)
		}
	}
	return counts, rows.Err()
}
