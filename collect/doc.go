// Package collect is tandem's Segment-compatible collection API: the
// /v1/identify, /v1/track, /v1/page, /v1/screen, /v1/group, /v1/alias,
// /v1/batch and /v1/import endpoints, and what browser SDKs need besides
// (web.go): analytics.js's short paths and settings, the analytics-next
// bundle (package websdk), RudderStack's /sourceConfig, beacon and metrics
// paths, CORS on all of them with per-source allowed origins (cors.go),
// and the context.ip and context.userAgent the server adds (client.go).
//
// A request is refused whole, with nothing stored, only when it cannot be
// taken at all (credentials, approval, an unreadable body, limits,
// overload). Otherwise every event in it — valid or not — is written to the
// event log and fsync'd before the 200 reply; invalid events are marked for
// the quarantine and listed in the reply, so one bad event never costs its
// good neighbours (Segment SDKs drop a whole batch on a 4xx). A refusal
// before the body was read to its end closes the connection only after
// reading the rest (drain.go), so the client reads the answer, not a reset.
package collect
