// Package clickhouse answers analytics queries over the ClickHouse event
// store's tables, keeping to the SQL of ClickHouse 18.16. It knows no
// store: eventstore/clickhouse hands it its connection, table names and
// literal quoting ([Tables]) and offers the result as its Analytics
// (analytics.Provider).
//
// # How it reads
//
// [Backend.Scan] is an [analytics.Source]: one GROUP BY query per bucket
// of profiles returns each profile's events as parallel arrays (times,
// condition masks, and names or JSON where needed), so the server never
// sorts the whole range and the client holds one profile at a time. An
// event's profile is eventstore.ProfileOf its profile key's latest link
// (argMax over profile_links' versions, joined with ANY LEFT JOIN), its
// user id and its anonymous id; the join is left out while no link
// exists. Profiles are split into buckets by a hash of the resolved
// profile (never of the key, which would cut a merged profile in two),
// one bucket per BucketRows matching events, which bounds the server's
// memory as well.
//
// Property filters are evaluated in Go on the event's JSON, with
// [analytics.Test.Eval] (the one definition of the operators): 18.16 has no
// JSON path functions (JSONExtract came later), and its visitParam
// functions find a key anywhere in the document, not under properties.
// Only events whose name belongs to a filtered condition bring their JSON
// back; the masks of unfiltered conditions are computed in SQL.
//
// # Native paths, and where ClickHouse's own functions do not fit
//
// Journeys reduce in SQL: each profile's first time at each stage is a
// minIf per stage, and the client adds those rows to an
// [analytics.JourneyAgg], exactly the engine's rules. That query is not
// bucketed: the server keeps a fixed-size state per profile. Funnels
// without property filters, breakdowns or two steps naming one event are
// one SQL query too (funnel.go): each profile's events as a sorted array
// of keys (time and step), reduced with 18.16's array functions (only for
// the profiles that may pass step 1; the rest are counted in one row),
// and only the counts and middle values come back. Other funnels, paths and
// retention go through the embedded [analytics.Engine] over Scan.
//
// ClickHouse's windowFunnel is not used. In 18.16 it differs from tandem's
// funnel in exactly these ways: it takes DateTime or UInt32 times (whole
// seconds: events in one second are ties, and the window's edge is at
// seconds, not microseconds); it sorts events by time alone, keeping
// arrival order among equal times (tandem takes them in step order); it
// gives an event to the first condition it satisfies (so a step repeating
// the previous step's event is never reached); it has no strict mode; and
// it returns only the depth, no step times for the medians. Where none of
// these apply it gives the same depths (TestFunnelAgainstClickHouse).
// Fed whole seconds × steps + the step's code as its UInt32 time, two
// windowFunnels bound the depth from both sides (docs/benchmarks.md
// #ch-funnel3), but that query alone costs more CPU than the funnel's
// 1.2× target, and the medians need every profile's keys past step 1
// anyway, so the funnel SQL does not use them.
// `tandem bench funnel --events clickhouse://…` times it next to the
// backend as a baseline.
package clickhouse
