// Package eventlog is tandem's durable event log: the place an event is
// written before the collection API answers 200. A [Log] is an append-only,
// ordered sequence of records (see [tandem/event.Record]); processing reads it
// through named durable [Consumer]s.
//
// Implementations: eventlog/jetstream (NATS JetStream, embedded in-process by
// default or an external cluster). Every implementation must pass the
// contract suite in eventlog/logtest.
package eventlog

import (
	"context"
	"errors"
	"time"
)

// ErrUnavailable is returned (wrapped) when the log cannot take or give
// records right now: storage full, fsync failure, server unreachable. The
// collection API answers such a failure with 503 and Retry-After.
var ErrUnavailable = errors.New("eventlog: unavailable")

// ErrClosed is returned after Close.
var ErrClosed = errors.New("eventlog: closed")

// ErrTooLarge is returned by Append for a record over the log's limit.
var ErrTooLarge = errors.New("eventlog: record too large")

// ErrOverloaded is returned (wrapped) by [Committer.Append] when the bytes
// already waiting for the log are at the committer's budget: nothing was
// queued, and trying again once the log has caught up may succeed. The
// collection API answers it with 503 and Retry-After.
var ErrOverloaded = errors.New("eventlog: overloaded")

// Log is a durable, ordered log of records.
type Log interface {
	// Append stores rec and returns its sequence number. When Append
	// returns nil the record is on stable storage (fsync'd): a crash of the
	// process or machine right after cannot lose it.
	Append(ctx context.Context, rec []byte) (seq uint64, err error)
	// MaxRecordBytes is the largest record Append takes.
	MaxRecordBytes() int
	// Consumer opens the named durable consumer, creating it at the start
	// of the log if it does not exist. Records acknowledged by an earlier
	// consumer of the same name are not delivered again.
	Consumer(ctx context.Context, name string) (Consumer, error)
	// Ready returns nil when the log can take writes.
	Ready(ctx context.Context) error
	// Close releases the log. Records already appended stay durable.
	Close() error
}

// Message is one record read from the log.
type Message struct {
	Seq  uint64 // the sequence number Append returned
	Data []byte
}

// Consumer reads records in order. Delivery is at least once: a record not
// acknowledged (because the reader crashed, say) is delivered again, so
// readers must make their effects idempotent.
type Consumer interface {
	// Fetch returns up to max records, waiting up to wait for the first.
	// It returns an empty slice and nil error when none arrived in time.
	Fetch(ctx context.Context, max int, wait time.Duration) ([]Message, error)
	// Ack acknowledges records so they are not delivered again. Ack and
	// Release read only each Message's Seq: a reader may drop the bytes
	// of records it holds.
	Ack(ctx context.Context, msgs ...Message) error
	// Release gives fetched records back unacknowledged, for a reader
	// that gave up on them: they are delivered again at once, before the
	// records after them. A record neither acknowledged nor released is
	// kept from other readers while its reader lives (see the ack wait).
	Release(ctx context.Context, msgs ...Message) error
	// Pending is the number of records appended but not yet acknowledged
	// by this consumer: its lag.
	Pending(ctx context.Context) (uint64, error)
	// Backlog is Pending with the time the oldest of those records was
	// appended: how far behind the consumer is.
	Backlog(ctx context.Context) (Backlog, error)
	// Close stops reading; the consumer's position is kept.
	Close() error
}

// Backlog describes the records a consumer has not acknowledged yet.
type Backlog struct {
	// Records is the number of records appended and not acknowledged
	// (as [Consumer.Pending]).
	Records uint64
	// Oldest is when the oldest of them was appended; zero when Records
	// is 0.
	Oldest time.Time
}
