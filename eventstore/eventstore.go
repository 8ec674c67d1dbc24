// Package eventstore keeps every processed event for queries: timelines,
// funnels, journeys. A [Store] is append-mostly and idempotent: an event is
// identified by its source and messageId, and storing it twice keeps one.
//
// Implementations: eventstore/duckdb (embedded default) and
// eventstore/clickhouse (a ClickHouse server, for scale-out). Every
// implementation must pass the contract suite in eventstore/storetest.
// Each also offers its analytics backend (analytics.Provider: the store
// says which tables the backend reads); the server asks the store for it.
package eventstore

import (
	"context"
	"errors"
	"time"

	"tandem/event"
)

// ErrNotFound is returned when no event matches.
var ErrNotFound = errors.New("eventstore: not found")

// ErrBadCursor is returned for a cursor this store did not issue.
var ErrBadCursor = errors.New("eventstore: bad cursor")

// Store keeps events.
type Store interface {
	// Append stores events atomically (all or none). An event whose
	// (SourceID, MessageID) is already stored, or repeated within events,
	// is stored once; the first one stored wins. It returns how many events
	// were newly stored. It keeps no reference to events or their slice
	// once it returns: the pipeline reuses their memory.
	Append(ctx context.Context, events []event.Event) (int, error)
	// Get returns the event with messageID; sourceID narrows it when not
	// empty. Several sources may use the same messageId: then all match.
	Get(ctx context.Context, sourceID, messageID string) ([]event.Event, error)
	// List returns events matching q, oldest first by event time (ties by
	// source and messageId), a page at a time.
	List(ctx context.Context, q Query) (Page, error)
	// LinkProfiles records, for each link, that the events whose
	// [ProfileKey] is Key belong to the profile ProfileID, replacing any
	// earlier link of Key; an empty ProfileID removes the link. Links are
	// followed when events are read, so events stored before a merge (or
	// an unmerge) follow it without being rewritten. Applying the same
	// links again changes nothing.
	LinkProfiles(ctx context.Context, links []ProfileLink) error
	// ProfileLinks returns the keys linked to profileID, sorted.
	ProfileLinks(ctx context.Context, profileID string) ([]string, error)
	// Erase deletes every event whose [ProfileKey] is one of keys, and the
	// profile links of those keys (a data-subject's erasure, GDPR Art.
	// 17). It returns how many events it deleted; when it returns, Get,
	// List and Count no longer see them. Erasing keys without events
	// deletes nothing and is no error.
	Erase(ctx context.Context, keys []string) (int64, error)
	// Expire deletes the events of source sourceID whose event time is
	// before before (retention: see docs/privacy.md) and returns how many;
	// when it returns, Get, List and Count no longer see them. Profile
	// links are kept (they name no event).
	Expire(ctx context.Context, sourceID string, before time.Time) (int64, error)
	// Count returns the number of stored events.
	Count(ctx context.Context) (int64, error)
	// Ping checks that the store can be reached, for readiness checks:
	// a server store (ClickHouse) asks its server, an embedded one checks
	// its handle. After Close it fails.
	Ping(ctx context.Context) error
	// Close releases the store.
	Close() error
}

// Stager is implemented by a store whose appends cost less in large
// transactions (the embedded DuckDB store writes a transaction of a whole
// row group straight into its file, a small one to its write-ahead log and
// then again at a checkpoint). The pipeline uses it while it has a backlog,
// acknowledging log records only once their events are committed: until
// then the log keeps them, so nothing acknowledged is lost.
type Stager interface {
	Store
	// Stage appends events like Append (duplicates of stored or staged
	// events are dropped, the first one wins) into a transaction the
	// store keeps open across calls and commits when it sees fit (for
	// DuckDB: when the table ends on a row group boundary). Staged events
	// are durable and visible only once committed. It returns how many
	// events were new, and pending: how many of the events passed to
	// Stage, the last ones in the order passed, are not committed yet;
	// the others are. After an error, none of the pending events of
	// earlier calls is stored.
	Stage(ctx context.Context, events []event.Event) (n, pending int, err error)
	// Commit commits the staged events. It fails if staged events were
	// lost (a commit by another writer that failed): then none of the
	// events pending after the last Stage is stored.
	Commit(ctx context.Context) error
}

// Preparer is implemented by a Stager that can do the work of staging
// that depends on the events alone (for DuckDB: cleaning strings,
// fingerprinting keys, reading each event's facts from its JSON) ahead of
// Stage and outside its lock: the pipeline prepares a batch in its decode
// stage, on another goroutine than the write stage's.
type Preparer interface {
	Stager
	// Prepare does the event-only work of staging events, which must
	// not change until StagePrepared has returned.
	Prepare(events []event.Event) Prepared
	// StagePrepared is Stage of the events prepared.
	StagePrepared(ctx context.Context, p Prepared) (n, pending int, err error)
}

// Prepared is the result of [Preparer.Prepare], for the same store's
// StagePrepared.
type Prepared interface {
	// Events returns the events prepared.
	Events() []event.Event
}

// Query filters List. Zero fields do not filter.
type Query struct {
	SourceID string
	Profile  string // the event's profile: see [ProfileOf]
	Type     string
	Name     string    // track event name, page or screen name
	From     time.Time // event time >= From
	To       time.Time // event time < To
	Limit    int       // page size; 0 means 100, capped at 1000
	Cursor   string    // opaque, from Page.Next
}

// Page sizes of List: see [Query.Limit].
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// PageSize is the number of events a List page holds at most: q.Limit,
// [DefaultLimit] when it is not positive, capped at [MaxLimit].
func (q Query) PageSize() int {
	if q.Limit <= 0 {
		return DefaultLimit
	}
	return min(q.Limit, MaxLimit)
}

// Page is one page of List.
type Page struct {
	Events []event.Event
	Next   string // cursor for the next page; empty when there is none
}

// ProfileLink says that the events whose [ProfileKey] is Key belong to the
// profile ProfileID.
type ProfileLink struct {
	Key       string
	ProfileID string
	// New says the writer knows of no earlier link of Key (identity
	// resolution meets the key for the first time), so a store may add the
	// link without looking for one to replace. It is a hint, not a
	// promise: when a link of Key exists after all (written by a
	// resolution that failed before its own commit), the store still keeps
	// one link per key, this one.
	New bool
}

// ProfileKey is the identity by which a stored event joins its profile:
// "user_id:" and the userId when the event has one, else "anonymous_id:"
// and the anonymousId. Identity resolution links keys to profiles with
// [Store.LinkProfiles].
func ProfileKey(userID, anonymousID string) string {
	if userID != "" {
		return "user_id:" + userID
	}
	return "anonymous_id:" + anonymousID
}

// ProfileOf is the profile an event belongs to, given the profile its key
// is linked to ("" when none): the linked profile, or, for an event whose
// key is not linked (not yet resolved), its userId, else its anonymousId.
// Query.Profile and the analytics count profiles this way.
func ProfileOf(linked, userID, anonymousID string) string {
	if linked != "" {
		return linked
	}
	if userID != "" {
		return userID
	}
	return anonymousID
}
