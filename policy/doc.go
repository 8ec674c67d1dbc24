// Package policy is tandem's decision rights: who may propose each kind of
// change (a source, a destination, a tool's data categories, a tracking
// plan, identity rules, lifecycle stages, retention, consent defaults,
// users), whose approval it needs and who is informed, and the change
// requests that hold a change until every role it needs has approved it.
//
// The rules ([Rules], from a [Config]: the config file's policy key) start
// from one of three presets (it-led, marketing-led, joint), with rules by
// data category on top: by default a tool handling personal data needs
// IT's approval, and one handling sensitive data privacy's too.
// [Rules.Assess] tells what a proposed change needs; when the proposer's
// own role is all it needs, it takes effect directly.
//
// Otherwise it becomes a change request ([Store.Propose]): kept with its
// diff, who proposed it, the approvals it needs and has. [Store.Decide]
// records each role's decision; the last approval (or a rejection) has
// the kind's [Applier] carry the change out (or drop it), so a change
// takes effect only when approved. Rejected changes are kept with the
// reason. Every proposal and decision is in the audit log, with the
// change's id, in the same transaction.
//
// Four kinds are about the node's settings rather than a tool
// ([SettingKinds]: identity rules, lifecycle stages, retention, consent
// defaults): their approved values are kept by [Store.PutSetting], one
// per kind, and override the config file's on every node. A change of
// kind users that grants admin needs an admin's approval whatever the
// rules say ([Rules.AssessUser]).
//
// The [Store] keeps its tables in a [statestore.DB]; apply [Migrations]
// with [statestore.DB.Migrate] before use.
package policy
