// Package duckdb streams attribution journeys ([attribution.Source])
// from the embedded event store's DuckDB tables: one SQL query selects
// the conversions and candidate touches in the range, resolves each
// event's profile through the profile links, keeps only the profiles with
// a conversion (unless the scan asks for all, as the Markov model does)
// and extracts the touch fields from the event's JSON in SQL, parsing it
// once per event; the models run in Go over the rows, ordered by profile
// and time.
package duckdb

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"

	"tandem/attribution"
)

// Tables names the event store's tables, as analytics/duckdb reads them:
// Events (timestamp, name, type, raw, user_id, anonymous_id, source_id)
// and Links (key, profile_id).
type Tables struct {
	Events string
	Links  string
}

// Source is the DuckDB [attribution.Source].
type Source struct {
	db *sql.DB
	t  Tables
	// GoFields reads the touch fields in Go from each event's JSON
	// (attribution.FieldsFromJSON) instead of in SQL: the path of stores
	// without JSON functions, kept here to check the two agree.
	GoFields bool
}

// New returns a Source over the tables t of db.
func New(db *sql.DB, t Tables) *Source { return &Source{db: db, t: t} }

var _ attribution.Source = (*Source)(nil)

func lit(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func tsLit(us int64) string { return "make_timestamptz(" + strconv.FormatInt(us, 10) + "::BIGINT)" }

// paths are the JSON paths of the fields, in Fields order (page events
// fall back to properties.url and properties.referrer).
var paths = []string{
	"$.context.campaign.medium", "$.context.campaign.source", "$.context.campaign.name",
	"$.context.page.url", "$.properties.url", "$.context.page.referrer", "$.properties.referrer",
	"$.properties.channel", "$.context.channel", "$.channel",
}

// Query is the SQL of a scan.
func (s *Source) Query(ctx context.Context, spec attribution.ScanSpec) (string, error) {
	var n int64
	if err := s.db.QueryRowContext(ctx, "SELECT count(*) FROM (SELECT 1 FROM "+s.t.Links+" LIMIT 1)").Scan(&n); err != nil {
		return "", err
	}
	prof := "coalesce(e.user_id, e.anonymous_id)"
	from := s.t.Events + " e"
	if n > 0 {
		prof = "coalesce(l.profile_id, e.user_id, e.anonymous_id)"
		from += " LEFT JOIN " + s.t.Links + " l ON l.key = (CASE WHEN e.user_id IS NOT NULL THEN 'user_id:' || e.user_id ELSE 'anonymous_id:' || e.anonymous_id END)"
	}
	var cand []string
	for _, c := range attribution.Candidate {
		cand = append(cand, "contains(raw, "+lit(c)+")")
	}
	rng := "e.timestamp >= " + tsLit(spec.From) + " AND e.timestamp < " + tsLit(spec.To)
	name := lit(spec.Conversion)
	conv := "coalesce(e.name = " + name + ", false)"
	// One scan of the events with their JSON (reading it is the floor of
	// the cost: rows are stored in arrival order, so every block holds
	// some converting profile's events); the converting profiles come
	// from a scan of cheap columns. The JSON is parsed above the
	// semi-join, for converting profiles' events only, and nothing is
	// materialized but the extracted fields, sorted by profile (a
	// journey's order in time is Go's).
	var b strings.Builder
	ev := fmt.Sprintf("(SELECT %s AS p, epoch_us(e.timestamp) AS t, %s AS c, e.type AS ty, e.source_id AS s, e.raw AS raw FROM %s WHERE %s AND (%s OR e.type IN ('page', 'screen', 'track')))",
		prof, conv, from, rng, conv)
	if !spec.All {
		fmt.Fprintf(&b, "WITH cp AS (SELECT DISTINCT %s AS p FROM %s WHERE e.name = %s AND e.timestamp >= %s AND e.timestamp < %s)\n",
			prof, from, name, tsLit(spec.ConvFrom), tsLit(spec.To))
		ev = "(SELECT * FROM " + ev + " WHERE p IN (SELECT p FROM cp))"
	}
	ev = "(SELECT * FROM " + ev + " WHERE c OR ty = 'page' OR " + strings.Join(cand, " OR ") + ")"
	if s.GoFields {
		fmt.Fprintf(&b, "SELECT p, t, c, ty, s, raw FROM %s ORDER BY p", ev)
		return b.String(), nil
	}
	ps := make([]string, len(paths))
	for i, p := range paths {
		ps[i] = lit(p)
	}
	value := "NULL::VARCHAR"
	if spec.Value != "" {
		value = "CASE WHEN c THEN json_extract_string(raw, " + lit(`$.properties."`+spec.Value+`"`) + ") END"
	}
	cols := make([]string, len(paths))
	for i := range paths {
		cols[i] = fmt.Sprintf("j[%d]", i+1)
	}
	fmt.Fprintf(&b, "SELECT p, t, c, ty, s, v, %s FROM (SELECT p, t, c, ty, s, %s AS v, CASE WHEN NOT c THEN json_extract_string(raw, [%s]) END AS j FROM %s) ORDER BY p",
		strings.Join(cols, ", "), value, strings.Join(ps, ", "), ev)
	return b.String(), nil
}

// Journeys implements [attribution.Source].
func (s *Source) Journeys(ctx context.Context, spec attribution.ScanSpec, fn func(*attribution.Journey) error) error {
	if err := s.journeys(ctx, spec, fn); err != nil {
		return fmt.Errorf("attribution/duckdb: %w", err)
	}
	return nil
}

func (s *Source) journeys(ctx context.Context, spec attribution.ScanSpec, fn func(*attribution.Journey) error) error {
	q, err := s.Query(ctx, spec)
	if err != nil {
		return err
	}
	rows, err := s.db.QueryContext(ctx, q)
	if err != nil {
		return err
	}
	defer rows.Close()
	var (
		j    attribution.Journey
		open bool
		p    string
		t    int64
		c    bool
		ty   string
		src  string
		v    sql.NullString
		raw  string
		f    [10]sql.NullString
	)
	dest := []any{&p, &t, &c, &ty, &src}
	if s.GoFields {
		dest = append(dest, &raw)
	} else {
		dest = append(dest, &v)
		for i := range f {
			dest = append(dest, &f[i])
		}
	}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return err
		}
		if open && p != j.Profile {
			if err := fn(&j); err != nil {
				return err
			}
			open = false
		}
		if !open {
			j = attribution.Journey{Profile: p, Events: j.Events[:0]}
			open = true
		}
		e := attribution.Event{T: t, Conversion: c}
		switch {
		case s.GoFields:
			fields, val := attribution.FieldsFromJSON([]byte(raw), src, spec.Value)
			if c {
				e.Value = val
			} else {
				e.Fields = fields
			}
		case c:
			if v.Valid {
				x := v.String
				e.Value = &x
			}
		default:
			e.Fields = attribution.Fields{Type: ty, SourceID: src,
				Medium: f[0].String, CampaignSource: f[1].String, Campaign: f[2].String,
				URL: f[3].String, Referrer: f[5].String, Channel: f[7].String}
			if ty == "page" {
				if e.Fields.URL == "" {
					e.Fields.URL = f[4].String
				}
				if e.Fields.Referrer == "" {
					e.Fields.Referrer = f[6].String
				}
			}
			if e.Fields.Channel == "" {
				e.Fields.Channel = f[8].String
			}
			if e.Fields.Channel == "" {
				e.Fields.Channel = f[9].String
			}
		}
		j.Events = append(j.Events, e)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if open {
		return fn(&j)
	}
	return nil
}
