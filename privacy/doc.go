// Package privacy holds tandem's privacy-by-construction features: consent
// per purpose, data-subject requests ([Requests]) and the suppression list
// of erased people ([Suppressions]); the erasure itself, across every
// store, is carried out by package api (docs/privacy.md).
//
// # Consent
//
// A consent decision is one purpose (a name such as "Advertising" or
// "Analytics", matched without regard to case) granted or refused by a
// person at a moment. Decisions come from:
//
//   - events: context.consent.categoryPreferences, Segment's consent shape
//     ({"Advertising": true, "Analytics": false}); non-boolean values are
//     ignored. The pipeline calls [Store.Record] with each batch, after
//     identity resolution.
//   - Global Privacy Control: collection adds context.gpc: true to the
//     events of a request that carries the header Sec-GPC: 1, and
//     [Store.Record] turns that into a refusal of every purpose in
//     [Config].GPCPurposes (the sale and sharing purposes). Within one
//     event GPC wins over categoryPreferences.
//   - the management API: [Store.Set] (PUT /api/v1/profiles/{id}/consent).
//   - imports: a mapping's consent key sets
//     context.consent.categoryPreferences on the events it makes.
//
// Like traits, decisions are kept per event key (the event store's
// profile key: the userId, else the anonymousId; see
// [eventstore.ProfileKey]), not per profile, and combined when a profile
// is read. For each key and purpose the latest decision wins (event time,
// ties by messageId), so redelivered or late events change nothing they
// should not. A profile's consent for a purpose is the most recent
// decision among all its keys: after a merge the newer decision of either
// side wins, and an unmerge gives each side its own decisions back.
// Decisions from the API have no event key of their own; they are kept
// under the profile's first key (its user id if it has one).
//
// Every decision that differs from the latest known one for its key and
// purpose when it is processed is also appended to the history, which
// [Store.History] lists (newest first). An event repeating the consent
// already known adds nothing.
//
// When a profile has no decision for a purpose, [Config].Defaults gives
// the answer; a purpose with no default is refused. [Store.Allowed] (by
// profile id) and [Store.AllowedEvent] (by event) are the check a
// destination's route makes before each delivery.
package privacy
