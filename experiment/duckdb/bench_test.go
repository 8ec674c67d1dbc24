package duckdb_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"tandem/eventstore/duckdb"
	"tandem/experiment"
)

// BenchmarkResultsMillion computes an experiment's results over 1,000,000
// exposed profiles in the embedded event store: each profile saw the
// experiment on the web as an anonymous visitor and is linked (identity
// resolution) to a customer number under which about 10 % bought after
// exposure and 5 % before it; 2,000,000 profile links, about 1,155,000 events.
// The data is generated inside DuckDB (INSERT … SELECT), not through the
// API. Sub-benchmarks set DuckDB's worker threads: `tandem serve` runs its
// store with 1.
//
//	go test -run '^$' -bench ResultsMillion -benchtime 3x ./experiment/duckdb/
func BenchmarkResultsMillion(b *testing.B) {
	ctx := context.Background()
	s, err := duckdb.Open(filepath.Join(b.TempDir(), "events.duckdb"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	db := s.DB()
	const profiles = 1_000_000
	base := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	start := time.Now()
	for _, q := range []string{
		"SET GLOBAL threads = 2",
		// Exposures: anonymous web visitors, 50/50 by hash, during 10 days.
		fmt.Sprintf(`INSERT INTO events (source_id, message_id, type, name, anonymous_id, timestamp, received_at, raw, key_hash)
			SELECT 'web', 'x' || i, 'track', 'Experiment Viewed', 'a' || i, ts, ts,
				'{"type":"track","event":"Experiment Viewed","anonymousId":"a' || i || '","properties":{"experiment_id":"hero","variation_id":"' ||
				(CASE WHEN hash(i * 3 + 1) %% 2 = 0 THEN 'control' ELSE 'new-hero' END) || '"}}', hash(i * 37 + 5)
			FROM (SELECT i, TIMESTAMPTZ '%s' + to_microseconds(((hash(i * 7 + 1) >> 11) %% 864000000000)::BIGINT) AS ts FROM range(0, %d) t(i))`,
			base.Format(time.RFC3339), profiles),
		// Purchases in the shop under the customer number: 10 % after
		// exposure (new-hero converts a little more), 5 % before.
		fmt.Sprintf(`INSERT INTO events (source_id, message_id, type, name, user_id, timestamp, received_at, raw, key_hash)
			SELECT 'shop', 'o' || i, 'track', 'Order Completed', 'u' || i, ts, ts,
				'{"type":"track","event":"Order Completed","userId":"u' || i || '","properties":{"revenue":' || (10 + hash(i * 5) %% 9000 / 100.0) || '}}', hash(i * 41 + 7)
			FROM (SELECT i, TIMESTAMPTZ '%s' + to_microseconds((((hash(i * 7 + 1) >> 11) %% 864000000000) + 3600000000 * (1 + hash(i) %% 48))::BIGINT) AS ts
				FROM range(0, %d) t(i) WHERE hash(i * 11 + 2) %% 100 < (CASE WHEN hash(i * 3 + 1) %% 2 = 0 THEN 10 ELSE 11 END))`,
			base.Format(time.RFC3339), profiles),
		fmt.Sprintf(`INSERT INTO events (source_id, message_id, type, name, user_id, timestamp, received_at, raw, key_hash)
			SELECT 'shop', 'p' || i, 'track', 'Order Completed', 'u' || i, ts, ts,
				'{"type":"track","event":"Order Completed","userId":"u' || i || '","properties":{"revenue":25}}', hash(i * 43 + 9)
			FROM (SELECT i, TIMESTAMPTZ '%s' - INTERVAL 1 DAY AS ts FROM range(0, %d) t(i) WHERE hash(i * 13 + 3) %% 100 < 5)`,
			base.Format(time.RFC3339), profiles),
		fmt.Sprintf(`INSERT INTO profile_links SELECT 'anonymous_id:a' || i, 'prf_' || i FROM range(0, %d) t(i)`, profiles),
		fmt.Sprintf(`INSERT INTO profile_links SELECT 'user_id:u' || i, 'prf_' || i FROM range(0, %d) t(i)`, profiles),
		"CHECKPOINT",
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("generated in %v", time.Since(start).Round(time.Millisecond))
	e := &experiment.Experiment{ID: "exp_bench", Key: "hero", ExposureEvent: "Experiment Viewed", ExperimentProperty: "experiment_id",
		VariationProperty: "variation_id", Control: "control",
		Variations: []experiment.Variation{{Key: "control", Weight: 1}, {Key: "new-hero", Weight: 1}},
		Metrics: []experiment.Metric{
			{Name: "purchase", Kind: experiment.Conversion, Event: "Order Completed", Window: experiment.Window(7 * 24 * time.Hour)},
			{Name: "revenue", Kind: experiment.Revenue, Event: "Order Completed", Property: "revenue", Window: experiment.Window(7 * 24 * time.Hour)},
		},
		From: base}
	to := base.Add(20 * 24 * time.Hour)
	e.To = &to
	agg := s.Experiments()
	for _, threads := range []int{2, 1} {
		b.Run(fmt.Sprintf("threads=%d", threads), func(b *testing.B) {
			if _, err := db.ExecContext(ctx, fmt.Sprintf("SET GLOBAL threads = %d", threads)); err != nil {
				b.Fatal(err)
			}
			var res *experiment.Results
			for b.Loop() {
				var err error
				if res, err = experiment.Analyze(ctx, agg, e, time.Now()); err != nil {
					b.Fatal(err)
				}
			}
			if res.Exposures.Units != profiles {
				b.Fatalf("%d units, want %d", res.Exposures.Units, profiles)
			}
			v := res.Metrics[0].Variations[1]
			b.Logf("units %d; purchase: control %.4f, new-hero %.4f, p %.3g, CUPED variance reduction %.3f",
				res.Exposures.Units, float64(res.Metrics[0].Variations[0].Mean), float64(v.Mean), float64(*v.PValue), float64(res.Metrics[0].CUPED.VarianceReduction))
		})
	}
}
