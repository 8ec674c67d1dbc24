package event

import (
	"time"
)

// Types are the Segment-spec event types tandem accepts.
var Types = []string{"identify", "track", "page", "screen", "group", "alias"}

// MaxEventBytes is the largest single event accepted (Segment's 32 KB).
const MaxEventBytes = 32 * 1024

// MaxRequestBytes is the largest request body accepted, after gzip decoding
// (Segment's 500 KB).
const MaxRequestBytes = 500 * 1024

// MaxBatchEvents is the most events one request may carry.
const MaxBatchEvents = 2500

// Event is one valid event with its server-side fields filled in.
type Event struct {
	SourceID          string    // the source whose write key sent it
	MessageID         string    // client's messageId, or generated at ingest
	Type              string    // identify, track, page, screen, group, alias
	Name              string    // track: event; page/screen: name
	UserID            string    // userId, may be empty
	AnonymousID       string    // anonymousId, may be empty
	GroupID           string    // group: groupId
	PreviousID        string    // alias: previousId
	Timestamp         time.Time // event time, corrected for client clock skew
	OriginalTimestamp time.Time // the client's own timestamp, zero if none was sent
	SentAt            time.Time // the client's sentAt, zero if none was sent
	ReceivedAt        time.Time // when the server received the request
	Raw               []byte    // the event's JSON object exactly as sent
}

// Problem is an event that failed validation. It is kept, with its reason, in
// the quarantine; it is never dropped.
type Problem struct {
	SourceID   string
	MessageID  string // messageId if the event carried a usable one
	ReceivedAt time.Time
	Index      int    // position in the request (0 for single-event endpoints)
	Code       string // machine-readable reason, e.g. missing_field
	Field      string // the offending field, e.g. batch[3].userId
	Message    string // human-readable reason
	Raw        []byte // the event's bytes as sent
	Type       string // the endpoint's type for single-event endpoints (/v1/track…); "" when the event names its own
}
