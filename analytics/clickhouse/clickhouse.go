package clickhouse

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"tandem/analytics"
)

// DefaultBucketRows is how many matching events one scan query groups at
// most (see [Backend.BucketRows]).
const DefaultBucketRows = 4_000_000

// Backend is the ClickHouse [analytics.Backend]. It is also an
// [analytics.Source] (Scan), and the embedded Engine answers funnels,
// paths and retention over it.
type Backend struct {
	analytics.Engine
	// BucketRows bounds the events one GROUP BY query holds: a scan over
	// more matching events is split into buckets of profiles, each its
	// own query (each reads the filter columns again).
	BucketRows int64

	conn   driver.Conn
	events string // qualified table names
	links  string
	quote  func(string) string
}

var _ analytics.Backend = (*Backend)(nil)

// Tables is what the backend reads: the event store's connection, its
// tables (qualified names, ready for a query) and its string literals.
// eventstore/clickhouse passes its own (see its Analytics). The backend
// reads these columns:
//
//	Events: timestamp Int64 (µs), name, type, raw (the event's JSON),
//	        user_id, anonymous_id ('' when none), profile_key
//	        (eventstore.ProfileKey)
//	Links:  key, profile_id ('' when unlinked), version (the latest wins)
type Tables struct {
	Conn   driver.Conn
	Events string
	Links  string
	// Quote returns a string as a literal that survives any bytes (18.16
	// has no query parameters).
	Quote func(string) string
}

// New returns a Backend over the tables t.
func New(t Tables) *Backend {
	b := &Backend{BucketRows: DefaultBucketRows, conn: t.Conn, events: t.Events, links: t.Links, quote: t.Quote}
	b.Src = b
	return b
}

// maxConditions is the most conditions a scan takes: masks are UInt64.
const maxConditions = 64

func int64Lit(n int64) string { return "toInt64(" + strconv.FormatInt(n, 10) + ")" }

// ceilMicro rounds t up to the store's microsecond precision, as the
// store's List does.
func ceilMicro(t time.Time) time.Time {
	if t.Nanosecond()%1000 == 0 {
		return t
	}
	return t.Truncate(time.Microsecond).Add(time.Microsecond)
}

func rangeSQL(r analytics.Range) string {
	return "timestamp >= " + int64Lit(ceilMicro(r.From.Time).UnixMicro()) + " AND timestamp < " + int64Lit(ceilMicro(r.To.Time).UnixMicro())
}

// linked reports whether any profile link exists; with none, an event's
// profile is its user or anonymous id and queries skip the join.
func (b *Backend) linked(ctx context.Context) (bool, error) {
	var n uint64
	err := b.conn.QueryRow(ctx, "SELECT count() FROM (SELECT 1 FROM "+b.links+" LIMIT 1)").Scan(&n)
	return n > 0, err
}

// fromSQL is a subquery of the events matching where: columns cols and
// each row's resolved profile as _p (eventstore.ProfileOf).
func (b *Backend) fromSQL(linked bool, cols, where string) string {
	p := "if(user_id != '', user_id, anonymous_id)"
	join := ""
	if linked {
		p = "if(_linked != '', _linked, " + p + ")"
		join = " ANY LEFT JOIN (SELECT key AS profile_key, argMax(profile_id, version) AS _linked FROM " + b.links + " GROUP BY key) USING profile_key"
	}
	return "(SELECT " + cols + ", " + p + " AS _p FROM " + b.events + join + " WHERE " + where + ")"
}

// buckets is how many buckets a scan over where takes.
func (b *Backend) buckets(ctx context.Context, where string) (int, error) {
	if b.BucketRows <= 0 {
		return 1, nil
	}
	var n uint64
	if err := b.conn.QueryRow(ctx, "SELECT count() FROM "+b.events+" WHERE "+where).Scan(&n); err != nil {
		return 0, err
	}
	return int(max(1, (int64(n)+b.BucketRows-1)/b.BucketRows)), nil
}

func bucketSQL(i, n int) string {
	if n == 1 {
		return "1"
	}
	return fmt.Sprintf("cityHash64(_p) %% %d = %d", n, i)
}

// namesList is the distinct event names of conds (only of those with
// property filters when onlyFiltered) as quoted literals.
func (b *Backend) namesList(conds []analytics.Condition, onlyFiltered bool) []string {
	var out []string
	for _, c := range conds {
		if len(c.Where) > 0 || !onlyFiltered {
			if q := b.quote(c.Event); !slices.Contains(out, q) {
				out = append(out, q)
			}
		}
	}
	return out
}

// maskSQL is the UInt64 whose bit i says the event satisfies conds[i],
// for the conditions without property filters (the others are added in
// Go).
func (b *Backend) maskSQL(conds []analytics.Condition) string {
	bits := map[string]uint64{}
	var order []string
	for i, c := range conds {
		if len(c.Where) > 0 {
			continue
		}
		if _, ok := bits[c.Event]; !ok {
			order = append(order, c.Event)
		}
		bits[c.Event] |= 1 << i
	}
	if len(order) == 0 {
		return "toUInt64(0)"
	}
	var s strings.Builder
	s.WriteString("multiIf(")
	for _, n := range order {
		fmt.Fprintf(&s, "name = %s, toUInt64(%d), ", b.quote(n), bits[n])
	}
	s.WriteString("toUInt64(0))")
	return s.String()
}

// traitPrefilter is an SQL test that an event's JSON may carry trait, or
// "" when none is safe: a key of plain ASCII appears as "name" in any
// JSON encoder's output, others may be written with \u escapes.
func (b *Backend) traitPrefilter(trait string) string {
	for _, r := range trait {
		if r >= 0x7f || r == '<' || r == '>' || r == '&' {
			return ""
		}
	}
	return "position(raw, " + b.quote(`"`+trait+`"`) + ") > 0"
}

// Scan implements [analytics.Source].
func (b *Backend) Scan(ctx context.Context, spec analytics.ScanSpec, fn func(*analytics.Sequence) error) error {
	if err := b.scan(ctx, spec, fn); err != nil {
		return fmt.Errorf("analytics/clickhouse: scan: %w", err)
	}
	return nil
}

func (b *Backend) scan(ctx context.Context, spec analytics.ScanSpec, fn func(*analytics.Sequence) error) error {
	conds := spec.Conditions
	if len(conds) == 0 || len(conds) > maxConditions {
		return fmt.Errorf("takes 1 to %d conditions, not %d", maxConditions, len(conds))
	}
	linked, err := b.linked(ctx)
	if err != nil {
		return err
	}
	scanWhere := rangeSQL(spec.Range)
	if spec.All {
		scanWhere += " AND name != '' AND type IN ('track', 'page', 'screen')"
	} else {
		scanWhere += " AND name IN (" + strings.Join(b.namesList(conds, false), ", ") + ")"
	}
	// raw comes back for the events a filter or the property needs.
	rawExpr := "''"
	if spec.Property != "" {
		rawExpr = "raw"
	} else if f := b.namesList(conds, true); len(f) > 0 {
		rawExpr = "if(name IN (" + strings.Join(f, ", ") + "), raw, '')"
	}
	ev := newEvaluator(spec)
	cols := "groupArrayIf(timestamp, _s), groupArrayIf(_m, _s), groupArrayIf(_r, _s)"
	if spec.Names || ev.filtered {
		cols += ", groupArrayIf(name, _s)"
	}
	where := scanWhere
	candidate := "0"
	if spec.Trait != "" {
		// Events that may carry the trait: any before To (no lower bound:
		// the latest value before the range's end counts).
		candidate = "timestamp < " + int64Lit(ceilMicro(spec.To.Time).UnixMicro())
		if pf := b.traitPrefilter(spec.Trait); pf != "" {
			candidate += " AND " + pf
		}
		where = "(" + scanWhere + ") OR (" + candidate + ")"
		cols += ", groupArrayIf(timestamp, _c), groupArrayIf(type = 'identify', _c), groupArrayIf(raw, _c)"
	}
	n, err := b.buckets(ctx, scanWhere)
	if err != nil {
		return err
	}
	inner := "SELECT _p, timestamp, name, type, raw, " + b.maskSQL(conds) + " AS _m, " + rawExpr + " AS _r, (" + scanWhere + ") AS _s, (" + candidate + ") AS _c FROM " +
		b.fromSQL(linked, "timestamp, name, type, raw", where)
	for i := 0; i < n; i++ {
		q := "SELECT _p, " + cols + " FROM (" + inner + ") WHERE " + bucketSQL(i, n) + " GROUP BY _p HAVING countIf(_s) > 0"
		if err := b.scanQuery(ctx, q, spec, ev, fn); err != nil {
			return err
		}
	}
	return nil
}

func (b *Backend) scanQuery(ctx context.Context, q string, spec analytics.ScanSpec, ev *evaluator, fn func(*analytics.Sequence) error) error {
	rows, err := b.conn.Query(ctx, q)
	if err != nil {
		return err
	}
	defer rows.Close()
	var (
		seq      analytics.Sequence
		p        string
		ts       []int64
		masks    []uint64
		raws     []string
		names    []string
		traitTs  []int64
		traitIdf []uint8
		traitRaw []string
	)
	dest := []any{&p, &ts, &masks, &raws}
	if spec.Names || ev.filtered {
		dest = append(dest, &names)
	}
	if spec.Trait != "" {
		dest = append(dest, &traitTs, &traitIdf, &traitRaw)
	}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return err
		}
		seq = analytics.Sequence{Profile: p, Points: seq.Points[:0]}
		hit := false
		for j, t := range ts {
			pt := analytics.Point{T: t, Mask: masks[j]}
			if names != nil {
				pt.Name = names[j]
			}
			if raws[j] != "" {
				ev.eval(raws[j], &pt)
			}
			if pt.Mask == 0 && !spec.All {
				continue
			}
			hit = hit || pt.Mask != 0
			seq.Points = append(seq.Points, pt)
		}
		if !hit {
			continue
		}
		// Equal times in a stable order (mask, then name), as the DuckDB
		// backend streams them, so that paths agree on ties.
		slices.SortFunc(seq.Points, func(x, y analytics.Point) int {
			if x.T != y.T {
				return compare(x.T, y.T)
			}
			if x.Mask != y.Mask {
				return compare(x.Mask, y.Mask)
			}
			return strings.Compare(x.Name, y.Name)
		})
		if spec.Trait != "" {
			seq.Trait = latestTrait(spec.Trait, traitTs, traitIdf, traitRaw)
		}
		if err := fn(&seq); err != nil {
			return err
		}
	}
	return rows.Err()
}

func compare[T int64 | uint64](a, b T) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Journey answers with each profile's first time per stage computed in
// SQL (minIf per stage), summed in Go by [analytics.JourneyAgg].
func (b *Backend) Journey(ctx context.Context, jq *analytics.JourneyQuery) (*analytics.JourneyResult, error) {
	res, err := b.journey(ctx, jq)
	if err != nil {
		return nil, fmt.Errorf("analytics/clickhouse: journey: %w", err)
	}
	return res, nil
}

func (b *Backend) journey(ctx context.Context, jq *analytics.JourneyQuery) (*analytics.JourneyResult, error) {
	linked, err := b.linked(ctx)
	if err != nil {
		return nil, err
	}
	var all []string
	cols := make([]string, len(jq.Stages))
	for k, s := range jq.Stages {
		var names []string
		for _, e := range s.Events {
			names = append(names, b.quote(e))
			if !slices.Contains(all, b.quote(e)) {
				all = append(all, b.quote(e))
			}
		}
		in := "name IN (" + strings.Join(names, ", ") + ")"
		cols[k] = "if(countIf(" + in + ") > 0, minIf(timestamp, " + in + "), toInt64(-1))"
	}
	// One query, not buckets: the server keeps a fixed-size state per
	// profile (a count and a minimum per stage), not its events.
	where := rangeSQL(jq.Range) + " AND name IN (" + strings.Join(all, ", ") + ")"
	agg := analytics.NewJourneyAgg(jq)
	st := make(analytics.StageTimes, len(jq.Stages))
	var p string
	dest := []any{&p}
	for k := range st {
		dest = append(dest, &st[k])
	}
	q := "SELECT _p, " + strings.Join(cols, ", ") + " FROM " + b.fromSQL(linked, "timestamp, name", where) + " GROUP BY _p"
	rows, err := b.conn.Query(ctx, q)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return nil, err
		}
		agg.Add(p, st)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return agg.Result(), nil
}
