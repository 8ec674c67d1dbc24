// Package attribution credits conversions to the touchpoints that led to
// them, and weighs each tool's share against its cost.
//
// A touch is an event that says where a customer came from (a page view,
// or a track or screen event with a channel or a campaign); its channel
// follows a documented taxonomy that configuration extends ([Config]).
// [Config.Attribute] runs the models (first and last touch, linear, time
// decay, position 40/20/40 and the Markov-chain removal effect) over the
// journeys of resolved profiles that an event store offers as a [Source];
// every model splits a conversion's value exactly, by largest remainder in
// hundredths. [Config.Report] joins the credits with the catalogue's
// monthly costs into cost per conversion and return on spend per tool and
// channel, and lists the tools that earned nothing. docs/attribution.md
// describes the taxonomy, the models and the report.
package attribution
