// Package duckdb aggregates experiments in DuckDB SQL over the embedded
// event store's tables: one query resolves each event's profile, finds
// each profile's first exposure and variation, applies the contamination
// rule, computes every metric's value after exposure and before it (for
// CUPED) per profile, and sums them per variation, so Go receives a few
// numbers per variation whatever the number of profiles. The semantics
// are package experiment's; experiment.ScanAggregator over the analytics
// backend is the reference it is tested against.
//
// It knows no store: eventstore/duckdb hands it its database and table
// names and offers it as its Experiments (experiment.Provider).
package duckdb

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
	"time"

	"tandem/experiment"
	"tandem/experiment/stats"
)

// Tables names the event store's tables, with the columns
// analytics/duckdb reads: Events (timestamp, name, raw, user_id,
// anonymous_id) and Links (key, profile_id).
type Tables struct {
	Events string
	Links  string
}

// Aggregator is the DuckDB [experiment.Aggregator].
type Aggregator struct {
	db *sql.DB
	t  Tables
}

// New returns an Aggregator over the tables t of db.
func New(db *sql.DB, t Tables) *Aggregator { return &Aggregator{db: db, t: t} }

func lit(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func tsLit(t time.Time) string {
	return "TIMESTAMPTZ '" + t.UTC().Format("2006-01-02 15:04:05.999999") + "+00'"
}

func i64(n int64) string { return strconv.FormatInt(n, 10) }

func propPath(name string) string { return lit(`$.properties."` + name + `"`) }

// SQL returns the aggregation query of s; linked says whether profile
// links exist (without any, the join to them is left out).
func (a *Aggregator) SQL(s experiment.Spec, linked bool) string {
	prof, from := "coalesce(e.user_id, e.anonymous_id)", a.t.Events+" e"
	if linked {
		prof = "coalesce(l.profile_id, e.user_id, e.anonymous_id)"
		from += " LEFT JOIN " + a.t.Links + " l ON l.key = (CASE WHEN e.user_id IS NOT NULL THEN 'user_id:' || e.user_id ELSE 'anonymous_id:' || e.anonymous_id END)"
	}
	fromUs, endUs := s.From.UnixMicro(), s.End.UnixMicro()
	var lookback time.Duration
	names := map[string]bool{s.ExposureEvent: true}
	nameList := []string{lit(s.ExposureEvent)}
	metricNames := map[string]bool{}
	var metricList []string
	props := map[string]string{} // revenue property -> column
	var propCols []string
	for _, m := range s.Metrics {
		lookback = max(lookback, m.Lookback)
		if !names[m.Event] {
			names[m.Event] = true
			nameList = append(nameList, lit(m.Event))
		}
		if !metricNames[m.Event] {
			metricNames[m.Event] = true
			metricList = append(metricList, lit(m.Event))
		}
		if m.Kind == experiment.Revenue && props[m.Property] == "" {
			c := "r" + strconv.Itoa(len(props))
			props[m.Property] = c
			propCols = append(propCols, "coalesce(TRY_CAST(json_extract_string(e.raw, "+propPath(m.Property)+") AS DOUBLE), 0) AS "+c)
		}
	}
	vars := make([]string, len(s.Variations))
	for i, v := range s.Variations {
		vars[i] = lit(v)
	}
	ev := "SELECT " + prof + " AS p, epoch_us(e.timestamp) AS t, e.name AS name, " +
		"CASE WHEN e.name = " + lit(s.ExposureEvent) + " AND json_extract_string(e.raw, " + propPath(s.ExperimentProperty) + ") = " + lit(s.Key) +
		" THEN json_extract_string(e.raw, " + propPath(s.VariationProp) + ") END AS xv"
	for _, c := range propCols {
		ev += ", " + c
	}
	ev += " FROM " + from + " WHERE e.timestamp >= " + tsLit(s.From.Add(-lookback)) + " AND e.timestamp < " + tsLit(s.End) +
		" AND e.name IN (" + strings.Join(nameList, ", ") + ")"
	wEnd := func(w time.Duration) string {
		if w <= 0 {
			return i64(endUs)
		}
		return "least(u.t0 + " + i64(w.Microseconds()) + ", " + i64(endUs) + ")"
	}
	m0 := s.Metrics[0]
	c0End := strings.ReplaceAll(wEnd(m0.Window), "u.t0", "f.t0")
	var mcols, sums []string
	for j, m := range s.Metrics {
		agg, val := "sum", "1"
		switch m.Kind {
		case experiment.Conversion:
			agg = "max"
		case experiment.Revenue:
			val = "CASE WHEN isfinite(ev." + props[m.Property] + ") THEN ev." + props[m.Property] + " ELSE 0 END"
		}
		js := strconv.Itoa(j)
		mcols = append(mcols,
			agg+"(CASE WHEN ev.name = "+lit(m.Event)+" AND ev.t >= u.t0 AND ev.t < "+wEnd(m.Window)+" THEN "+val+" ELSE 0 END)::DOUBLE AS y"+js,
			agg+"(CASE WHEN ev.name = "+lit(m.Event)+" AND ev.t < u.t0 AND ev.t >= u.t0 - "+i64(m.Lookback.Microseconds())+" THEN "+val+" ELSE 0 END)::DOUBLE AS x"+js)
		sums = append(sums, "sum(y"+js+")", "sum(y"+js+"*y"+js+")", "sum(x"+js+")", "sum(x"+js+"*x"+js+")", "sum(x"+js+"*y"+js+")")
	}
	return "WITH ev AS (" + ev + "),\n" +
		"x AS (SELECT p, t, xv FROM ev WHERE xv IN (" + strings.Join(vars, ", ") + ") AND t >= " + i64(fromUs) + " AND t < " + i64(endUs) + "),\n" +
		"f AS (SELECT p, min(t) AS t0, arg_min(xv, t) AS v0 FROM x GROUP BY p),\n" +
		"c AS (SELECT f.p, min(ev.t) AS tc FROM f JOIN ev ON ev.p = f.p AND ev.name = " + lit(m0.Event) + " AND ev.t >= f.t0 AND ev.t < " + c0End + " GROUP BY f.p),\n" +
		"u AS (SELECT f.p, f.t0, f.v0, bool_or(x.xv <> f.v0 AND x.t < coalesce(c.tc, 9223372036854775807)) AS bad " +
		"FROM f JOIN x ON x.p = f.p LEFT JOIN c ON c.p = f.p GROUP BY f.p, f.t0, f.v0),\n" +
		"m AS (SELECT u.p, u.v0, " + strings.Join(mcols, ", ") + " FROM u LEFT JOIN ev ON ev.p = u.p AND ev.name IN (" + strings.Join(metricList, ", ") +
		") WHERE NOT u.bad GROUP BY u.p, u.v0)\n" +
		"SELECT v0, count(*)::DOUBLE, " + strings.Join(sums, ", ") + " FROM m GROUP BY v0\n" +
		"UNION ALL SELECT NULL, count(*)::DOUBLE" + strings.Repeat(", 0", len(sums)) + " FROM u WHERE bad"
}

// Aggregate implements [experiment.Aggregator].
func (a *Aggregator) Aggregate(ctx context.Context, s experiment.Spec) (*experiment.Sums, error) {
	var n int64
	if err := a.db.QueryRowContext(ctx, "SELECT count(*) FROM (SELECT 1 FROM "+a.t.Links+" LIMIT 1)").Scan(&n); err != nil {
		return nil, fmt.Errorf("experiment/duckdb: %w", err)
	}
	rows, err := a.db.QueryContext(ctx, a.SQL(s, n > 0))
	if err != nil {
		return nil, fmt.Errorf("experiment/duckdb: %w", err)
	}
	defer rows.Close()
	idx := map[string]int{}
	for i, v := range s.Variations {
		idx[v] = i
	}
	out := &experiment.Sums{Units: make([]int64, len(s.Variations)), Metrics: make([][]stats.Moments, len(s.Metrics))}
	for j := range out.Metrics {
		out.Metrics[j] = make([]stats.Moments, len(s.Variations))
	}
	vals := make([]sql.NullFloat64, 1+5*len(s.Metrics))
	dest := make([]any, 1+len(vals))
	var v sql.NullString
	dest[0] = &v
	for i := range vals {
		dest[i+1] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("experiment/duckdb: %w", err)
		}
		if !v.Valid {
			out.Excluded = int64(vals[0].Float64)
			continue
		}
		i, ok := idx[v.String]
		if !ok {
			continue
		}
		units := vals[0].Float64
		out.Units[i] = int64(units)
		for j := range s.Metrics {
			b := 1 + 5*j
			out.Metrics[j][i] = stats.Moments{N: units, Y: vals[b].Float64, YY: vals[b+1].Float64,
				X: vals[b+2].Float64, XX: vals[b+3].Float64, XY: vals[b+4].Float64}
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("experiment/duckdb: %w", err)
	}
	return out, nil
}
