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
//
// The rows come out small: each profile as a dense integer numbered in
// the query, each touch as the hash of its touch facts, and each distinct
// set of touch facts once, in rows of its own, so that Go reads four
// narrow columns per event and no string but a conversion's value. Two
// distinct sets of facts with the same hash (not seen in practice: 64
// bits) are detected, and the scan is then read again with every touch's
// facts as strings.
package duckdb

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
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
	db    *sql.DB
	t     Tables
	facts bool // read every touch's facts as strings (tests)
}

// New returns a Source over the tables t of db.
func New(db *sql.DB, t Tables) *Source { return &Source{db: db, t: t} }

var _ attribution.Source = (*Source)(nil)

func lit(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func tsLit(us int64) string { return "make_timestamptz(" + strconv.FormatInt(us, 10) + "::BIGINT)" }

// The bits of the touch column (eventstore/duckdb's touchColumns).
const (
	touchClickID  = 2
	touchReferrer = 4
)

// The columns of a touch's facts, hashed per row and listed once per
// distinct set.
const facts = "type, source_id, touch, touch_medium, touch_source, touch_campaign, touch_channel, touch_referrer, touch_page"

// Query is the SQL of a scan. Its rows are (p, t, v, h): a conversion
// (h NULL) of profile number p at t (µs) worth the text v; a candidate
// touch of profile p at t whose facts hash to h; or (p NULL) the facts
// hashing to h, as the JSON list v (facts order, touch as text).
func (s *Source) Query(ctx context.Context, spec attribution.ScanSpec) (string, error) {
	prof, join, err := s.profile(ctx)
	if err != nil {
		return "", err
	}
	rng := "timestamp >= " + tsLit(spec.From) + " AND timestamp < " + tsLit(spec.To)
	name := lit(spec.Conversion)
	value := s.value(spec)
	// Two scans: the conversions, filtered on their name, whose value is
	// read from its column (or their JSON); the candidate touches,
	// filtered on the touch column, which read narrow columns only. Each
	// filter is pushed into its scan, so the JSON of no other event is
	// read. The conversions are read once: the converting profiles are
	// taken from them. The profiles are numbered (p) in the query, so
	// that their keys never leave DuckDB.
	var b strings.Builder
	fmt.Fprintf(&b, "WITH conv AS MATERIALIZED (SELECT user_id, anonymous_id, timestamp, %s AS v FROM %s WHERE name = %s AND %s),\n", value, s.t.Events, name, rng)
	fmt.Fprintf(&b, `ev AS (SELECT %s AS p, epoch_us(e.timestamp) AS t, e.* EXCLUDE (user_id, anonymous_id, timestamp)
FROM (
	SELECT user_id, anonymous_id, timestamp, v, NULL::VARCHAR AS type, NULL::VARCHAR AS source_id, NULL::UTINYINT AS touch,
		NULL::VARCHAR AS touch_medium, NULL::VARCHAR AS touch_source, NULL::VARCHAR AS touch_campaign,
		NULL::VARCHAR AS touch_channel, NULL::VARCHAR AS touch_referrer, NULL::VARCHAR AS touch_page
	FROM conv
	UNION ALL
	SELECT user_id, anonymous_id, timestamp, NULL, %s
	FROM %s WHERE touch > 0 AND %s AND name IS DISTINCT FROM %s
) e%s),
`, prof, facts, s.t.Events, rng, name, join)
	if spec.All {
		b.WriteString("ids AS (SELECT p, (row_number() OVER ())::INTEGER AS n FROM (SELECT DISTINCT p FROM ev)),\n")
	} else {
		fmt.Fprintf(&b, "ids AS (SELECT p, (row_number() OVER ())::INTEGER AS n FROM (SELECT DISTINCT %s AS p FROM conv e%s WHERE e.timestamp >= %s)),\n", prof, join, tsLit(spec.ConvFrom))
	}
	fmt.Fprintf(&b, `r AS MATERIALIZED (SELECT ids.n, ev.* EXCLUDE (p) FROM ev JOIN ids ON ev.p = ids.p)
SELECT n AS p, t, v, CASE WHEN touch IS NOT NULL THEN hash(%[1]s) END AS h FROM r
UNION ALL
SELECT NULL, NULL, to_json([type, source_id, touch::VARCHAR, touch_medium, touch_source, touch_campaign, touch_channel, touch_referrer, touch_page])::VARCHAR, hash(%[1]s)
FROM (SELECT DISTINCT %[1]s FROM r WHERE touch IS NOT NULL)`, facts)
	return b.String(), nil
}

// profile is the SQL of an event e's profile and the join it needs.
func (s *Source) profile(ctx context.Context) (prof, join string, err error) {
	var n int64
	if err := s.db.QueryRowContext(ctx, "SELECT count(*) FROM (SELECT 1 FROM "+s.t.Links+" LIMIT 1)").Scan(&n); err != nil {
		return "", "", err
	}
	if n == 0 {
		return "coalesce(e.user_id, e.anonymous_id)", "", nil
	}
	// The links are split into (kind, id) once, so each event joins on
	// its own columns rather than on a key string built per row
	// (eventstore.ProfileKey: "user_id:" + userId, else "anonymous_id:" +
	// anonymousId).
	return "coalesce(l.profile_id, e.user_id, e.anonymous_id)",
		" LEFT JOIN (SELECT starts_with(key, 'user_id:') AS u, CASE WHEN starts_with(key, 'user_id:') THEN substr(key, 9) ELSE substr(key, 14) END AS id, profile_id FROM " +
			s.t.Links + " WHERE starts_with(key, 'user_id:') OR starts_with(key, 'anonymous_id:')) l ON l.id = coalesce(e.user_id, e.anonymous_id) AND l.u = (e.user_id IS NOT NULL)", nil
}

// value is the SQL of a conversion's value text.
func (s *Source) value(spec attribution.ScanSpec) string {
	if spec.Value == "" {
		return "NULL::VARCHAR"
	}
	if s.t.ValueColumn != nil {
		if c := s.t.ValueColumn(spec.Value); c != "" {
			return c
		}
	}
	return "json_extract_string(raw, " + lit(`$.properties."`+spec.Value+`"`) + ")"
}

// Journeys implements [attribution.Source].
func (s *Source) Journeys(ctx context.Context, spec attribution.ScanSpec, fn func(*attribution.Journey) error) error {
	err := s.journeys(ctx, spec, fn)
	if errors.Is(err, errCollision) {
		err = s.journeysByFacts(ctx, spec, fn)
	}
	if err != nil {
		return fmt.Errorf("attribution/duckdb: %w", err)
	}
	return nil
}

// errCollision is two distinct sets of touch facts with the same hash.
var errCollision = errors.New("two sets of touch facts with one hash")

// row is one event as the query gives it.
type row struct {
	t, value int64
	h        uint64
	p        int32
	conv     bool
}

func (s *Source) journeys(ctx context.Context, spec attribution.ScanSpec, fn func(*attribution.Journey) error) error {
	if s.facts {
		return errCollision
	}
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
		evs   []row
		marks []attribution.Mark
		ids   = map[uint64]int32{}
		maxP  int32
		p, t  any
		v, h  any
	)
	dest := []any{&p, &t, &v, &h}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return err
		}
		if p == nil { // a set of touch facts
			hv, _ := h.(uint64)
			if _, dup := ids[hv]; dup {
				return errCollision
			}
			m, err := markOf(v)
			if err != nil {
				return err
			}
			ids[hv] = int32(len(marks))
			marks = append(marks, m)
			continue
		}
		r := row{p: p.(int32), t: t.(int64)}
		maxP = max(maxP, r.p)
		if h == nil {
			r.conv = true
			if x, ok := v.(string); ok {
				r.value = attribution.MinorUnits(x)
			}
		} else {
			r.h = h.(uint64)
		}
		evs = append(evs, r)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	rows.Close()
	// Group the events by profile (counting sort on p).
	start := make([]int32, maxP+2)
	for i := range evs {
		start[evs[i].p+1]++
	}
	for i := 1; i < len(start); i++ {
		start[i] += start[i-1]
	}
	out := make([]attribution.Event, len(evs))
	next := slices.Clone(start)
	for i := range evs {
		r := &evs[i]
		e := attribution.Event{T: r.t, Value: r.value, Conversion: r.conv}
		if !r.conv {
			id, ok := ids[r.h]
			if !ok {
				return fmt.Errorf("no touch facts for hash %d", r.h)
			}
			e.Mark = id
		}
		out[next[r.p]] = e
		next[r.p]++
	}
	evs = nil
	j := attribution.Journey{Marks: marks}
	for p := 0; p+1 < len(start); p++ {
		if start[p] == start[p+1] {
			continue
		}
		j.Events = out[start[p]:start[p+1]]
		if err := fn(&j); err != nil {
			return err
		}
	}
	return nil
}

// markOf reads a set of touch facts from its JSON list (facts order).
func markOf(v any) (attribution.Mark, error) {
	x, _ := v.(string)
	var f [9]*string
	if err := json.Unmarshal([]byte(x), &f); err != nil {
		return attribution.Mark{}, fmt.Errorf("touch facts %q: %w", x, err)
	}
	str := func(i int) string {
		if f[i] == nil {
			return ""
		}
		return *f[i]
	}
	bits, _ := strconv.Atoi(str(2))
	return attribution.Mark{Type: str(0), SourceID: str(1), Medium: str(3), Source: str(4), Campaign: str(5), Channel: str(6),
		Referrer: str(7), Page: str(8), ClickID: bits&touchClickID != 0, HasReferrer: bits&touchReferrer != 0}, nil
}

// journeysByFacts is the scan with every touch's facts as strings, for
// when two sets of facts hash alike: the same events, each Mark numbered
// in Go.
func (s *Source) journeysByFacts(ctx context.Context, spec attribution.ScanSpec, fn func(*attribution.Journey) error) error {
	q, err := s.Query(ctx, spec)
	if err != nil {
		return err
	}
	// The same rows with the facts themselves in place of their hash.
	i := strings.LastIndex(q, "\nSELECT n AS p")
	q = q[:i] + "\nSELECT n AS p, t, v, " + facts + " FROM r"
	rows, err := s.db.QueryContext(ctx, q)
	if err != nil {
		return err
	}
	defer rows.Close()
	var (
		set  attribution.MarkSet
		byP  = map[int32][]attribution.Event{}
		p    int32
		t    int64
		v    sql.NullString
		ty   sql.NullString
		src  sql.NullString
		bits sql.NullInt64
		f    [6]sql.NullString
	)
	dest := []any{&p, &t, &v, &ty, &src, &bits}
	for i := range f {
		dest = append(dest, &f[i])
	}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return err
		}
		e := attribution.Event{T: t}
		if !bits.Valid {
			e.Conversion = true
			if v.Valid {
				e.Value = attribution.MinorUnits(v.String)
			}
		} else {
			m := attribution.Mark{Type: ty.String, SourceID: src.String,
				Medium: f[0].String, Source: f[1].String, Campaign: f[2].String, Channel: f[3].String,
				Referrer: f[4].String, Page: f[5].String,
				ClickID: bits.Int64&touchClickID != 0, HasReferrer: bits.Int64&touchReferrer != 0}
			e.Mark = set.ID(&m)
		}
		byP[p] = append(byP[p], e)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	for p, evs := range byP {
		j := attribution.Journey{Events: evs, Marks: set.List}
		if err := fn(&j); err != nil {
			return err
		}
		delete(byP, p)
	}
	return nil
}
