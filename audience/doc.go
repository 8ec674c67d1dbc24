// Package audience keeps computed traits: per-profile values (counts and
// sums over sliding windows, first and last values, the most frequent
// value, days since an event) defined through the API, kept current by a
// pipeline step after identity resolution, and backfilled from the event
// store when a trait is defined.
//
// State is kept per event key ([eventstore.ProfileKey]), not per profile,
// as the consent store keeps it: a profile's value combines the state of
// all its keys when it is read, so identity merges and unmerges need no
// rewriting (see docs/audiences.md for how each kind combines).
//
// Counts, sums and most-frequent tallies are kept in per-day (UTC)
// buckets, so a window of N days slides by dropping whole days; each
// event is counted once per trait (a redelivered event changes nothing).
//
// Audiences ([Audiences]) are profiles matching a rule ([ParseRule], an
// expr-lang expression over traits, computed traits and lifecycle stage),
// evaluated by a pipeline step for the profiles a batch touches and by a
// periodic sweep as time passes; each change is an Audience Entered or
// Audience Exited track event appended to the event log. See
// docs/audiences.md.
package audience
