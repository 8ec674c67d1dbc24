// Package duckdb streams attribution journeys ([attribution.Source])
// from the embedded event store's DuckDB tables: one SQL query selects
// the conversions in the range (their value read from a value column the
// store writes at append for the common value properties, else from
// their JSON) and
// the candidate touches (their [attribution.Mark] read from the narrow
// touch columns the store writes at append, never their JSON), resolves
// each event's profile through the profile links and keeps only the
// profiles with a conversion (unless the scan asks for all, as the Markov
// model does); the models run in Go over each profile's rows.
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
// Events (timestamp, name, type, raw, user_id, anonymous_id, source_id,
// and the touch columns of eventstore/duckdb: touch, touch_medium,
// touch_source, touch_campaign, touch_channel, touch_referrer,
// touch_page) and Links (key, profile_id).
type Tables struct {
	Events string
	Links  string
	// ValueColumn, when set, names the column of Events holding the text
	// of a conversion value property (json_extract_string of
	// properties.<prop>, or any text that parses to the same number), ""
	// for a property read from the JSON.
	ValueColumn func(prop string) string
}

// Source is the DuckDB [attribution.Source].
type Source struct {
	db *sql.DB
	t  Tables
}

// New returns a Source over the tables t of db.
func New(db *sql.DB, t Tables) *Source { return &Source{db: db, t: t} }

var _ attribution.Source = (*Source)(nil)

func lit(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func tsLit(us int64) string { return "make_timestamptz(" + strconv.FormatInt(us, 10) + "::BIGINT)" }

// The bits of the touch column (eventstore/duckdb's touchColumns).
const (
	touchCandidate = 1
	touchClickID   = 2
	touchReferrer  = 4
)

// Query is the SQL of a scan.
func (s *Source) Query(ctx context.Context, spec attribution.ScanSpec) (string, error) {
	var n int64
	if err := s.db.QueryRowContext(ctx, "SELECT count(*) FROM (SELECT 1 FROM "+s.t.Links+" LIMIT 1)").Scan(&n); err != nil {
		return "", err
	}
	prof := "coalesce(e.user_id, e.anonymous_id)"
	join := ""
	if n > 0 {
		prof = "coalesce(l.profile_id, e.user_id, e.anonymous_id)"
		// The links are split into (kind, id) once, so each event joins
		// on its own columns rather than on a key string built per row
		// (eventstore.ProfileKey: "user_id:" + userId, else
		// "anonymous_id:" + anonymousId).
		join = " LEFT JOIN (SELECT starts_with(key, 'user_id:') AS u, CASE WHEN starts_with(key, 'user_id:') THEN substr(key, 9) ELSE substr(key, 14) END AS id, profile_id FROM " +
			s.t.Links + " WHERE starts_with(key, 'user_id:') OR starts_with(key, 'anonymous_id:')) l ON l.id = coalesce(e.user_id, e.anonymous_id) AND l.u = (e.user_id IS NOT NULL)"
	}
	rng := "timestamp >= " + tsLit(spec.From) + " AND timestamp < " + tsLit(spec.To)
	name := lit(spec.Conversion)
	value := "NULL::VARCHAR"
	if spec.Value != "" {
		value = "json_extract_string(raw, " + lit(`$.properties."`+spec.Value+`"`) + ")"
		if s.t.ValueColumn != nil {
			if c := s.t.ValueColumn(spec.Value); c != "" {
				value = c
			}
		}
	}
	// Two scans: the conversions, filtered on their name, whose value is
	// read from its column (or their JSON); the candidate touches,
	// filtered on the touch column, which read narrow columns only. Each
	// filter is pushed into its scan, so the JSON of no other event is
	// read. The conversions are read once: the converting profiles are
	// taken from them.
	var b strings.Builder
	fmt.Fprintf(&b, "WITH conv AS MATERIALIZED (SELECT user_id, anonymous_id, timestamp, type, source_id, %s AS v FROM %s WHERE name = %s AND %s)", value, s.t.Events, name, rng)
	if !spec.All {
		fmt.Fprintf(&b, ",\ncp AS (SELECT DISTINCT %s AS p FROM conv e%s WHERE e.timestamp >= %s)", prof, join, tsLit(spec.ConvFrom))
	}
	fmt.Fprintf(&b, `
SELECT * FROM (SELECT %s AS p, epoch_us(e.timestamp) AS t, e.c, e.type, e.source_id, e.v,
	e.touch, e.touch_medium, e.touch_source, e.touch_campaign, e.touch_channel, e.touch_referrer, e.touch_page
FROM (
	SELECT user_id, anonymous_id, timestamp, true AS c, type, source_id, v,
		NULL::UTINYINT AS touch, NULL::VARCHAR AS touch_medium, NULL::VARCHAR AS touch_source, NULL::VARCHAR AS touch_campaign,
		NULL::VARCHAR AS touch_channel, NULL::VARCHAR AS touch_referrer, NULL::VARCHAR AS touch_page
	FROM conv
	UNION ALL
	SELECT user_id, anonymous_id, timestamp, false, type, source_id, NULL,
		touch, touch_medium, touch_source, touch_campaign, touch_channel, touch_referrer, touch_page
	FROM %s WHERE touch > 0 AND %s AND name IS DISTINCT FROM %s
) e%s)
`, prof, s.t.Events, rng, name, join)
	if !spec.All {
		b.WriteString(" WHERE p IN (SELECT p FROM cp)")
	}
	if spec.All {
		// Every profile's events: streamed in profile order. The
		// converting profiles' are fewer and are grouped in Go, which is
		// cheaper than DuckDB's sort of the wide rows.
		b.WriteString(" ORDER BY p")
	}
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
		set  attribution.MarkSet
		cur  string
		open bool
		p    string
		t    int64
		c    bool
		ty   string
		src  string
		v    sql.NullString
		bits sql.NullInt64
		f    [6]sql.NullString
	)
	dest := []any{&p, &t, &c, &ty, &src, &v, &bits}
	for i := range f {
		dest = append(dest, &f[i])
	}
	var groups map[string][]attribution.Event // !spec.All: the events of each profile
	if !spec.All {
		groups = map[string][]attribution.Event{}
	}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return err
		}
		if groups == nil && open && p != cur {
			j.Marks = set.List
			if err := fn(&j); err != nil {
				return err
			}
			open = false
		}
		if !open {
			j.Events = j.Events[:0]
			cur, open = p, true
		}
		e := attribution.Event{T: t, Conversion: c}
		if c {
			if v.Valid {
				e.Value = attribution.MinorUnits(v.String)
			}
		} else {
			m := attribution.Mark{Type: ty, SourceID: src,
				Medium: f[0].String, Source: f[1].String, Campaign: f[2].String, Channel: f[3].String,
				Referrer: f[4].String, Page: f[5].String,
				ClickID: bits.Int64&touchClickID != 0, HasReferrer: bits.Int64&touchReferrer != 0}
			e.Mark = set.ID(&m)
		}
		if groups != nil {
			groups[p] = append(groups[p], e)
			continue
		}
		j.Events = append(j.Events, e)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	for p, evs := range groups {
		j = attribution.Journey{Events: evs, Marks: set.List}
		if err := fn(&j); err != nil {
			return err
		}
		delete(groups, p)
	}
	if groups == nil && open {
		j.Marks = set.List
		return fn(&j)
	}
	return nil
}
