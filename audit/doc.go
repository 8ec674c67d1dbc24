// Package audit is tandem's audit log: an append-only, tamper-evident record
// of every change made through the management API (who, what, before and
// after, which change request) and of every read of personal data (who
// looked at whose profile, events or quarantined payloads).
//
// Entries live in the state store (SQLite or PostgreSQL; apply
// [Migrations] with [statestore.DB.Migrate]). Each [Entry] has a sequence
// number with no gaps and a hash: the SHA-256 of its canonical encoding
// (see [Hash]), which includes the hash of the entry before it. Editing an
// entry breaks its own hash; deleting one leaves a gap in the sequence;
// moving one breaks the link to its neighbour. [Log.Verify] (and `tandem
// audit verify`) walks the chain and names the first broken entry.
//
// Appends are serialised through a single-row head table updated in the
// same transaction as the entries it counts, so the chain stays linear with
// any number of writers on any number of nodes: PostgreSQL queues them on
// the head row's lock, SQLite on its single writer. A transaction that
// rolls back rolls its sequence numbers back with it, so a gap always means
// a deletion.
//
// Nothing secret and no personal data in clear belongs in an entry: actors
// and subjects are ids (a user id, a profile id), never names or e-mail
// addresses. As a last line of defence [Log.Append] replaces the values of
// object keys that name secrets or contact data (token, writeKey, secret,
// password, email, phone, …) in Before and After with a short digest
// (see [Digest]).
package audit
