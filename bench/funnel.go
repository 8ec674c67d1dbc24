package bench

import (
	"context"
	"database/sql"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"tandem/analytics"
	"tandem/config"
	"tandem/eventstore/duckdb"
)

const funnelUsage = `Usage: tandem bench funnel [flags]

Measures the journey analytics on the embedded DuckDB event store. It
generates --events track events over --profiles profiles and --names event
names spread over --days days, written straight into a fresh event store
with one INSERT … SELECT per million events (not through the HTTP API:
loading is not what is measured), then times, --runs times each:

  funnel     a 4-step funnel with a --window window, through tandem's
             analytics backend (the same code the API runs)
  plain-sql  the fastest plain SQL found for the same funnel counts over the
             same table (self-joins chasing the earliest next step; see
             docs/analytics.md), in the same run, for comparison
  journey    the default lifecycle's journey report
  retention  weekly retention, Signed Up → Login

With --events clickhouse://HOST:PORT/DB (the value may also be a number:
how many events; give --events twice for both) the same shape of data is
generated inside ClickHouse (INSERT … SELECT over numbers(), a million rows
a statement) into an empty database, and the queries run through the
ClickHouse analytics backend (tandem serve --events clickhouse://…); the
baseline is then ClickHouse's own windowFunnel over the same rows, whose
tie rules differ from tandem's (it orders equal times by arrival; on this
data equal times are rare, so the counts should agree). --compare-embedded
runs the DuckDB benchmark too, in the same process with the same flags (its
own generated data: same distributions, not the same rows).

With --ingest-rate R the embedded benchmark appends R events/s into the
same store while it times the queries (batches every 100 ms through the
store's Append, as the pipeline writes them; their times lie after the
queried span, so the answers do not move): analytics while ingesting. The
store then chooses each query's DuckDB threads as tandem serve does (the
cores its process left idle, at most --threads); the plain-SQL baseline
runs under the same scheduler. Before the timed queries it waits 1.5 s,
so that the scheduler samples the process without queries (idle after
the load, or appending), and it reports the threads a query then gets.

With --links S a share S of the profiles have their user id key linked to
a profile id of their own, as identity resolution links keys: the queries
then resolve each event's profile through the links, as on a node with
identity resolution, and (the links being one to one) still give the
plain SQL's answers. The links are written at each run, --reuse or not.

With --dir D --keep the generated database stays in D; a later run with
--dir D --reuse and the same --events, --profiles, --names and --days
queries it instead of generating it again (the events an earlier
--ingest-rate appended stay too: they lie after the queried span).

Each query runs once untimed first (the first read of the new database
file fills DuckDB's buffers). It reports the best and median times, the
median CPU seconds of the process during each query (embedded store; all
its threads, the appends' too: steadier than wall time on a shared
machine), the funnel's answer (and whether the plain SQL gave the same
counts), and the process's peak resident memory during each query. It
never fails on the figures.

Flags:
`

// funnelOptions are the flags of `tandem bench funnel`.
type funnelOptions struct {
	Events   int64         `json:"events"`
	Profiles int64         `json:"profiles"`
	Names    int           `json:"names"`
	Days     int           `json:"days"`
	Window   time.Duration `json:"-"`
	// Links is the share of profiles whose user id is linked to a profile
	// id of its own, as identity resolution links keys.
	Links   float64 `json:"links,omitempty"`
	Runs    int     `json:"runs"`
	Threads int     `json:"threads"`
	// IngestRate, when > 0, is the events/s appended while the queries
	// are timed (embedded store only).
	IngestRate float64 `json:"ingestRate,omitempty"`
	// Gap is a pause before each timed funnel and baseline run.
	Gap time.Duration `json:"gap,omitempty"`
	// FunnelOnly leaves out the journey and retention timings.
	FunnelOnly bool   `json:"funnelOnly,omitempty"`
	Dir        string `json:"dir,omitempty"`
	// EventsURL is the ClickHouse database to bench, "" for DuckDB.
	EventsURL       string `json:"eventsUrl,omitempty"`
	CompareEmbedded bool   `json:"compareEmbedded,omitempty"`
	Keep            bool   `json:"keep"`
	// Reuse opens the database --dir holds from an earlier --keep run
	// with the same generation flags instead of generating it again.
	Reuse bool `json:"reuse,omitempty"`
	JSON  bool `json:"json"`
}

// benchNames are the generated events' names; the funnel takes the first
// four, retention "Signed Up" and "Login", the journey the default
// lifecycle's (most of them are here).
var benchNames = []string{
	"Product Viewed", "Product Added", "Checkout Started", "Order Completed",
	"Signed Up", "Login", "Ad Clicked", "Email Opened", "Campaign Clicked", "Demo Requested",
	"Order Shipped", "Order Delivered", "Ticket Opened", "Ticket Resolved", "Order Repeated",
	"Referral Sent", "Review Submitted", "Search", "Cart Viewed", "Page Scrolled",
}

// FunnelReport is everything one `tandem bench funnel` measured.
type FunnelReport struct {
	Command     string          `json:"command"`
	Flags       funnelOptions   `json:"flags"`
	Window      string          `json:"window"`
	GOMAXPROCS  int             `json:"gomaxprocs"`
	NumCPU      int             `json:"numCpu"`
	Go          string          `json:"go"`
	DuckDB      string          `json:"duckdb"`
	Dir         string          `json:"dir"`
	LoadSeconds float64         `json:"loadSeconds"`
	Stored      int64           `json:"storedEvents"`
	Links       int64           `json:"profileLinks"`
	Queries     []*QueryTiming  `json:"queries"`
	Funnel      []FunnelStepFig `json:"funnel"`
	PlainSQL    []int64         `json:"plainSqlCounts"`
	SameAnswer  bool            `json:"sameAnswer"`
	Ratio       *float64        `json:"funnelOverPlainSql"` // best over best
	MedianRatio *float64        `json:"funnelOverPlainSqlMedian"`
	// CPURatio is the funnel's median CPU seconds over the baseline's
	// (embedded store: the process's; ClickHouse: unset).
	CPURatio     *float64 `json:"funnelOverPlainSqlMedianCpu,omitempty"`
	PlainSQLText string   `json:"plainSql"`
	// QueryThreads is the DuckDB threads the store's scheduler gave a
	// query when the timing began (embedded store).
	QueryThreads int `json:"queryThreads,omitempty"`
	// Ingest is what the --ingest-rate appender did while queries ran.
	Ingest   *IngestFig `json:"ingest,omitempty"`
	Failures []string   `json:"failures,omitempty"`
	// ClickHouse is the server's version when the ClickHouse backend was
	// measured; the baseline is then windowFunnel, and Embedded holds the
	// DuckDB run of --compare-embedded.
	ClickHouse string        `json:"clickhouse,omitempty"`
	Embedded   *FunnelReport `json:"embedded,omitempty"`
}

// FunnelStepFig is one step of the measured funnel's answer.
type FunnelStepFig struct {
	Name     string   `json:"name"`
	Profiles int64    `json:"profiles"`
	Median   *float64 `json:"medianSecondsFromPrevious"`
}

// QueryTiming is one timed query.
type QueryTiming struct {
	Name    string    `json:"name"`
	Seconds []float64 `json:"seconds"`
	Best    float64   `json:"bestSeconds"`
	Median  float64   `json:"medianSeconds"`
	// CPU is the process's CPU seconds during each run (every thread:
	// the query's and, with --ingest-rate, the appends'); steadier than
	// wall time on a shared machine.
	CPU       []float64 `json:"cpuSeconds,omitempty"`
	BestCPU   float64   `json:"bestCpuSeconds,omitempty"`
	MedianCPU float64   `json:"medianCpuSeconds,omitempty"`
	PeakRSSMB *float64  `json:"peakRssMB"` // process peak RSS during the runs
	Error     string    `json:"error,omitempty"`
}

func funnelMain(args []string, stdout, stderr io.Writer) int {
	const cmd = "tandem bench funnel"
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	var o funnelOptions
	o.Events = 10_000_000
	fs.Var(eventsFlag{&o}, "events", "events to generate (a number), or the ClickHouse database to bench (clickhouse://HOST:PORT/DB); give twice for both")
	fs.BoolVar(&o.CompareEmbedded, "compare-embedded", false, "with a ClickHouse --events: run the embedded DuckDB benchmark too, with the same flags")
	fs.Int64Var(&o.Profiles, "profiles", 1_000_000, "profiles the events belong to")
	fs.IntVar(&o.Names, "names", 20, fmt.Sprintf("distinct event names (4 to %d)", len(benchNames)))
	fs.IntVar(&o.Days, "days", 90, "days the events span")
	fs.DurationVar(&o.Window, "window", 7*24*time.Hour, "the funnel's conversion window")
	fs.IntVar(&o.Runs, "runs", 5, "timed runs of each query")
	fs.Float64Var(&o.Links, "links", 0, "share of the profiles (0 to 1) whose user id key is linked to a profile id of its own, so that queries resolve profiles through the links as on a node with identity resolution (embedded store; one to one: the answers stay those of the plain SQL)")
	fs.IntVar(&o.Threads, "threads", runtime.NumCPU(), "DuckDB worker threads for the queries (tandem serve runs its store with 1)")
	fs.Float64Var(&o.IngestRate, "ingest-rate", 0, "events/s appended into the store while the queries are timed (embedded store; 0: none)")
	fs.DurationVar(&o.Gap, "gap", 0, "pause before each timed funnel and plain-SQL run: queries arriving apart, as an analyst's do, rather than back to back (the store's scheduler samples the process and refills its write-hold budget in between)")
	fs.BoolVar(&o.FunnelOnly, "funnel-only", false, "time only the funnel and its plain-SQL baseline (not the journey and retention)")
	fs.StringVar(&o.Dir, "dir", "", "directory for the database (default: a new temporary directory)")
	fs.BoolVar(&o.Keep, "keep", false, "keep the database afterwards")
	fs.BoolVar(&o.Reuse, "reuse", false, "with --dir: query the database an earlier run with --keep and the same --events, --profiles, --names and --days left there instead of generating one (embedded store)")
	fs.BoolVar(&o.JSON, "json", false, "print the report as one JSON object")
	if code, ok := parseFlags(fs, args, funnelUsage, stdout, stderr); !ok {
		return code
	}
	switch {
	case o.Events < 1:
		return usageErr(stderr, cmd, "--events", "must be positive")
	case o.Profiles < 1:
		return usageErr(stderr, cmd, "--profiles", "must be positive")
	case o.Names < 4 || o.Names > len(benchNames):
		return usageErr(stderr, cmd, "--names", fmt.Sprintf("must be between 4 and %d", len(benchNames)))
	case o.Days < 1:
		return usageErr(stderr, cmd, "--days", "must be positive")
	case o.Window < 0:
		return usageErr(stderr, cmd, "--window", "must not be negative")
	case o.Runs < 1:
		return usageErr(stderr, cmd, "--runs", "must be positive")
	case o.Gap < 0:
		return usageErr(stderr, cmd, "--gap", "must not be negative")
	case o.Threads < 1:
		return usageErr(stderr, cmd, "--threads", "must be positive")
	case o.IngestRate < 0:
		return usageErr(stderr, cmd, "--ingest-rate", "must not be negative")
	case o.Links < 0 || o.Links > 1:
		return usageErr(stderr, cmd, "--links", "must be between 0 and 1")
	case o.Reuse && o.Dir == "":
		return usageErr(stderr, cmd, "--reuse", "needs --dir")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var rep *FunnelReport
	if o.EventsURL != "" {
		rep = runClickHouseFunnelBench(ctx, o, stderr)
		if o.CompareEmbedded {
			rep.Embedded = runFunnelBench(ctx, o, stderr)
		}
	} else {
		rep = runFunnelBench(ctx, o, stderr)
	}
	if o.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", cmd, err)
			return 1
		}
	} else {
		writeFunnelText(stdout, rep)
	}
	if len(rep.Failures) > 0 || (rep.Embedded != nil && len(rep.Embedded.Failures) > 0) {
		return 1
	}
	return 0
}

func runFunnelBench(ctx context.Context, o funnelOptions, progress io.Writer) *FunnelReport {
	logf := func(format string, args ...any) { fmt.Fprintf(progress, format+"\n", args...) }
	rep := &FunnelReport{Command: "tandem bench funnel", Flags: o, Window: o.Window.String(),
		GOMAXPROCS: runtime.GOMAXPROCS(0), NumCPU: runtime.NumCPU(), Go: runtime.Version()}
	fail := func(err error) *FunnelReport {
		rep.Failures = append(rep.Failures, err.Error())
		return rep
	}
	dir := o.Dir
	if dir == "" {
		var err error
		if dir, err = tempDir("funnel"); err != nil {
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
	gen := filepath.Join(dir, "generated.json")
	want, _ := json.Marshal(generation{o.Events, o.Profiles, o.Names, o.Days})
	reuse := false
	if o.Reuse {
		had, err := os.ReadFile(gen)
		switch {
		case err == nil && string(had) == string(want):
			reuse = true
		case err == nil:
			return fail(fmt.Errorf("--reuse: %s holds data generated with %s, not %s", dir, had, want))
		case !os.IsNotExist(err):
			return fail(err)
		}
	}
	if !reuse {
		_ = os.Remove(gen)
		_ = os.Remove(path)
		_ = os.Remove(path + ".wal")
	}
	store, err := duckdb.Open(path)
	if err != nil {
		return fail(err)
	}
	defer store.Close()
	db := store.DB()
	_ = db.QueryRowContext(ctx, "SELECT version()").Scan(&rep.DuckDB)

	if !reuse {
		// Load: more threads than queries get, to be quick about it.
		if _, err := db.ExecContext(ctx, fmt.Sprintf("SET GLOBAL threads = %d", runtime.NumCPU())); err != nil {
			return fail(err)
		}
		start := time.Now()
		if err := generate(ctx, db, o, logf); err != nil {
			return fail(fmt.Errorf("generate: %w", err))
		}
		rep.LoadSeconds = time.Since(start).Seconds()
		if err := os.WriteFile(gen, want, 0o600); err != nil {
			return fail(err)
		}
	}
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM events").Scan(&rep.Stored); err != nil {
		return fail(err)
	}
	if rep.Links, err = setLinks(ctx, db, o); err != nil {
		return fail(fmt.Errorf("links: %w", err))
	}
	if reuse {
		logf("reusing %d stored events (%s)", rep.Stored, path)
	} else {
		logf("loaded %d events in %.1fs", rep.Stored, rep.LoadSeconds)
	}
	// The store's queries get at most --threads (the store's scheduler
	// sets them per query and puts back one after, as in tandem serve).
	// The baseline runs under the same scheduler: it gets the threads a
	// funnel would get then, and its own CPU is not taken for load that
	// the next funnel should leave cores to (a baseline run outside the
	// scheduler made the funnel after it run on one thread).
	store.SetQueryThreads(o.Threads)
	if _, err := db.ExecContext(ctx, "SET GLOBAL threads = 1"); err != nil {
		return fail(err)
	}

	plain := func(from, to time.Time) string {
		return PlainFunnelSQL(benchNames[:4], o.Window.Microseconds(), from, to)
	}
	run := func(ctx context.Context, q string) ([]int64, error) {
		defer store.Begin(ctx)()
		return runPlain(ctx, db, q)
	}
	var ing *ingester
	if o.IngestRate > 0 {
		ing = startIngest(ctx, store, o, logf)
	}
	// Let the scheduler sample the process without queries first: its
	// last sample would otherwise be of the load (both cores busy), and
	// with the queries back to back it takes no other, so every query
	// would run on one thread.
	select {
	case <-ctx.Done():
	case <-time.After(settle):
	}
	rep.QueryThreads = store.QueryThreads()
	logf("queries start with %d DuckDB threads (the cores the process leaves idle)", rep.QueryThreads)
	err = timeQueries(ctx, store.Analytics(), baseline{name: "plain-sql", label: "plain SQL", sql: plain, run: run}, o, rep, logf)
	if ing != nil {
		rep.Ingest = ing.stop()
	}
	if err != nil {
		return fail(err)
	}
	return rep
}

// setLinks replaces the store's profile links by --links of the
// profiles' user id keys, each linked to a profile id of its own
// ("user_id:u7" to "p7"), and returns how many there are.
func setLinks(ctx context.Context, db *sql.DB, o funnelOptions) (int64, error) {
	if _, err := db.ExecContext(ctx, "DELETE FROM profile_links"); err != nil {
		return 0, err
	}
	per := int64(math.Round(o.Links * 1000))
	if per > 0 {
		q := fmt.Sprintf(`INSERT INTO profile_links SELECT 'user_id:u' || i, 'p' || i FROM range(%d) t(i) WHERE (hash(i * 41 + 7) %% 1000) < %d`, o.Profiles, per)
		if _, err := db.ExecContext(ctx, q); err != nil {
			return 0, err
		}
	}
	var n int64
	err := db.QueryRowContext(ctx, "SELECT count(*) FROM profile_links").Scan(&n)
	return n, err
}

// generation is what a kept database was generated with (--reuse).
type generation struct {
	Events, Profiles int64
	Names, Days      int
}

// settle is how long the benchmark lets the store's thread scheduler
// sample the process (every 500 ms) before it times queries.
const settle = 1500 * time.Millisecond

// baseline is the plain query a benchmark's funnel is timed against: it
// gives the same per-step profile counts on the generated data.
type baseline struct {
	name  string                                                   // of its QueryTiming
	label string                                                   // in progress lines
	sql   func(from, to time.Time) string                          // the query for the funnel's span
	run   func(ctx context.Context, query string) ([]int64, error) // the profiles reaching each step
}

// timeQueries times, o.Runs times each after one untimed run, the 4-step
// funnel through backend alternately with base, then the default
// lifecycle's journey and weekly retention (Signed Up → Login), over the
// generated span; it fills rep's timings, answers and failures. An error
// is one that stops the benchmark (an invalid query, a failed warm-up).
func timeQueries(ctx context.Context, backend analytics.Backend, base baseline, o funnelOptions, rep *FunnelReport, logf func(string, ...any)) error {
	from := benchBase
	to := benchBase.Add(time.Duration(o.Days) * 24 * time.Hour)
	fq := &analytics.FunnelQuery{Window: analytics.Seconds(int64(o.Window / time.Second))}
	for _, n := range benchNames[:4] {
		fq.Steps = append(fq.Steps, analytics.FunnelStep{Condition: analytics.Condition{Event: n}})
	}
	fq.From, fq.To = analytics.At(from), analytics.At(to)
	if err := fq.Validate(time.Now()); err != nil {
		return err
	}
	baseSQL := base.sql(from, to)
	rep.PlainSQLText = baseSQL

	funnelT := &QueryTiming{Name: "funnel"}
	baseT := &QueryTiming{Name: base.name}
	var fres *analytics.FunnelResult
	// One untimed run of each first: the first read of a fresh database
	// file loads it into the database's buffers, which is not what is
	// measured.
	logf("warm-up run (not timed)")
	if _, err := backend.Funnel(ctx, fq); err != nil {
		return err
	}
	if _, err := base.run(ctx, baseSQL); err != nil {
		return err
	}
	for i := 0; i < o.Runs; i++ {
		// Alternate, so that both see the same machine conditions.
		pause(ctx, o.Gap)
		timeOne(ctx, funnelT, func() error {
			r, err := backend.Funnel(ctx, fq)
			fres = r
			return err
		})
		pause(ctx, o.Gap)
		timeOne(ctx, baseT, func() error {
			counts, err := base.run(ctx, baseSQL)
			rep.PlainSQL = counts
			return err
		})
		logf("run %d: funnel %.3fs, %s %.3fs", i+1, last(funnelT.Seconds), base.label, last(baseT.Seconds))
	}
	if fres != nil {
		rep.SameAnswer = len(rep.PlainSQL) == len(fres.Steps)
		for k, s := range fres.Steps {
			rep.Funnel = append(rep.Funnel, FunnelStepFig{Name: s.Name, Profiles: s.Profiles, Median: s.MedianSeconds})
			if k < len(rep.PlainSQL) && rep.PlainSQL[k] != s.Profiles {
				rep.SameAnswer = false
			}
		}
	}
	finish(funnelT)
	finish(baseT)
	if funnelT.Error == "" && baseT.Error == "" && baseT.Best > 0 {
		rep.Ratio = ptr(funnelT.Best / baseT.Best)
		rep.MedianRatio = ptr(funnelT.Median / baseT.Median)
		if baseT.MedianCPU > 0 && rep.ClickHouse == "" {
			rep.CPURatio = ptr(funnelT.MedianCPU / baseT.MedianCPU)
		}
	}

	if o.FunnelOnly {
		rep.Queries = []*QueryTiming{funnelT, baseT}
		for _, q := range rep.Queries {
			if q.Error != "" {
				rep.Failures = append(rep.Failures, q.Name+": "+q.Error)
			}
		}
		return nil
	}
	jq := &analytics.JourneyQuery{Within: analytics.Seconds(14 * 86400), Range: analytics.Range{From: analytics.At(from), To: analytics.At(to)}}
	if err := jq.Validate(time.Now(), config.DefaultStages()); err != nil {
		return err
	}
	rq := &analytics.RetentionQuery{Start: analytics.Condition{Event: "Signed Up"}, Return: analytics.Condition{Event: "Login"},
		Period: "week", Periods: 8, Range: analytics.Range{From: analytics.At(from), To: analytics.At(to)}}
	if err := rq.Validate(time.Now()); err != nil {
		return err
	}
	journeyT := &QueryTiming{Name: "journey"}
	retT := &QueryTiming{Name: "retention"}
	for i := 0; i < o.Runs; i++ {
		timeOne(ctx, journeyT, func() error { _, err := backend.Journey(ctx, jq); return err })
		timeOne(ctx, retT, func() error { _, err := backend.Retention(ctx, rq); return err })
		logf("run %d: journey %.3fs, retention %.3fs", i+1, last(journeyT.Seconds), last(retT.Seconds))
	}
	finish(journeyT)
	finish(retT)
	rep.Queries = []*QueryTiming{funnelT, baseT, journeyT, retT}
	for _, q := range rep.Queries {
		if q.Error != "" {
			rep.Failures = append(rep.Failures, q.Name+": "+q.Error)
		}
	}
	return nil
}

// benchBase is when generated events start.
var benchBase = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// generate inserts the events in chunks of a million, in SQL. Each
// profile is active for two weeks that start at a random day of the span;
// its events fall at random microseconds in those weeks (so a profile's
// events have distinct times in practice) and take uniformly random names.
func generate(ctx context.Context, db *sql.DB, o funnelOptions, logf func(string, ...any)) error {
	names := make([]string, o.Names)
	for i, n := range benchNames[:o.Names] {
		names[i] = "'" + n + "'"
	}
	span := int64(o.Days) * 86400e6
	active := min(span, 14*86400e6)
	const chunk = 1_000_000
	for lo := int64(0); lo < o.Events; lo += chunk {
		hi := min(lo+chunk, o.Events)
		q := fmt.Sprintf(`INSERT INTO events (source_id, message_id, type, name, user_id, timestamp, received_at, raw, key_hash)
			SELECT 'bench', 'b' || i, 'track', name, uid, ts, ts,
				'{"type":"track","event":"' || name || '","userId":"' || uid || '","properties":{"plan":"p' || (i %% 3) || '"}}',
				hash(i * 37 + 5)
			FROM (SELECT i, name, uid,
					TIMESTAMPTZ '%s' + to_microseconds((((hash(p * 7 + 1) >> 11) %% %d) + ((hash(i * 13 + 3) >> 11) %% %d))::BIGINT) AS ts
				FROM (SELECT i, [%s][1 + ((hash(i * 17 + 2) >> 23) %% %d)::INT] AS name, ((hash(i * 29 + 4) >> 5) %% %d)::BIGINT AS p, 'u' || p AS uid
					FROM range(%d, %d) t(i)))`,
			benchBase.Format(time.RFC3339), span-active+1, active, strings.Join(names, ", "), o.Names, o.Profiles, lo, hi)
		if _, err := db.ExecContext(ctx, q); err != nil {
			return err
		}
		logf("generated %d/%d events", hi, o.Events)
	}
	_, err := db.ExecContext(ctx, "CHECKPOINT")
	return err
}

// PlainFunnelSQL is the baseline: the fastest plain SQL found for a
// funnel's per-step profile counts on data without equal times. For each
// step-1 event it joins the earliest event of each next step after the
// previous one and within the window of the start (inner joins: a chain
// that stopped looks no further), then counts each step's distinct
// profiles. Each step's events are read by their own scan with an
// equality on the name (pushed into the scan; one scan with an IN list of
// the names was slower). It has no profile links, no property filters,
// no medians, and does not handle equal times or repeated steps.
func PlainFunnelSQL(steps []string, windowMicros int64, from, to time.Time) string {
	var b strings.Builder
	quoted := make([]string, len(steps))
	for i, s := range steps {
		quoted[i] = "'" + strings.ReplaceAll(s, "'", "''") + "'"
	}
	scan := func(k int) string {
		return fmt.Sprintf("SELECT user_id AS p, epoch_us(timestamp) AS t FROM events WHERE timestamp >= '%s' AND timestamp < '%s' AND name = %s",
			from.Format(time.RFC3339Nano), to.Format(time.RFC3339Nano), quoted[k])
	}
	fmt.Fprintf(&b, "WITH j1 AS (SELECT p, t AS t1 FROM (%s))", scan(0))
	cols := "j.p, j.t1"
	for k := 2; k <= len(steps); k++ {
		fmt.Fprintf(&b, ",\nj%d AS (SELECT %s, min(x.t) AS t%d FROM j%d j JOIN (%s) x ON x.p = j.p AND x.t > j.t%d AND x.t <= j.t1 + %d GROUP BY ALL)",
			k, cols, k, k-1, scan(k-1), k-1, windowMicros)
		cols += fmt.Sprintf(", j.t%d", k)
	}
	b.WriteString("\nSELECT ")
	for k := 1; k <= len(steps); k++ {
		if k > 1 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "(SELECT count(DISTINCT p) FROM j%d)", k)
	}
	return b.String()
}

func runPlain(ctx context.Context, db *sql.DB, q string) ([]int64, error) {
	rows, err := db.QueryContext(ctx, q)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	counts := make([]int64, len(cols))
	dest := make([]any, len(cols))
	for i := range counts {
		dest[i] = &counts[i]
	}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return nil, err
		}
	}
	return counts, rows.Err()
}

// pause waits d or until ctx is done.
func pause(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// timeOne runs f once, adding its time and the process's peak RSS.
func timeOne(ctx context.Context, t *QueryTiming, f func() error) {
	if t.Error != "" || ctx.Err() != nil {
		return
	}
	resetPeakRSS()
	cpu0, cpuErr := selfCPU()
	start := time.Now()
	err := f()
	d := time.Since(start)
	cpu1, cpuErr1 := selfCPU()
	if err != nil {
		t.Error = err.Error()
		return
	}
	t.Seconds = append(t.Seconds, d.Seconds())
	if cpuErr == nil && cpuErr1 == nil {
		t.CPU = append(t.CPU, (cpu1 - cpu0).Seconds())
	}
	if mb, ok := peakRSSMB(); ok && (t.PeakRSSMB == nil || mb > *t.PeakRSSMB) {
		t.PeakRSSMB = &mb
	}
}

func finish(t *QueryTiming) {
	t.Best, t.Median = bestMedian(t.Seconds)
	t.BestCPU, t.MedianCPU = bestMedian(t.CPU)
}

// bestMedian is the least and the median of xs (0, 0 for none).
func bestMedian(xs []float64) (best, median float64) {
	if len(xs) == 0 {
		return 0, 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	median = s[len(s)/2]
	if len(s)%2 == 0 {
		median = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return s[0], median
}

func last(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	return xs[len(xs)-1]
}

// resetPeakRSS resets the kernel's peak-RSS mark of this process (Linux;
// elsewhere a no-op, and the peak then covers the whole run).
func resetPeakRSS() { _ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

// peakRSSMB reads the process's peak RSS (VmHWM) in MB (Linux only).
func peakRSSMB() (float64, bool) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			if err != nil {
				return 0, false
			}
			return kb / 1024, true
		}
	}
	return 0, false
}

func writeFunnelText(w io.Writer, rep *FunnelReport) {
	o := rep.Flags
	engine := fmt.Sprintf("DuckDB %s with %d threads", rep.DuckDB, o.Threads)
	baseline := "plain SQL"
	if rep.ClickHouse != "" {
		engine, baseline = "ClickHouse "+rep.ClickHouse, "windowFunnel"
	}
	fmt.Fprintf(w, "%s: %d events over %d profiles, %d names, %d days; window %s; %d runs; %s\n",
		rep.Command, o.Events, o.Profiles, o.Names, o.Days, rep.Window, o.Runs, engine)
	where := "dir"
	if rep.ClickHouse != "" {
		where = "database"
	}
	fmt.Fprintf(w, "GOMAXPROCS %d, NumCPU %d, %s, %s %s; loaded %d events in %.1fs (INSERT … SELECT, not the HTTP API)\n",
		rep.GOMAXPROCS, rep.NumCPU, rep.Go, where, rep.Dir, rep.Stored, rep.LoadSeconds)
	if rep.Links > 0 {
		fmt.Fprintf(w, "%d profile links (--links %g): profiles resolved through them\n", rep.Links, o.Links)
	}
	if rep.QueryThreads > 0 {
		fmt.Fprintf(w, "queries started with %d DuckDB threads (the cores the process left idle)\n", rep.QueryThreads)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', tabwriter.AlignRight|tabwriter.Debug)
	fmt.Fprintln(tw, "query \t best s \t median s \t median CPU s \t runs \t peak RSS MB \t")
	for _, q := range rep.Queries {
		rss := "-"
		if q.PeakRSSMB != nil {
			rss = fmt.Sprintf("%.0f", *q.PeakRSSMB)
		}
		if q.Error != "" {
			fmt.Fprintf(tw, "%s \t error: %s \t \t \t \t \t\n", q.Name, q.Error)
			continue
		}
		cpu := "-"
		if len(q.CPU) > 0 && rep.ClickHouse == "" {
			cpu = fmt.Sprintf("%.3f", q.MedianCPU)
		}
		fmt.Fprintf(tw, "%s \t %.3f \t %.3f \t %s \t %d \t %s \t\n", q.Name, q.Best, q.Median, cpu, len(q.Seconds), rss)
	}
	tw.Flush()
	if ig := rep.Ingest; ig != nil {
		fmt.Fprintf(w, "\ningest while querying: offered %s events/s, appended %s events/s (%s events in %.1f s; append p99 %.0f ms)",
			group(ig.Offered), group(ig.EventsPerSec), group(float64(ig.Events)), ig.Seconds, ig.AppendP99Ms)
		if ig.Error != "" {
			fmt.Fprintf(w, "; error: %s", ig.Error)
		}
		fmt.Fprintln(w)
	}
	if rep.Ratio != nil {
		fmt.Fprintf(w, "\nfunnel / %s: %.2f× (best), %.2f× (median)", baseline, *rep.Ratio, *rep.MedianRatio)
		if rep.CPURatio != nil {
			fmt.Fprintf(w, ", %.2f× (median CPU)", *rep.CPURatio)
		}
		fmt.Fprintf(w, "; same counts: %v\n", rep.SameAnswer)
	}
	fmt.Fprintln(w, "\nfunnel answer:")
	for _, s := range rep.Funnel {
		m := "-"
		if s.Median != nil {
			m = fmt.Sprintf("%.0fs", *s.Median)
		}
		fmt.Fprintf(w, "  %-18s %10d  median from previous %s\n", s.Name, s.Profiles, m)
	}
	for _, f := range rep.Failures {
		fmt.Fprintf(w, "FAILED: %s\n", f)
	}
	if rep.Embedded != nil {
		fmt.Fprintln(w, "\n--compare-embedded:")
		writeFunnelText(w, rep.Embedded)
	}
}
