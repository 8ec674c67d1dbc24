// Package imports takes offline and legacy touchpoints — call-centre
// contacts, field-service jobs, shop purchases, exports of old systems —
// into tandem as events, from CSV (RFC 4180 with a header; any one-character
// delimiter; UTF-8, Latin-1 or Windows-1252) or NDJSON files.
//
// A [Mapping], a small YAML or JSON document, says how a row becomes an
// event: its name (fixed or from a column), its time (column, format, time
// zone), its identifiers (written where identity resolution finds them:
// context.traits.email, context.traits.phone, context.traits.<type>, plus
// userId from a user_id column; without a userId the anonymousId is
// "<type>:<value>" of the first identifier), its traits and properties, and
// the channel and department of the touchpoint. NDJSON without a mapping is
// read as Segment events, one a line.
//
// Safe by construction:
//
//   - Each row's messageId is derived from the source, the event's type
//     and name, and the row's key (the mapping's key columns, else the
//     row's bytes), so importing a row again stores nothing new: the
//     pipeline keeps one event per (source, messageId).
//   - The [Service] appends rows to the event log in chunks through the
//     same group committer as live collection, several chunks in flight,
//     and moves an import's resume point only past chunks that are
//     durable, in order. The resume point (rows, line, byte offset and
//     the CRC-64 of the data up to it) is saved in the state store; sending
//     the same data again skips what is before it, after checking the CRC,
//     so an interrupted import resumes where it stopped.
//   - A row that cannot become an event (bad date, no identifier, wrong
//     column count, bad CSV quoting…) is reported with its line, column
//     and reason in the import's error report and kept, with its original
//     bytes, in the quarantine under a key derived from its messageId, so
//     a resumed or repeated import never adds it twice. More failed rows
//     than the import's maxErrors stop it cleanly after the row that
//     crossed the limit.
//
// Imported events then go through the pipeline like live ones (identity,
// consent, audiences) with their original event time.
//
// The package's tables live in the state store; apply [Migrations] with
// [statestore.DB.Migrate]. The command-line client is imports/importcmd.
package imports
