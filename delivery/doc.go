// Package delivery sends events to destinations: the tools (webhooks,
// and later other types) that act on the data tandem collects.
//
// Destinations are catalogued and approved in package governance; this
// package runs the delivery of every approved one. A [Manager] reads the
// destinations from the state store (at once after a change through this
// node's API, else every Poll) and, per approved destination, runs a
// worker:
//
//   - its own durable consumer on the event log ([ConsumerName]), so a
//     slow or failing destination never holds up another, nor the
//     pipeline;
//   - events received before the destination's latest approval are
//     skipped (the rule for events that arrive while it waits: they are
//     never delivered to it), then the destination's filter and mapping
//     apply;
//   - events go to ordered lanes by profile key (userId, else
//     anonymousId): one profile's events are sent one after the other, in
//     log order, while other lanes go on;
//   - a failed send is retried with exponential backoff and jitter (or
//     after the destination's Retry-After) when it may heal: network
//     errors, timeouts, 408, 429, 5xx; other answers, and addresses the
//     SSRF guard refuses, are not retried. After [RetryPolicy.MaxAttempts]
//     the events go to the dead-letter store with the last error, and
//     [Manager.Replay] sends them again;
//   - a log record is acknowledged once each of its events is delivered or
//     dead-lettered: a crash before that delivers it again after restart
//     (at least once; receivers deduplicate by messageId).
//
// Outbound calls go through package delivery/guard. New destination types
// implement [Type] and are listed in New.
package delivery
