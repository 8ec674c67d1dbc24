// Package analytics answers journey questions over stored events: funnels,
// lifecycle journeys with hand-off gaps, paths and retention. It defines
// the queries and their answers, their exact semantics, and a Go engine
// that computes every answer from profiles' ordered events.
//
// # Shape
//
// A [Backend] answers the four queries ([FunnelQuery], [JourneyQuery],
// [PathsQuery], [RetentionQuery]); the API calls it after the query's
// Validate. [Engine] is a Backend written once in Go over a [Source]: any
// store that can stream each profile's events in time order, each marked
// with the query's conditions it satisfies ([ScanSpec], [Sequence],
// [Point]), gets every answer from it. A store whose SQL is faster for a
// query wraps the Engine and overrides that method: analytics/duckdb
// answers funnels and journeys in one DuckDB query each and uses the
// Engine (over its own Scan) for paths, retention, and funnels whose
// steps repeat an event.
//
// Adding a backend for a new event store: implement [Source] — filter
// events to the range and the conditions' names, compute the condition
// bitmask per event (property filters as [Filter.Test] defines them:
// evaluate it with [Test.Eval] or render it with [Test.SQL]), resolve each
// event's profile as eventstore.ProfileOf (profile link, else user id,
// else anonymous id), order by profile and time — and embed an [Engine]
// over it. The backend takes the store's handle and table names, not the
// store; the store builds it over its own tables and offers it as a
// [Provider], which is how the server finds it. Then move queries into
// native SQL one at a time where it pays, and run the scripts
// (analytics/scripttest) and a cross-check with analytics/reftest against
// it, as analytics/duckdb and analytics/clickhouse do.
//
// # Funnels
//
// A funnel's steps are conditions ([Condition]: an event name, optionally
// property filters). For each profile, its events in the range are taken
// in time order. A chain is a sequence of distinct events e1, e2, …, ek
// where ei satisfies step i, each event is no earlier than the one before
// (strictly later with Strict), and ek is at most Window after e1
// (inclusive, compared at microseconds). The profile counts at the deepest
// step any chain reaches. This is ClickHouse's windowFunnel(window) in its
// default mode (ties ordered by step number; strict as strict_increase)
// with one rule of tandem's own: one event satisfies at most one step of a
// chain, so a funnel A → A needs two A events.
//
// The time between steps is measured on one chain per profile: the chain
// that starts at the latest step-1 event from which the profile's deepest
// step is reached, taking each later step at its earliest possible time.
// The answer's median is over the profiles that reached the step.
//
// [Funnel] computes one profile in a single pass that keeps, per step, the
// latest start of a chain that has reached it (a later start is never
// worse: it leaves more of the window); events of one instant are taken
// together, matched to consecutive steps so that one event serves one
// step. analytics/reftest holds a brute-force reference it is
// cross-checked against.
//
// # Journeys
//
// A lifecycle is a list of [Stage]s, each reached by any of its events and
// owned by a department. A profile reaches a stage at its first such event
// in the range; the time from the previous stage counts when the profile
// reached both, this one no earlier. A profile that reached stage k at t,
// with t+Within no later than the range's end, is stuck at the hand-off
// k → k+1 when it reached k+1 never, before t, or after t+Within;
// hand-offs are summed per department boundary ("marketing→sales") with a
// sample of the smallest stuck profile ids.
//
// # Paths and retention
//
// Paths start at each profile's first (direction "next") or last
// ("previous") start event in the range and follow the next (previous)
// Steps named events (track, page, screen); node "d:name" is a name at
// depth d, edges are weighted by profiles. Retention puts a profile in the
// cohort of the period (day, week from Monday, month, in the query's time
// zone) of its first start event, and counts it returned in the k-th
// later period when it has a return event in that period, in the range.
package analytics
