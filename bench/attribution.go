package bench

import (
	"context"
	"database/sql"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"syscall"
	"text/tabwriter"
	"time"

	"tandem/analytics"
	"tandem/attribution"
	atdb "tandem/attribution/duckdb"
	"tandem/eventstore/duckdb"
)

const attributionUsage = `Usage: tandem bench attribution [flags]

Measures attribution (POST /api/v1/analytics/attribution) on the embedded
DuckDB event store. It generates --events events over --profiles profiles
spread over --days days, written straight into a fresh event store with
one INSERT … SELECT per million events: 3 % purchases ("Order Completed"
with a revenue), 30 % page views with a campaign, a referrer or neither
(ten kinds: paid search, e-mail, display, social, affiliate campaigns;
search, social and other referrers; direct; internal pages), 1 % imported
call-centre contacts, the rest track events without marketing context.
Page views of every fifth profile are anonymous, linked to the profile
(identity links, so attribution resolves profiles through them). The
store then fills the events' touch columns from their JSON (FillTouches,
as Open does for a database written before the columns existed).

It then times, --runs times each after one untimed run, alternating:

  funnel       the baseline: a 2-step funnel (Product Viewed → Order
               Completed, 7 d) through the analytics backend over the same
               events, in the same run
  scan         the attribution SQL alone (conversions and candidate
               touches of converting profiles, with their touch columns),
               rows read and dropped
  <model>      attribution by channel with one model, for each of
               first_touch, last_touch, linear, time_decay, position
  rule-based   the five rule-based models in one query
  markov       the data-driven model (it reads every profile's journey)

It reports the best and median times, the ratios to the funnel, and the
process's peak resident memory during each query. It never fails on the
figures.

Flags:
`

type attributionOptions struct {
	Events   int64  `json:"events"`
	Profiles int64  `json:"profiles"`
	Days     int    `json:"days"`
	Runs     int    `json:"runs"`
	Threads  int    `json:"threads"`
	Dir      string `json:"dir,omitempty"`
	Keep     bool   `json:"keep"`
	Reuse    bool   `json:"reuse"`
	JSON     bool   `json:"json"`
}

// AttributionReport is everything one `tandem bench attribution` measured.
type AttributionReport struct {
	Command     string             `json:"command"`
	Flags       attributionOptions `json:"flags"`
	GOMAXPROCS  int                `json:"gomaxprocs"`
	NumCPU      int                `json:"numCpu"`
	Go          string             `json:"go"`
	DuckDB      string             `json:"duckdb"`
	Dir         string             `json:"dir"`
	LoadSeconds float64            `json:"loadSeconds"`
	// FillSeconds is FillTouches after the generator; OpenSeconds the
	// store's Open, which fills the touch columns of a database written
	// before they existed.
	FillSeconds float64        `json:"fillSeconds"`
	OpenSeconds float64        `json:"openSeconds"`
	Stored      int64          `json:"storedEvents"`
	Links       int64          `json:"links"`
	Queries     []*QueryTiming `json:"queries"`
	// Conversions and Value are the attribution's totals; ScanRows the
	// rows the attribution SQL returns.
	Conversions int64                `json:"conversions"`
	Value       string               `json:"value"`
	ScanRows    int64                `json:"scanRows"`
	Credits     []attribution.Credit `json:"linearCredits"`
	// OverFunnel is each query's best time over the funnel's best.
	OverFunnel map[string]float64 `json:"overFunnel"`
	Failures   []string           `json:"failures,omitempty"`
}

func attributionMain(args []string, stdout, stderr io.Writer) int {
	const cmd = "tandem bench attribution"
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	var o attributionOptions
	fs.Int64Var(&o.Events, "events", 10_000_000, "events to generate")
	fs.Int64Var(&o.Profiles, "profiles", 1_000_000, "profiles the events belong to")
	fs.IntVar(&o.Days, "days", 90, "days the events span")
	fs.IntVar(&o.Runs, "runs", 3, "timed runs of each query")
	fs.IntVar(&o.Threads, "threads", runtime.NumCPU(), "DuckDB worker threads for the queries (tandem serve runs its store with 1)")
	fs.StringVar(&o.Dir, "dir", "", "directory for the database (default: a new temporary directory)")
	fs.BoolVar(&o.Keep, "keep", false, "keep the database afterwards")
	fs.BoolVar(&o.Reuse, "reuse", false, "with --dir: measure the database an earlier --keep run left there instead of generating one (same flags)")
	fs.BoolVar(&o.JSON, "json", false, "print the report as one JSON object")
	if code, ok := parseFlags(fs, args, attributionUsage, stdout, stderr); !ok {
		return code
	}
	switch {
	case o.Events < 1:
		return usageErr(stderr, cmd, "--events", "must be positive")
	case o.Profiles < 1:
		return usageErr(stderr, cmd, "--profiles", "must be positive")
	case o.Days < 1:
		return usageErr(stderr, cmd, "--days", "must be positive")
	case o.Runs < 1:
		return usageErr(stderr, cmd, "--runs", "must be positive")
	case o.Threads < 1:
		return usageErr(stderr, cmd, "--threads", "must be positive")
	case o.Reuse && o.Dir == "":
		return usageErr(stderr, cmd, "--reuse", "needs --dir")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	rep := runAttributionBench(ctx, o, stderr)
	if o.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", cmd, err)
			return 1
		}
	} else {
		writeAttributionText(stdout, rep)
	}
	if len(rep.Failures) > 0 {
		return 1
	}
	return 0
}

func runAttributionBench(ctx context.Context, o attributionOptions, progress io.Writer) *AttributionReport {
	logf := func(format string, args ...any) { fmt.Fprintf(progress, format+"\n", args...) }
	rep := &AttributionReport{Command: "tandem bench attribution", Flags: o, GOMAXPROCS: runtime.GOMAXPROCS(0), NumCPU: runtime.NumCPU(), Go: runtime.Version()}
	fail := func(err error) *AttributionReport {
		rep.Failures = append(rep.Failures, err.Error())
		return rep
	}
	dir := o.Dir
	if dir == "" {
		var err error
		if dir, err = tempDir("attribution"); err != nil {
			return fail(err)
		}
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return fail(err)
	}
	if !o.Keep {
		defer os.RemoveAll(dir)
	}
	rep.Dir = dir
	path := filepath.Join(dir, "events.duckdb")
	if !o.Reuse {
		_ = os.Remove(path)
		_ = os.Remove(path + ".wal")
	}
	opened := time.Now()
	store, err := duckdb.Open(path)
	if err != nil {
		return fail(err)
	}
	defer store.Close()
	rep.OpenSeconds = time.Since(opened).Seconds()
	db := store.DB()
	_ = db.QueryRowContext(ctx, "SELECT version()").Scan(&rep.DuckDB)
	if _, err := db.ExecContext(ctx, fmt.Sprintf("SET GLOBAL threads = %d", runtime.NumCPU())); err != nil {
		return fail(err)
	}
	start := time.Now()
	if !o.Reuse {
		if err := generateAttribution(ctx, db, o, logf); err != nil {
			return fail(fmt.Errorf("generate: %w", err))
		}
		rep.LoadSeconds = time.Since(start).Seconds()
		// The generator writes by SQL: the store reads the touch columns
		// from the JSON, as Open does for events stored before them.
		filled := time.Now()
		if _, err := store.FillTouches(ctx); err != nil {
			return fail(err)
		}
		if _, err := db.ExecContext(ctx, "CHECKPOINT"); err != nil {
			return fail(err)
		}
		rep.FillSeconds = time.Since(filled).Seconds()
	}
	_ = db.QueryRowContext(ctx, "SELECT count(*) FROM events").Scan(&rep.Stored)
	_ = db.QueryRowContext(ctx, "SELECT count(*) FROM profile_links").Scan(&rep.Links)
	logf("loaded %d events, %d links in %.1fs", rep.Stored, rep.Links, rep.LoadSeconds)
	if _, err := db.ExecContext(ctx, fmt.Sprintf("SET GLOBAL threads = %d", o.Threads)); err != nil {
		return fail(err)
	}
	if err := timeAttribution(ctx, store, o, rep, logf); err != nil {
		return fail(err)
	}
	return rep
}

func timeAttribution(ctx context.Context, store *duckdb.Store, o attributionOptions, rep *AttributionReport, logf func(string, ...any)) error {
	from := benchBase
	to := benchBase.Add(time.Duration(o.Days) * 24 * time.Hour)
	rng := analytics.Range{From: analytics.At(from), To: analytics.At(to)}
	cfg := attribution.DefaultConfig()
	src := store.Attribution()
	backend := store.Analytics()
	fq := &analytics.FunnelQuery{Window: analytics.Seconds(7 * 86400), Range: rng,
		Steps: []analytics.FunnelStep{{Condition: analytics.Condition{Event: "Product Viewed"}}, {Condition: analytics.Condition{Event: "Order Completed"}}}}
	if err := fq.Validate(time.Now()); err != nil {
		return err
	}
	query := func(models ...string) (*attribution.Query, error) {
		q := &attribution.Query{Conversion: attribution.Conversion{Event: "Order Completed", Value: "revenue"}, Models: models, Range: rng}
		return q, q.Validate(time.Now(), &cfg)
	}
	type job struct {
		t   *QueryTiming
		run func() error
	}
	jobs := []job{{&QueryTiming{Name: "funnel"}, func() error { _, err := backend.Funnel(ctx, fq); return err }}}
	scanQ, err := query(attribution.Linear)
	if err != nil {
		return err
	}
	jobs = append(jobs, job{&QueryTiming{Name: "scan"}, func() error {
		n, err := drainScan(ctx, store.DB(), src.(*atdb.Source), scanQ)
		rep.ScanRows = n
		return err
	}})
	add := func(name string, models ...string) error {
		q, err := query(models...)
		if err != nil {
			return err
		}
		jobs = append(jobs, job{&QueryTiming{Name: name}, func() error {
			res, err := cfg.Attribute(ctx, src, q)
			if err == nil {
				rep.Conversions, rep.Value = res.Conversions, res.Value.String()
				if name == attribution.Linear {
					rep.Credits = res.Models[0].Credits
				}
			}
			return err
		}})
		return nil
	}
	for _, m := range attribution.Models[:5] {
		if err := add(m, m); err != nil {
			return err
		}
	}
	if err := add("rule-based", attribution.Models[:5]...); err != nil {
		return err
	}
	if err := add(attribution.Markov, attribution.Markov); err != nil {
		return err
	}
	logf("warm-up run (not timed)")
	for _, j := range jobs {
		if err := j.run(); err != nil {
			return fmt.Errorf("%s: %w", j.t.Name, err)
		}
	}
	for i := 0; i < o.Runs; i++ {
		line := fmt.Sprintf("run %d:", i+1)
		for _, j := range jobs {
			timeOne(ctx, j.t, j.run)
			line += fmt.Sprintf(" %s %.3fs", j.t.Name, last(j.t.Seconds))
		}
		logf("%s", line)
	}
	rep.OverFunnel = map[string]float64{}
	for _, j := range jobs {
		finish(j.t)
		rep.Queries = append(rep.Queries, j.t)
		if j.t.Error != "" {
			rep.Failures = append(rep.Failures, j.t.Name+": "+j.t.Error)
		}
	}
	if f := jobs[0].t; f.Best > 0 {
		for _, j := range jobs[1:] {
			rep.OverFunnel[j.t.Name] = j.t.Best / f.Best
		}
	}
	return nil
}

// drainScan runs the attribution SQL of q and reads every row.
func drainScan(ctx context.Context, db *sql.DB, src *atdb.Source, q *attribution.Query) (int64, error) {
	s, err := src.Query(ctx, attribution.ScanSpec{From: q.FromMicros() - q.Lookback.Micros, To: q.ToMicros(), ConvFrom: q.FromMicros(),
		Conversion: q.Conversion.Event, Value: q.Conversion.Value})
	if err != nil {
		return 0, err
	}
	rows, err := db.QueryContext(ctx, s)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	dest := make([]any, len(cols))
	for i := range dest {
		dest[i] = new(any)
	}
	var n int64
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return n, err
		}
		n++
	}
	return n, rows.Err()
}

// generateAttribution inserts the events in chunks of a million, in SQL
// (see the usage for the mix), then the links of the anonymous page views.
func generateAttribution(ctx context.Context, db *sql.DB, o attributionOptions, logf func(string, ...any)) error {
	span := int64(o.Days) * 86400e6
	active := min(span, 14*86400e6)
	const chunk = 1_000_000
	pages := []string{
		`"context":{"campaign":{"medium":"cpc","source":"google","name":"c' || (i % 20) || '"},"page":{"url":"https://shop.example/"}}`,
		`"context":{"campaign":{"medium":"email","source":"mailer","name":"n' || (i % 12) || '"},"page":{"url":"https://shop.example/"}}`,
		`"context":{"campaign":{"medium":"display","source":"network","name":"d' || (i % 8) || '"},"page":{"url":"https://shop.example/"}}`,
		`"context":{"campaign":{"medium":"social","source":"facebook","name":"s' || (i % 6) || '"},"page":{"url":"https://shop.example/"}}`,
		`"context":{"campaign":{"medium":"affiliate","source":"deals","name":"a' || (i % 4) || '"},"page":{"url":"https://shop.example/"}}`,
		`"context":{"page":{"url":"https://shop.example/","referrer":"https://www.google.com/"}}`,
		`"context":{"page":{"url":"https://shop.example/","referrer":"https://www.facebook.com/"}}`,
		`"context":{"page":{"url":"https://shop.example/","referrer":"https://blog.example.net/post"}}`,
		`"context":{"page":{"url":"https://shop.example/"}}`,
		`"context":{"page":{"url":"https://shop.example/p","referrer":"https://shop.example/"}}`,
	}
	pageCase := "CASE c"
	for k, p := range pages {
		pageCase += fmt.Sprintf(" WHEN %d THEN '%s'", k, p)
	}
	pageCase += " END"
	others := []string{"Product Viewed", "Product Added", "Checkout Started", "Signed Up", "Login", "Search", "Cart Viewed", "Page Scrolled"}
	names := ""
	for k, n := range others {
		if k > 0 {
			names += ", "
		}
		names += "'" + n + "'"
	}
	for lo := int64(0); lo < o.Events; lo += chunk {
		hi := min(lo+chunk, o.Events)
		q := fmt.Sprintf(`INSERT INTO events (source_id, message_id, type, name, user_id, anonymous_id, timestamp, received_at, raw, key_hash)
			SELECT src, 'b' || i, ty, name, CASE WHEN anon THEN NULL ELSE uid END, CASE WHEN anon THEN 'a' || p END, ts, ts,
				'{"type":"' || ty || '",' || CASE WHEN anon THEN '"anonymousId":"a' || p ELSE '"userId":"' || uid END || '",' ||
				CASE WHEN ty = 'page' THEN '"name":"' || name || '",' || (%s)
					WHEN name = 'Order Completed' THEN '"event":"Order Completed","properties":{"revenue":' || (i %% 200) || '.99}'
					WHEN name = 'Call Centre Contact' THEN '"event":"Call Centre Contact","channel":"call-centre"'
					ELSE '"event":"' || name || '","properties":{"plan":"p' || (i %% 3) || '"}' END || '}',
				hash(i * 37 + 5)
			FROM (SELECT i, p, uid, ts, k, c,
					CASE WHEN k < 3 THEN 'track' WHEN k < 33 THEN 'page' ELSE 'track' END AS ty,
					CASE WHEN k < 3 THEN 'Order Completed' WHEN k < 33 THEN 'Landing' WHEN k < 34 THEN 'Call Centre Contact'
						ELSE [%s][1 + ((hash(i * 17 + 2) >> 23) %% %d)::INT] END AS name,
					CASE WHEN k = 33 THEN 'call-centre' ELSE 'web' END AS src,
					(k >= 3 AND k < 33 AND p %% 5 = 0) AS anon
				FROM (SELECT i, p, 'u' || p AS uid,
						TIMESTAMPTZ '%s' + to_microseconds((((hash(p * 7 + 1) >> 11) %% %d) + ((hash(i * 13 + 3) >> 11) %% %d))::BIGINT) AS ts,
						((hash(i * 41 + 7) >> 13) %% 100)::INT AS k, ((hash(i * 43 + 9) >> 17) %% 10)::INT AS c
					FROM (SELECT i, ((hash(i * 29 + 4) >> 5) %% %d)::BIGINT AS p FROM range(%d, %d) t(i))))`,
			pageCase, names, len(others), benchBase.Format(time.RFC3339), span-active+1, active, o.Profiles, lo, hi)
		if _, err := db.ExecContext(ctx, q); err != nil {
			return err
		}
		logf("generated %d/%d events", hi, o.Events)
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO profile_links (key, profile_id)
		SELECT DISTINCT 'anonymous_id:' || anonymous_id, 'u' || substr(anonymous_id, 2) FROM events WHERE anonymous_id IS NOT NULL`); err != nil {
		return err
	}
	_, err := db.ExecContext(ctx, "CHECKPOINT")
	return err
}

func writeAttributionText(w io.Writer, rep *AttributionReport) {
	o := rep.Flags
	fmt.Fprintf(w, "%s: %d events over %d profiles, %d days; %d runs; DuckDB %s with %d threads\n",
		rep.Command, o.Events, o.Profiles, o.Days, o.Runs, rep.DuckDB, o.Threads)
	fmt.Fprintf(w, "GOMAXPROCS %d, NumCPU %d, %s, dir %s; loaded %d events and %d links in %.1fs (INSERT … SELECT), touch columns filled in %.1fs; open %.1fs\n\n",
		rep.GOMAXPROCS, rep.NumCPU, rep.Go, rep.Dir, rep.Stored, rep.Links, rep.LoadSeconds, rep.FillSeconds, rep.OpenSeconds)
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', tabwriter.AlignRight|tabwriter.Debug)
	fmt.Fprintln(tw, "query \t best s \t median s \t best / funnel \t runs \t peak RSS MB \t")
	for _, q := range rep.Queries {
		if q.Error != "" {
			fmt.Fprintf(tw, "%s \t error: %s \t \t \t \t \t\n", q.Name, q.Error)
			continue
		}
		rss, ratio := "-", "-"
		if q.PeakRSSMB != nil {
			rss = fmt.Sprintf("%.0f", *q.PeakRSSMB)
		}
		if r, ok := rep.OverFunnel[q.Name]; ok {
			ratio = fmt.Sprintf("%.2f×", r)
		}
		fmt.Fprintf(tw, "%s \t %.3f \t %.3f \t %s \t %d \t %s \t\n", q.Name, q.Best, q.Median, ratio, len(q.Seconds), rss)
	}
	tw.Flush()
	fmt.Fprintf(w, "\n%d conversions worth %s; the attribution SQL returns %d rows\nlinear credits by channel:\n", rep.Conversions, rep.Value, rep.ScanRows)
	for _, c := range rep.Credits {
		fmt.Fprintf(w, "  %-16s %14s conversions %16s value\n", c.Key, c.Conversions, c.Value)
	}
	for _, f := range rep.Failures {
		fmt.Fprintf(w, "FAILED: %s\n", f)
	}
}
