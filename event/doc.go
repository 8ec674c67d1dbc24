// Package event defines tandem's event record: the Segment-spec payload as it
// arrives, its validation into an [Event] or a [Problem] for the quarantine,
// the server-side fields (messageId, receivedAt, skew-corrected timestamp),
// and the compact binary [Record] that carries many events as one entry of
// the event log.
//
// The raw JSON of each event is kept byte for byte in [Event.Raw]; the fields
// that routing, storage and queries need are lifted out once, at ingest, so
// that no later stage has to parse JSON again.
package event
