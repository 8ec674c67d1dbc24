// Package duckdb answers analytics queries in DuckDB SQL over an event
// store's tables: funnels and journeys in one SQL query each (see
// [Backend.FunnelSQL] and [Backend.Journey]), paths and retention through
// the Go engine over [Backend.Scan], a streaming [analytics.Source].
//
// It knows no store: the embedded event store (eventstore/duckdb) hands
// it its database and [Tables] and offers the result as its Analytics
// (analytics.Provider). Queries run on the store's connection pool and
// so with its DuckDB settings; the store's [Scheduler] is told of each
// query, so that it can give queries more worker threads than writes get
// (eventstore/duckdb gives a query the cores its process left idle).
package duckdb

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"tandem/analytics"
)

// Backend is the DuckDB [analytics.Backend]. It is also an
// [analytics.Source] (Scan), and the embedded Engine answers what has no
// SQL path over it.
type Backend struct {
	analytics.Engine
	db    *sql.DB
	t     Tables
	sched Scheduler
}

// A Scheduler is told of each query the backend runs: Begin before it,
// the returned func once its rows are read.
type Scheduler interface {
	Begin(ctx context.Context) (end func())
}

// begin tells the scheduler, if any, that a query starts.
func (b *Backend) begin(ctx context.Context) (end func()) {
	if b.sched == nil {
		return func() {}
	}
	return b.sched.Begin(ctx)
}

var _ analytics.Backend = (*Backend)(nil)

// Tables names the event store's tables the backend reads, as the store
// defines them (eventstore/duckdb passes its own; see its Analytics).
// The backend reads these columns:
//
//	Events: timestamp TIMESTAMPTZ, name, type, raw (the event's JSON),
//	        user_id, anonymous_id (NULL when the event has none)
//	Links:  key (eventstore.ProfileKey), profile_id: one row per linked key
type Tables struct {
	Events string
	Links  string
}

// New returns a Backend that reads the tables t of db and tells sched
// (nil for none) of its queries.
func New(db *sql.DB, t Tables, sched Scheduler) *Backend {
	b := &Backend{db: db, t: t, sched: sched}
	b.Src = b
	return b
}

// linked reports whether any profile link exists. With none (identity
// resolution not in use, or not yet), an event's profile is its user or
// anonymous id and queries leave out the join to the links: about a
// fifth of a funnel's time over 10 M events.
func (b *Backend) linked(ctx context.Context) (bool, error) {
	var n int64
	err := b.db.QueryRowContext(ctx, "SELECT count(*) FROM (SELECT 1 FROM "+b.t.Links+" LIMIT 1)").Scan(&n)
	return n > 0, err
}

// profileSource is the event's profile (eventstore.ProfileOf) and the
// FROM clause for events e, joined to their key's link l when linked.
func (b *Backend) profileSource(linked bool) (profile, from string) {
	if linked {
		return "coalesce(l.profile_id, e.user_id, e.anonymous_id)",
			b.t.Events + " e LEFT JOIN " + b.t.Links + " l ON l.key = (CASE WHEN e.user_id IS NOT NULL THEN 'user_id:' || e.user_id ELSE 'anonymous_id:' || e.anonymous_id END)"
	}
	return "coalesce(e.user_id, e.anonymous_id)", b.t.Events + " e"
}

// profileScan is a query of the events e matching where, each as its
// profile p (see profileSource) and cols. It is two branches, the events
// with a user id (p is user_id) and those without (p is anonymous_id),
// rather than one with coalesce(user_id, anonymous_id): p is then a
// column as stored, which DuckDB carries into joins and groupings as it is
// (with the statistics of the column: short ids are compressed into
// integers), where the coalesce made a new string for every event. A
// funnel over 10 M events took about 0.75× the CPU time.
//
// With links, each branch's events are selected first and then looked up
// in the links of their kind of key (linkedKeys): the hash join is built
// on the selected events, which the SQL writes second (the funnel plans
// its joins as written, see prepareAsWritten), and probed by the links.
// It used to join every event to profile_links on its key written out
// ('user_id:' || user_id), building a hash table of every link for each
// step: a funnel over 10 M events with 333,000 links took about 0.6× the
// CPU time this way (docs/benchmarks.md, funnel-sel), and a node polling
// a selective funnel no longer hashes its whole links table each time.
func (b *Backend) profileScan(linked bool, cols, where string) string {
	branch := func(col, other string) string {
		sel := "SELECT e." + col + " AS p, " + cols + " FROM " + b.t.Events + " e WHERE " + where + " AND e.user_id " + other
		if !linked {
			return sel
		}
		return "SELECT coalesce(l.profile_id, x.p) AS p, x.* EXCLUDE (p) FROM " + b.linkedKeys(col) + " l RIGHT JOIN (" + sel + ") x ON l.k = x.p"
	}
	return branch("user_id", "IS NOT NULL") + " UNION ALL " + branch("anonymous_id", "IS NULL")
}

// linkedKeys is a query of (k, profile_id): the links whose key is of kind
// col (user_id or anonymous_id), k the id without the key's prefix (see
// eventstore.ProfileKey), so that events join on the column as stored.
func (b *Backend) linkedKeys(col string) string {
	prefix := col + ":"
	return "(SELECT substr(key, " + strconv.Itoa(len(prefix)+1) + ") AS k, profile_id FROM " + b.t.Links +
		" WHERE starts_with(key, '" + prefix + "'))"
}

// maxConditions is the most conditions a scan takes: masks are BIGINT.
const maxConditions = 62

// query builds SQL with its constants inlined as quoted literals rather
// than bound as parameters: DuckDB plans constant filters better (the
// funnel over 10 M events ran 10-40% faster with literal names and
// times). args stays empty; it is kept so that a value could again be
// bound where a literal will not do.
type query struct{ args []any }

// param returns v as an SQL literal: strings quoted (a quote doubled;
// DuckDB's standard strings have no other escapes), times as TIMESTAMPTZ
// literals, numbers as DOUBLE.
func (q *query) param(v any) string {
	switch v := v.(type) {
	case string:
		return "'" + strings.ReplaceAll(v, "'", "''") + "'"
	case time.Time:
		return "TIMESTAMPTZ '" + v.UTC().Format("2006-01-02 15:04:05.999999") + "+00'"
	case float64:
		return "(" + strconv.FormatFloat(v, 'g', -1, 64) + ")::DOUBLE"
	}
	panic(fmt.Sprintf("analytics/duckdb: no literal for %T", v))
}

// ceilMicro rounds t up to the store's microsecond precision, as the
// event store's List does.
func ceilMicro(t time.Time) time.Time {
	if t.Nanosecond()%1000 == 0 {
		return t
	}
	return t.Truncate(time.Microsecond).Add(time.Microsecond)
}

// rangeSQL restricts e.timestamp to r.
func (q *query) rangeSQL(r analytics.Range) string {
	return "e.timestamp >= " + q.param(ceilMicro(r.From.Time)) + " AND e.timestamp < " + q.param(ceilMicro(r.To.Time))
}

// propPath is the JSON path of properties.<name>.
func propPath(name string) string { return `$.properties."` + name + `"` }

// condSQL is a boolean SQL expression for c over events e.
func (q *query) condSQL(c analytics.Condition) string {
	parts := []string{"e.name = " + q.param(c.Event)}
	for _, f := range c.Where {
		parts = append(parts, q.filterSQL(f))
	}
	return "(" + strings.Join(parts, " AND ") + ")"
}

// filterSQL is f as a boolean that is never NULL: its [analytics.Test]
// rendered with DuckDB's spelling of each primitive over the property's
// text (json_extract_string: NULL when missing or JSON null).
func (q *query) filterSQL(f analytics.Filter) string {
	x := "json_extract_string(e.raw, " + q.param(propPath(f.Property)) + ")"
	return f.Test().SQL(func(t analytics.Test) string {
		switch t.Kind {
		case analytics.Present:
			return x + " IS NOT NULL"
		case analytics.TextEq:
			return x + " = " + q.param(t.Text)
		case analytics.TextContains:
			return "contains(" + x + ", " + q.param(t.Text) + ")"
		case analytics.NumCmp:
			return "TRY_CAST(" + x + " AS DOUBLE) " + t.Cmp + " " + q.param(t.Num)
		}
		panic(fmt.Sprintf("analytics/duckdb: no primitive %d", t.Kind))
	})
}

// maskSQL is a BIGINT whose bit i says the event satisfies conds[i]: one
// CASE on the name for the conditions without filters (a name's bits
// together), OR'd with a CASE per filtered condition. One CASE on the name
// costs a funnel over 10 M events about a fifth less than a CASE per
// condition.
func (q *query) maskSQL(conds []analytics.Condition) string {
	bits := map[string]int64{}
	var names []string
	var parts []string
	for i, c := range conds {
		if len(c.Where) > 0 {
			parts = append(parts, fmt.Sprintf("(CASE WHEN %s THEN %d ELSE 0 END)", q.condSQL(c), int64(1)<<i))
			continue
		}
		if _, ok := bits[c.Event]; !ok {
			names = append(names, c.Event)
		}
		bits[c.Event] |= int64(1) << i
	}
	if len(names) > 0 {
		var b strings.Builder
		b.WriteString("(CASE e.name")
		for _, n := range names {
			fmt.Fprintf(&b, " WHEN %s THEN %d", q.param(n), bits[n])
		}
		b.WriteString(" ELSE 0 END)")
		parts = append([]string{b.String()}, parts...)
	}
	return "(" + strings.Join(parts, " | ") + ")::BIGINT"
}

// namesSQL lists the distinct event names of conds for an IN filter that
// lets DuckDB skip other events cheaply.
func (q *query) namesSQL(conds []analytics.Condition) string {
	seen := map[string]bool{}
	var ps []string
	for _, c := range conds {
		if !seen[c.Event] {
			seen[c.Event] = true
			ps = append(ps, q.param(c.Event))
		}
	}
	return "e.name IN (" + strings.Join(ps, ", ") + ")"
}

// traitSQL is a query of (p, v): each profile's latest value of trait
// before to (ties: the greatest value).
func (b *Backend) traitSQL(q *query, trait string, to time.Time, linked bool) string {
	prof, from := b.profileSource(linked)
	return `SELECT p, arg_max(v, (t, v)) AS v FROM (
		SELECT ` + prof + ` AS p, e.timestamp AS t,
			coalesce(CASE WHEN e.type = 'identify' THEN json_extract_string(e.raw, ` + q.param(`$.traits."`+trait+`"`) + `) END,
				json_extract_string(e.raw, ` + q.param(`$.context.traits."`+trait+`"`) + `)) AS v
		FROM ` + from + ` WHERE e.timestamp < ` + q.param(ceilMicro(to)) + `
	) WHERE v IS NOT NULL GROUP BY p`
}

// Scan implements [analytics.Source]: one query ordered by profile and
// time, cut into sequences as the rows arrive, so memory holds one
// profile's events.
func (b *Backend) Scan(ctx context.Context, spec analytics.ScanSpec, fn func(*analytics.Sequence) error) error {
	if len(spec.Conditions) == 0 || len(spec.Conditions) > maxConditions {
		return fmt.Errorf("analytics/duckdb: scan takes 1 to %d conditions, not %d", maxConditions, len(spec.Conditions))
	}
	defer b.begin(ctx)()
	linked, err := b.linked(ctx)
	if err != nil {
		return fmt.Errorf("analytics/duckdb: scan: %w", err)
	}
	prof, from := b.profileSource(linked)
	var q query
	cols := "p, t, m"
	inner := prof + " AS p, epoch_us(e.timestamp) AS t, " + q.maskSQL(spec.Conditions) + " AS m"
	if spec.Names {
		cols += ", name"
		inner += ", e.name AS name"
	}
	if spec.Property != "" {
		cols += ", prop"
		inner += ", json_extract_string(e.raw, " + q.param(propPath(spec.Property)) + ") AS prop"
	}
	where := q.rangeSQL(spec.Range)
	if spec.All {
		where += " AND e.name IS NOT NULL AND e.type IN ('track', 'page', 'screen')"
	} else {
		where += " AND " + q.namesSQL(spec.Conditions)
	}
	s := "WITH ev AS (SELECT " + inner + " FROM " + from + " WHERE " + where + ")"
	if spec.All {
		s += " SELECT " + cols + " FROM ev WHERE p IN (SELECT p FROM ev WHERE m <> 0)"
	} else {
		s += " SELECT " + cols + " FROM ev WHERE m <> 0"
	}
	if spec.Trait != "" {
		s = "WITH x AS (" + s + "), tr AS (" + b.traitSQL(&q, spec.Trait, spec.To.Time, linked) + ") SELECT x.*, tr.v FROM x LEFT JOIN tr USING (p)"
	}
	order := "p, t, m"
	if spec.Names {
		order += ", name" // simultaneous events in a stable order for paths
	}
	s = "SELECT * FROM (" + s + ") ORDER BY " + order
	rows, err := b.db.QueryContext(ctx, s, q.args...)
	if err != nil {
		return fmt.Errorf("analytics/duckdb: scan: %w", err)
	}
	defer rows.Close()
	var (
		seq   analytics.Sequence
		open  bool
		p     string
		pt    analytics.Point
		name  sql.NullString
		prop  sql.NullString
		trait sql.NullString
	)
	dest := []any{&p, &pt.T, &pt.Mask}
	if spec.Names {
		dest = append(dest, &name)
	}
	if spec.Property != "" {
		dest = append(dest, &prop)
	}
	if spec.Trait != "" {
		dest = append(dest, &trait)
	}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return fmt.Errorf("analytics/duckdb: scan: %w", err)
		}
		if open && p != seq.Profile {
			if err := fn(&seq); err != nil {
				return err
			}
			open = false
		}
		if !open {
			seq = analytics.Sequence{Profile: p, Points: seq.Points[:0]}
			if trait.Valid {
				v := trait.String
				seq.Trait = &v
			}
			open = true
		}
		x := analytics.Point{T: pt.T, Mask: pt.Mask, Name: name.String}
		if prop.Valid {
			v := prop.String
			x.Prop = &v
		}
		seq.Points = append(seq.Points, x)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("analytics/duckdb: scan: %w", err)
	}
	if open {
		return fn(&seq)
	}
	return nil
}

// Funnel answers in one SQL query when it can (see FunnelSQL), else
// through the Go engine.
func (b *Backend) Funnel(ctx context.Context, fq *analytics.FunnelQuery) (*analytics.FunnelResult, error) {
	defer b.begin(ctx)()
	linked, err := b.linked(ctx)
	if err != nil {
		return nil, fmt.Errorf("analytics/duckdb: funnel: %w", err)
	}
	s, args, ok := b.funnelSQL(fq, linked)
	if !ok {
		return b.Engine.Funnel(ctx, fq)
	}
	conn, err := b.db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("analytics/duckdb: funnel: %w", err)
	}
	defer conn.Close()
	var stmt *sql.Stmt
	if fq.Breakdown == nil || fq.Breakdown.Trait == "" {
		stmt, err = prepareAsWritten(ctx, conn, s)
	} else {
		stmt, err = conn.PrepareContext(ctx, s)
	}
	if err != nil {
		return nil, fmt.Errorf("analytics/duckdb: funnel: %w", err)
	}
	defer stmt.Close()
	rows, err := stmt.QueryContext(ctx, args...)
	if err != nil {
		return nil, fmt.Errorf("analytics/duckdb: funnel: %w", err)
	}
	defer rows.Close()
	n := len(fq.Steps)
	res := &analytics.FunnelResult{}
	for rows.Next() {
		var (
			total   bool
			group   sql.NullString
			counts  = make([]int64, n)
			medians = make([]sql.NullFloat64, n-1)
		)
		dest := []any{&total, &group}
		for i := range counts {
			dest = append(dest, &counts[i])
		}
		for i := range medians {
			dest = append(dest, &medians[i])
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("analytics/duckdb: funnel: %w", err)
		}
		ms := make([]*float64, n)
		for i, m := range medians {
			if m.Valid {
				v := m.Float64
				ms[i+1] = &v
			}
		}
		steps := analytics.StepResults(fq, counts, ms)
		if total {
			res.Steps = steps
			continue
		}
		var v *string
		if group.Valid {
			g := group.String
			v = &g
		}
		res.Breakdown = append(res.Breakdown, analytics.FunnelBreakdown{Value: v, Steps: steps})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("analytics/duckdb: funnel: %w", err)
	}
	if res.Steps == nil { // no rows at all: no profile entered
		res.Steps = analytics.StepResults(fq, make([]int64, n), make([]*float64, n))
	}
	if fq.Breakdown != nil {
		analytics.SortBreakdown(res.Breakdown)
	}
	return res, nil
}

// FunnelSQL is the SQL of a funnel, or ok false when the query needs the
// Go engine: a non-strict funnel in which two steps name the same event
// (then one event may satisfy two steps, and events of one instant must be
// matched to steps, which SQL here does not do).
//
// The query reduces each profile in SQL; only one row per breakdown group
// comes back. For each step-1 event (a possible chain start) it follows
// the earliest next-step event: at or after the previous step (strictly
// after when strict), within the window from the start. Chasing the
// earliest event from each start reaches the deepest step that start can
// reach (an exchange argument: a later choice never helps), and when steps
// name distinct events, or when strict, a chain can never take one event
// twice. A profile's depth is the deepest over its starts, and its times
// are the chain from the latest start reaching that depth, which is the
// chain the Go engine reports.
//
// Each step is an inner join: only the chains that reached step k-1 look
// for step k, so after step 2 the joins and groupings handle a few
// percent of the starts (most chains stop at step 1). The profiles that
// entered are the distinct profiles of the step-1 events; the chains
// that went further are collected per profile (the deepest, then the
// latest start) and joined to them only when a breakdown needs both.
func (b *Backend) FunnelSQL(fq *analytics.FunnelQuery) (string, []any, bool) {
	return b.funnelSQL(fq, true)
}

// funnelSQL leaves out the links join when linked is false.
func (be *Backend) funnelSQL(fq *analytics.FunnelQuery, linked bool) (string, []any, bool) {
	if !fq.Strict && fq.Overlapping() {
		return "", nil, false
	}
	var q query
	n := len(fq.Steps)
	conds := fq.Conditions()
	op := ">="
	if fq.Strict {
		op = ">"
	}
	w := strconv.FormatInt(fq.Window.Micros, 10)
	byProp := fq.Breakdown != nil && fq.Breakdown.Property != ""
	byTrait := fq.Breakdown != nil && fq.Breakdown.Trait != ""
	var b strings.Builder
	// Each step reads its own events straight from the table: a plain
	// equality on the name is pushed into the scan, which then reads the
	// other columns only for that name's rows. One scan of all the steps'
	// names (an IN list, which DuckDB evaluates after reading every row's
	// columns) kept in a CTE for the steps cost a funnel over 10 M events
	// about a fifth more.
	scan := func(k int, extra string) string {
		return be.profileScan(linked, "epoch_us(e.timestamp) AS t"+extra, q.rangeSQL(fq.Range)+" AND "+q.condSQL(conds[k]))
	}
	if byProp {
		// The property of step-1 events: the breakdown's value.
		fmt.Fprintf(&b, "WITH j1 AS (SELECT p, bv, t AS t1 FROM (%s))", scan(0, ", json_extract_string(e.raw, "+q.param(propPath(fq.Breakdown.Property))+") AS bv"))
	} else {
		fmt.Fprintf(&b, "WITH j1 AS (SELECT p, t AS t1 FROM (%s))", scan(0, ""))
	}
	for k := 2; k <= n; k++ {
		prevCols := "j.p"
		for i := 1; i < k; i++ {
			prevCols += fmt.Sprintf(", j.t%d", i)
		}
		// The chain side is written second, the side DuckDB builds its
		// hash table on (see prepareAsWritten), past step 2.
		join := fmt.Sprintf("j%d j JOIN (%s) x", k-1, scan(k-1, ""))
		if k > 2 {
			join = fmt.Sprintf("(%s) x JOIN j%d j", scan(k-1, ""), k-1)
		}
		fmt.Fprintf(&b, ",\nj%d AS (SELECT %s, min(x.t) AS t%d FROM %s ON x.p = j.p AND x.t %s j.t%d AND x.t <= j.t1 + %s GROUP BY ALL)",
			k, prevCols, k, join, op, k-1, w)
	}
	// deep: each profile past step 1, its deepest chain from the latest
	// start reaching that depth.
	var fields []string
	for i := 1; i <= n; i++ {
		fields = append(fields, fmt.Sprintf("t%d := t%d", i, i))
	}
	var parts []string
	for k := 2; k <= n; k++ {
		cols := fmt.Sprintf("p, %d AS d", k)
		for i := 1; i <= n; i++ {
			if i <= k {
				cols += fmt.Sprintf(", t%d", i)
			} else {
				cols += fmt.Sprintf(", NULL::BIGINT AS t%d", i)
			}
		}
		parts = append(parts, "SELECT "+cols+fmt.Sprintf(" FROM j%d", k))
	}
	if n > 1 {
		fmt.Fprintf(&b, ",\ndeep AS (SELECT p, arg_max(struct_pack(d := d, %s), (d, t1)) AS c FROM (%s) GROUP BY p)",
			strings.Join(fields, ", "), strings.Join(parts, " UNION ALL "))
	}
	var aggs []string
	for k := 2; k <= n; k++ {
		aggs = append(aggs, fmt.Sprintf("count(*) FILTER (WHERE c.d >= %d)", k))
	}
	for k := 2; k <= n; k++ {
		aggs = append(aggs, fmt.Sprintf("median((c.t%d - c.t%d) / 1e6)", k, k-1))
	}
	if fq.Breakdown == nil {
		// No groups: the entered profiles are counted apart from the
		// chains that went further, and the two never meet in a join.
		fmt.Fprintf(&b, "\nSELECT true AS total, NULL::VARCHAR AS g, (SELECT count(DISTINCT p) FROM j1)")
		if len(aggs) > 0 {
			b.WriteString(", " + strings.Join(aggs, ", "))
		}
		if n > 1 {
			b.WriteString(" FROM deep")
		}
		return b.String(), q.args, true
	}
	group := "NULL::VARCHAR"
	if byProp {
		group = "arg_min_null(bv, (t1, bv IS NOT NULL, bv))"
	}
	fmt.Fprintf(&b, ",\nstarts AS (SELECT p, %s AS g FROM j1 GROUP BY p)", group)
	src := "starts"
	if byTrait {
		fmt.Fprintf(&b, ",\ntr AS (%s)", be.traitSQL(&q, fq.Breakdown.Trait, fq.To.Time, linked))
		src = "(SELECT starts.p, tr.v AS g FROM starts LEFT JOIN tr USING (p))"
	}
	if n > 1 {
		fmt.Fprintf(&b, ",\nper AS (SELECT f.g, deep.c FROM %s f LEFT JOIN deep USING (p))", src)
	} else {
		fmt.Fprintf(&b, ",\nper AS (SELECT f.g FROM %s f)", src)
	}
	b.WriteString("\nSELECT grouping(g) = 1 AS total, g, count(*)")
	if len(aggs) > 0 {
		b.WriteString(", " + strings.Join(aggs, ", "))
	}
	b.WriteString(" FROM per GROUP BY GROUPING SETS ((), (g))")
	return b.String(), q.args, true
}

// planMu serializes prepareAsWritten's changes of a global setting.
var planMu sync.Mutex

// prepareAsWritten prepares (plans) the query s on conn with DuckDB's
// build_side_probe_side optimizer off, so that each join builds its hash
// table on the side the SQL writes second. The funnel writes its chains
// there: past step 2 they are a few percent of a step's events (most
// chains stop at step 1), but DuckDB estimates each chain join from the
// one before without its time conditions (tens of millions of rows over
// 10 M events) and built on the step's events instead: a hash table of
// every "Checkout Started" event, probed by the 85,000 chains that reached
// step 2. Built on the chains, the joins of steps 3 and 4 took about a
// quarter of their time and the funnel over 10 M events about 0.8× its
// CPU (docs/benchmarks.md, funnel-ingest2). The setting is global, so it
// is set only while the statement is planned (preparing plans it; running
// it does not plan again), under planMu; a query planned by another
// connection in that moment keeps its joins as written, which changes its
// speed, never its answer.
func prepareAsWritten(ctx context.Context, conn *sql.Conn, s string) (*sql.Stmt, error) {
	planMu.Lock()
	defer planMu.Unlock()
	var prev string
	if err := conn.QueryRowContext(ctx, "SELECT current_setting('disabled_optimizers')").Scan(&prev); err != nil {
		return nil, err
	}
	off := "build_side_probe_side"
	if prev != "" {
		off = prev + "," + off
	}
	var q query
	if _, err := conn.ExecContext(ctx, "SET GLOBAL disabled_optimizers = "+q.param(off)); err != nil {
		return nil, err
	}
	stmt, perr := conn.PrepareContext(ctx, s)
	// Put the setting back even when ctx is done.
	if _, err := conn.ExecContext(context.Background(), "SET GLOBAL disabled_optimizers = "+q.param(prev)); err != nil {
		if stmt != nil {
			stmt.Close()
		}
		return nil, err
	}
	return stmt, perr
}

// Journey answers in one SQL query: each profile's first time at each
// stage (a GROUP BY over the stages' events), then every count, quantile
// and sample over those rows, with the rules of [analytics.JourneyAgg].
func (b *Backend) Journey(ctx context.Context, jq *analytics.JourneyQuery) (*analytics.JourneyResult, error) {
	defer b.begin(ctx)()
	var q query
	n := len(jq.Stages)
	var names []string
	for _, s := range jq.Stages {
		for _, e := range s.Events {
			names = append(names, q.param(e))
		}
	}
	// Each event's stages as a bitmask, computed once per event from its
	// name (a name may belong to several stages).
	stagesOf := map[string]int64{}
	var order []string
	for k, s := range jq.Stages {
		for _, e := range s.Events {
			if _, ok := stagesOf[e]; !ok {
				order = append(order, e)
			}
			stagesOf[e] |= 1 << k
		}
	}
	var mask strings.Builder
	mask.WriteString("CASE e.name")
	for _, e := range order {
		fmt.Fprintf(&mask, " WHEN %s THEN %d", q.param(e), stagesOf[e])
	}
	mask.WriteString(" ELSE 0 END")
	linked, err := b.linked(ctx)
	if err != nil {
		return nil, fmt.Errorf("analytics/duckdb: journey: %w", err)
	}
	prof, from := b.profileSource(linked)
	var sb strings.Builder
	fmt.Fprintf(&sb, "WITH ev AS (SELECT %s AS p, epoch_us(e.timestamp) AS t, %s AS m FROM %s WHERE %s AND e.name IN (%s)),\nper AS (SELECT p",
		prof, mask.String(), from, q.rangeSQL(jq.Range), strings.Join(names, ", "))
	for k := range jq.Stages {
		fmt.Fprintf(&sb, ", min(t) FILTER (WHERE m & %d <> 0) AS s%d", int64(1)<<k, k)
	}
	sb.WriteString(" FROM ev GROUP BY p)\nSELECT ")
	within := strconv.FormatInt(jq.Within.Micros, 10)
	end := strconv.FormatInt(jq.To.UnixMicro(), 10)
	sample := strconv.Itoa(jq.Sample)
	var cols []string
	for k := 0; k < n; k++ {
		cols = append(cols, fmt.Sprintf("count(s%d)", k))
		if k > 0 {
			d := fmt.Sprintf("(s%d - s%d) / 1e6", k, k-1)
			f := fmt.Sprintf("FILTER (WHERE s%d >= s%d)", k, k-1)
			cols = append(cols, "quantile_cont("+d+", 0.5) "+f, "quantile_cont("+d+", 0.9) "+f)
		}
		if k+1 < n {
			reached := fmt.Sprintf("s%d + %s <= %s", k, within, end)
			stuck := fmt.Sprintf("%s AND (s%d IS NULL OR s%d < s%d OR s%d > s%d + %s)", reached, k+1, k+1, k, k+1, k, within)
			cols = append(cols, "count(*) FILTER (WHERE "+reached+")", "count(*) FILTER (WHERE "+stuck+")",
				"coalesce(min(p, "+sample+") FILTER (WHERE "+stuck+"), [])")
		}
	}
	sb.WriteString(strings.Join(cols, ", ") + " FROM per")
	row := b.db.QueryRowContext(ctx, sb.String(), q.args...)
	counts := make([]int64, n)
	med := make([]sql.NullFloat64, n)
	p90 := make([]sql.NullFloat64, n)
	reached := make([]int64, n)
	stuck := make([]int64, n)
	samples := make([]any, n)
	var dest []any
	for k := 0; k < n; k++ {
		dest = append(dest, &counts[k])
		if k > 0 {
			dest = append(dest, &med[k], &p90[k])
		}
		if k+1 < n {
			dest = append(dest, &reached[k], &stuck[k], &samples[k])
		}
	}
	if err := row.Scan(dest...); err != nil {
		return nil, fmt.Errorf("analytics/duckdb: journey: %w", err)
	}
	res := &analytics.JourneyResult{Handoffs: []analytics.Handoff{}, Gaps: []analytics.Gap{}}
	gaps := map[string]int{}
	for k, s := range jq.Stages {
		r := analytics.StageResult{Name: s.Name, Department: s.Department, Profiles: counts[k]}
		if med[k].Valid {
			m, p := med[k].Float64, p90[k].Float64
			r.MedianSeconds, r.P90Seconds = &m, &p
		}
		res.Stages = append(res.Stages, r)
		if k+1 == n {
			continue
		}
		ids := []string{}
		list, _ := samples[k].([]any)
		for _, v := range list {
			if id, ok := v.(string); ok {
				ids = append(ids, id)
			}
		}
		next := jq.Stages[k+1]
		h := analytics.Handoff{From: s.Name, To: next.Name, FromDepartment: s.Department, ToDepartment: next.Department,
			Boundary: s.Department + "→" + next.Department, Reached: reached[k], Stuck: stuck[k], Sample: ids}
		res.Handoffs = append(res.Handoffs, h)
		i, ok := gaps[h.Boundary]
		if !ok {
			i = len(res.Gaps)
			gaps[h.Boundary] = i
			res.Gaps = append(res.Gaps, analytics.Gap{Boundary: h.Boundary, Sample: []string{}})
		}
		g := &res.Gaps[i]
		g.Stuck += h.Stuck
		g.Sample = mergeSample(g.Sample, ids, jq.Sample)
	}
	return res, nil
}

// mergeSample is the n smallest distinct ids of two sorted lists.
func mergeSample(a, b []string, n int) []string {
	out := make([]string, 0, n)
	for len(out) < n && (len(a) > 0 || len(b) > 0) {
		var x string
		switch {
		case len(b) == 0 || (len(a) > 0 && a[0] <= b[0]):
			x, a = a[0], a[1:]
		default:
			x, b = b[0], b[1:]
		}
		if len(out) == 0 || out[len(out)-1] != x {
			out = append(out, x)
		}
	}
	return out
}
