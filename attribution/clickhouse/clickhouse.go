// Package clickhouse streams attribution journeys ([attribution.Source])
// from the ClickHouse event store's tables. ClickHouse 18.16 (Debian's)
// has no JSON path functions, so the query selects the conversions and
// candidate touches in the range (filtered on the raw JSON's text,
// profiles resolved through the links, only profiles with a conversion
// unless the scan asks for all) and the touch fields are read in Go from
// each event's JSON ([attribution.FieldsFromJSON]).
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
	conv := "name = " + s.t.Quote(spec.Conversion)
	where := "timestamp >= " + int64Lit(spec.From) + " AND timestamp < " + int64Lit(spec.To) +
		" AND (" + conv + " OR type = 'page' OR (type IN ('screen', 'track') AND (" + strings.Join(cand, " OR ") + ")))"
	ev := "(SELECT timestamp, type, source_id, raw, " + conv + " AS _c, " + p + " AS _p FROM " + s.t.Events + join + " WHERE " + where + ")"
	q := "SELECT _p, timestamp, _c, type, source_id, raw FROM " + ev
	if !spec.All {
		q += " WHERE _p IN (SELECT _p FROM " + ev + " WHERE _c AND timestamp >= " + int64Lit(spec.ConvFrom) + ")"
	}
	q += " ORDER BY _p, timestamp"
	rows, err := s.t.Conn.Query(ctx, q)
	if err != nil {
		return err
	}
	defer rows.Close()
	var (
		j    attribution.Journey
		open bool
		prof string
		t    int64
		c    uint8
		ty   string
		src  string
		raw  string
	)
	for rows.Next() {
		if err := rows.Scan(&prof, &t, &c, &ty, &src, &raw); err != nil {
			return err
		}
		if open && prof != j.Profile {
			if err := fn(&j); err != nil {
				return err
			}
			open = false
		}
		if !open {
			j = attribution.Journey{Profile: prof, Events: j.Events[:0]}
			open = true
		}
		e := attribution.Event{T: t, Conversion: c != 0}
		if e.Conversion {
			if spec.Value != "" {
				e.Value = attribution.ValueFromJSON([]byte(raw), spec.Value)
			}
		} else {
			m, ok := attribution.MarkFromJSON(ty, src, []byte(raw))
			if !ok {
				continue
			}
			e.Mark = m
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
