// Package clickhouse streams attribution journeys ([attribution.Source])
// from the ClickHouse event store's tables. The query selects the
// conversions in the range and the candidate touches, their
// [attribution.Mark] from the narrow touch columns the store writes at
// append (profiles resolved through the links, only profiles with a
// conversion unless the scan asks for all). ClickHouse 18.16 (Debian's)
// has no JSON path functions: a conversion's value, and the Mark of an
// event stored before the touch columns existed (filtered on its JSON's
// text), are read in Go from the event's JSON.
package clickhouse

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"tandem/attribution"
)

// Tables is what the source reads, as analytics/clickhouse reads it: the
// store's connection, its qualified table names and its literal quoting.
type Tables struct {
	Conn   driver.Conn
	Events string
	Links  string
	Quote  func(string) string
}

// Source is the ClickHouse [attribution.Source].
type Source struct{ t Tables }

// New returns a Source over t.
func New(t Tables) *Source { return &Source{t: t} }

var _ attribution.Source = (*Source)(nil)

func int64Lit(n int64) string { return "toInt64(" + strconv.FormatInt(n, 10) + ")" }

// Journeys implements [attribution.Source].
func (s *Source) Journeys(ctx context.Context, spec attribution.ScanSpec, fn func(*attribution.Journey) error) error {
	if err := s.journeys(ctx, spec, fn); err != nil {
		return fmt.Errorf("attribution/clickhouse: %w", err)
	}
	return nil
}

// The touch column's values (eventstore/clickhouse's touchColumns).
const (
	touchClickID  = 2
	touchReferrer = 4
	touchUnread   = 255
)

func (s *Source) journeys(ctx context.Context, spec attribution.ScanSpec, fn func(*attribution.Journey) error) error {
	var n uint64
	if err := s.t.Conn.QueryRow(ctx, "SELECT count() FROM (SELECT 1 FROM "+s.t.Links+" LIMIT 1)").Scan(&n); err != nil {
		return err
	}
	p := "if(user_id != '', user_id, anonymous_id)"
	join := ""
	if n > 0 {
		p = "if(_linked != '', _linked, " + p + ")"
		join = " ANY LEFT JOIN (SELECT key AS profile_key, argMax(profile_id, version) AS _linked FROM " + s.t.Links + " GROUP BY key) USING profile_key"
	}
	var cand []string
	for _, c := range attribution.Candidate {
		cand = append(cand, "position(raw, "+s.t.Quote(c)+") > 0")
	}
	name := s.t.Quote(spec.Conversion)
	rng := "timestamp >= " + int64Lit(spec.From) + " AND timestamp < " + int64Lit(spec.To)
	value := "''"
	if spec.Value != "" {
		value = "raw"
	}
	const none = "toUInt8(0) AS touch, '' AS touch_medium, '' AS touch_source, '' AS touch_campaign, '' AS touch_channel, '' AS touch_referrer, '' AS touch_page"
	const marks = "touch, touch_medium, touch_source, touch_campaign, touch_channel, touch_referrer, touch_page"
	branch := func(c, raw, touch, where string) string {
		return "SELECT " + p + " AS _p, timestamp, toUInt8(" + c + ") AS _c, type, source_id, " + raw + " AS _raw, " + touch +
			" FROM " + s.t.Events + join + " PREWHERE " + where + " WHERE " + rng
	}
	// Three scans: the conversions (their JSON for their value alone);
	// the candidate touches with touch columns, which read narrow columns
	// only; and those stored before the columns existed (touch unread),
	// whose JSON is read as before.
	conv := branch("1", value, none, "name = "+name)
	ev := conv + " UNION ALL " +
		branch("0", "''", marks, "touch BETWEEN 1 AND 254 AND name != "+name) + " UNION ALL " +
		branch("0", "raw", marks, "touch = "+strconv.Itoa(touchUnread)+" AND name != "+name+
			" AND (type = 'page' OR (type IN ('screen', 'track') AND ("+strings.Join(cand, " OR ")+")))")
	q := "SELECT * FROM (" + ev + ")"
	if !spec.All {
		q += " WHERE _p IN (SELECT _p FROM (" + conv + ") WHERE timestamp >= " + int64Lit(spec.ConvFrom) + ")"
	}
	q += " ORDER BY _p, timestamp"
	rows, err := s.t.Conn.Query(ctx, q)
	if err != nil {
		return err
	}
	defer rows.Close()
	var (
		j    attribution.Journey
		set  attribution.MarkSet
		open bool
		cur  string
		prof string
		t    int64
		c    uint8
		ty   string
		src  string
		raw  string
		bits uint8
		f    [6]string
	)
	dest := []any{&prof, &t, &c, &ty, &src, &raw, &bits}
	for i := range f {
		dest = append(dest, &f[i])
	}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return err
		}
		if open && prof != cur {
			j.Marks = set.List
			if err := fn(&j); err != nil {
				return err
			}
			open = false
		}
		if !open {
			j.Events = j.Events[:0]
			cur, open = prof, true
		}
		e := attribution.Event{T: t, Conversion: c != 0}
		switch {
		case e.Conversion:
			if spec.Value != "" {
				if v := attribution.ValueFromJSON([]byte(raw), spec.Value); v != nil {
					e.Value = attribution.MinorUnits(*v)
				}
			}
		case bits == touchUnread:
			m, ok := attribution.MarkFromJSON(ty, src, []byte(raw))
			if !ok {
				continue
			}
			e.Mark = set.ID(&m)
		default:
			m := attribution.Mark{Type: ty, SourceID: src,
				Medium: f[0], Source: f[1], Campaign: f[2], Channel: f[3], Referrer: f[4], Page: f[5],
				ClickID: bits&touchClickID != 0, HasReferrer: bits&touchReferrer != 0}
			e.Mark = set.ID(&m)
		}
		j.Events = append(j.Events, e)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if open {
		j.Marks = set.List
		return fn(&j)
	}
	return nil
}
