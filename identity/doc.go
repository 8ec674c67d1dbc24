// Package identity joins events into customer profiles: identity
// resolution over every identifier an event carries (user_id,
// anonymous_id, e-mail, phone, and any type the configuration declares),
// under rules that can be explained and undone.
//
// # Model
//
// Each event contributes the set of its identifiers (normalised: e-mail
// lower-cased, phone numbers in E.164; blocked values left out). The
// identity graph connects identifiers seen together; a connected
// component is resolved into profiles by replaying its distinct
// identifier sets in (event time, source, messageId) order under the
// [Rules]: identifier types have a priority and a per-profile limit, and
// when adding an event's identifiers would break a limit (or a manual
// decision), the event's identifier of the lowest priority is dropped
// from the merge and the decision is recorded. The partition is therefore
// a function of the set of events, the rules and the manual decisions,
// never of the order events arrived in; a late event re-resolves the one
// component it touches.
//
// A profile's id is a keyed hash of the identifier that started it, so
// it is the same whichever node resolves it; an id that disappears in a
// merge still finds the surviving profile ([Store.Profile] follows it).
//
// # Explain and unmerge
//
// [Store.Explain] replays a profile's component and returns every step:
// which event started it, which identifier joined through which event,
// which profiles merged through which shared identifiers, which
// identifiers the rules kept out and why. [Store.Unmerge] records a manual
// [Decision] (keep the two sides of a merge apart, or keep one identifier
// in a profile of its own) that every later resolution respects, then
// resolves again.
//
// # Events follow their profile
//
// After each change the [Linker] (the event store) is told the profile of
// every user_id and anonymous_id whose profile changed: the event store
// keys each event by one of those ([eventstore.ProfileKey]) and follows the
// link at read time, so events stored before a merge or an unmerge follow
// it without being rewritten.
//
// The [Store] keeps its tables in a [statestore.DB]; apply [Migrations]
// first. The contract suite in identity/identitytest runs against every
// state store backend.
package identity
