package clickhouse

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"

	"tandem/analytics"
)

// Funnel answers in one SQL query when it can (see funnelSQL), else
// through the Go engine over Scan.
func (b *Backend) Funnel(ctx context.Context, fq *analytics.FunnelQuery) (*analytics.FunnelResult, error) {
	linked, err := b.linked(ctx)
	if err != nil {
		return nil, fmt.Errorf("analytics/clickhouse: funnel: %w", err)
	}
	q, ok := b.funnelSQL(fq, linked)
	if !ok {
		return b.Engine.Funnel(ctx, fq)
	}
	res, err := b.funnel(ctx, fq, q)
	if err != nil {
		return nil, fmt.Errorf("analytics/clickhouse: funnel: %w", err)
	}
	return res, nil
}

func (b *Backend) funnel(ctx context.Context, fq *analytics.FunnelQuery, q string) (*analytics.FunnelResult, error) {
	n := len(fq.Steps)
	counts := make([]uint64, n)
	// hi[k] and negLo[k]: the upper middle of the microseconds from step
	// k-1 to step k, and the lower middle negated (equal for an odd count).
	hi := make([]int64, n)
	negLo := make([]int64, n)
	dest := make([]any, 0, 3*n)
	for k := range counts {
		dest = append(dest, &counts[k])
	}
	for k := 1; k < n; k++ {
		dest = append(dest, &hi[k], &negLo[k])
	}
	if err := b.conn.QueryRow(ctx, q).Scan(dest...); err != nil {
		return nil, err
	}
	cs := make([]int64, n)
	ms := make([]*float64, n)
	for k := range counts {
		cs[k] = int64(counts[k])
		if k > 0 && counts[k] > 0 {
			// As analytics.Quantile computes the median of the seconds.
			l, h := float64(-negLo[k])/1e6, float64(hi[k])/1e6
			v := l + 0.5*(h-l)
			ms[k] = &v
		}
	}
	return &analytics.FunnelResult{Steps: analytics.StepResults(fq, cs, ms)}, nil
}

// funnelSQL is the SQL of a funnel, or ok false when the query needs the
// Go engine over Scan: a breakdown or a property filter (18.16 cannot read
// properties, see doc.go), two steps naming the same event (one event may
// then satisfy two steps), or a range and window too long for the keys
// below.
//
// Per profile it sorts keys (time since the range's start × 64 + the
// event's step code) and computes, step by step, for every event of step
// k the latest start of a chain ending at it (L_k): the latest valid L_{k-1}
// of the events of step k-1 before it, valid when the event is within the
// window of that start; L_1 is the event's own time. The valid L_{k-1}
// never decrease along the sorted events (each is a running maximum), so
// "the latest before it" is the valid L_{k-1} at the count of valid ones so
// far (arrayCumSum), with no search. The depth is the deepest step with a
// valid event; the reported chain starts at the latest valid L of that
// step (the latest start reaching the depth) and takes at each step the
// first event whose L is that start, which is the earliest event the
// chain can take there. This is [analytics.Funnel]'s rule and the DuckDB
// backend's, in 18.16's array functions.
//
// Ties: events of one instant sort by step (the code is the step's index),
// so a later step may take an event of the same instant; when strict the
// codes run backwards, so at one instant a later step sorts first and
// never follows an earlier one.
//
// Most profiles that reach step 1 cannot go further: none of their step-2
// keys follows their first step-1 key (the cheap test _cand, a necessary
// condition of a step-2 event with a valid start). A second, small GROUP
// BY folds all those into one row (_n, their count, and the keys of any
// one of them, whose depth is 1) and keeps each other profile as a row
// of its own, so that the chain arrays, which cost per row in 18.16 more
// than per key, are computed for the candidates only: about one profile
// in four in the benchmark's data, where this took the funnel's query CPU
// from 1.83× windowFunnel's to 1.45× (medians, docs/benchmarks.md
// #ch-funnel2). The second GROUP BY keys the candidates by profile,
// never by a hash, so it stays exact.
//
// It returns the profiles per step, then per step after the first the
// upper and the negated lower middle of the times from the previous step
// (quantileExact(0.5) of n values is the value at n/2 in order; of the
// negated values the one at (n-1)/2).
func (b *Backend) funnelSQL(fq *analytics.FunnelQuery, linked bool) (string, bool) {
	n := len(fq.Steps)
	if fq.Breakdown != nil || fq.Overlapping() || n > 63 {
		return "", false
	}
	for _, s := range fq.Steps {
		if len(s.Where) > 0 {
			return "", false
		}
	}
	from := ceilMicro(fq.From.Time).UnixMicro()
	to := ceilMicro(fq.To.Time).UnixMicro()
	// Keys and starts plus the window must fit an Int64.
	const limit = math.MaxInt64 / 128
	if to-from >= limit/64 || fq.Window.Micros >= limit {
		return "", false
	}
	code := func(k int) int { // of step k (0-based)
		if fq.Strict {
			return n - 1 - k
		}
		return k
	}
	w := strconv.FormatInt(fq.Window.Micros, 10)
	var sb strings.Builder
	sb.WriteString("SELECT sum(_n)")
	for k := 2; k <= n; k++ {
		fmt.Fprintf(&sb, ", countIf(_d >= %d)", k)
	}
	for k := 2; k <= n; k++ {
		fmt.Fprintf(&sb, ", quantileExactIf(0.5)(_t%d - _t%d, _d >= %[3]d), quantileExactIf(0.5)(_t%[2]d - _t%[1]d, _d >= %[3]d)", k, k-1, k)
	}
	sb.WriteString(" FROM (SELECT _n,\n")
	sb.WriteString("arrayMap(x -> intDiv(x, 64), _ks) AS _ts,\n")
	sb.WriteString("arrayMap(x -> x % 64, _ks) AS _cs,\n")
	fmt.Fprintf(&sb, "arrayMap((a, b) -> if(b = %d, a, -1), _ts, _cs) AS _v1,\n", code(0))
	sb.WriteString("arrayFilter(x -> x >= 0, _v1) AS _p1,\n")
	for k := 2; k <= n; k++ {
		fmt.Fprintf(&sb, "arrayMap((a, b, c) -> if(b = %[1]d AND c > 0 AND a <= _p%[2]d[c] + %[3]s, _p%[2]d[c], -1), _ts, _cs, arrayCumSum(arrayMap(x -> x >= 0, _v%[2]d))) AS _v%[4]d,\n",
			code(k-1), k-1, w, k)
		fmt.Fprintf(&sb, "arrayFilter(x -> x >= 0, _v%d) AS _p%[1]d,\n", k)
	}
	if n == 1 {
		sb.WriteString("1 AS _d\n")
	} else {
		sb.WriteString("multiIf(")
		for k := n; k >= 2; k-- {
			fmt.Fprintf(&sb, "notEmpty(_p%d), %d, ", k, k)
		}
		sb.WriteString("1) AS _d,\n")
		sb.WriteString("multiIf(")
		for k := n; k >= 2; k-- {
			fmt.Fprintf(&sb, "_d = %d, _p%d[-1], ", k, k)
		}
		sb.WriteString("_p1[-1]) AS _t1")
		for k := 2; k <= n; k++ {
			fmt.Fprintf(&sb, ",\n_ts[indexOf(_v%d, _t1)] AS _t%[1]d", k)
		}
		sb.WriteString("\n")
	}
	// Each event's key: its time in the range and its step's code.
	var names []string
	var codes strings.Builder
	for k, s := range fq.Steps {
		names = append(names, b.quote(s.Event))
		if k < n-1 {
			fmt.Fprintf(&codes, "if(name = %s, %d, ", b.quote(s.Event), code(k))
		}
	}
	fmt.Fprintf(&codes, "%d%s", code(n-1), strings.Repeat(")", n-1))
	where := rangeSQL(fq.Range) + " AND name IN (" + strings.Join(names, ", ") + ")"
	// A profile may pass step 1 only if a step-2 key follows its first
	// step-1 key (_c); the others (most) are one row of count _n.
	cand := "0"
	if n > 1 {
		cand = fmt.Sprintf("has(arraySlice(_c, indexOf(_c, %d)), %d)", code(0), code(1))
	}
	fmt.Fprintf(&sb, "FROM (SELECT sum(1) AS _n, any(_ks) AS _ks FROM (SELECT _p, _ks, arrayMap(x -> x %% 64, _ks) AS _c, %s AS _cand FROM (SELECT _p, arraySort(groupArray(_k)) AS _ks\n", cand)
	fmt.Fprintf(&sb, "FROM (SELECT _p, (timestamp - %d) * 64 + %s AS _k FROM %s)\n", from, codes.String(), b.fromSQL(linked, "timestamp, name", where))
	fmt.Fprintf(&sb, "GROUP BY _p HAVING countIf(_k %% 64 = %d) > 0)) GROUP BY _cand, if(_cand, _p, '')))", code(0))
	return sb.String(), true
}
