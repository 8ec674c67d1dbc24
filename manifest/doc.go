// Package manifest is configuration as code: the declarative file that
// `tandem apply` reads and `tandem export` writes (tandem.yaml).
//
// A [Manifest] declares resources of a node — sources, destinations,
// users, tracking plans, computed traits, audiences, and the identity
// rules and lifecycle stages — each matched to what the node has by a
// stable key, its name (a tracking plan by its source's name). [Parse]
// reads a file strictly: an unknown key, a value of the wrong type or an
// unknown enumerated value is an [Error] naming the file, the line and
// the key (`tandem.yaml:12: destinations[0].type: unknown type
// "webhok"`). [Diff] compares a manifest with a node's [State] and gives
// the [Plan]: what to create, change or delete, field by field. [Export]
// writes a [State] as a manifest that [Parse] reads back unchanged.
//
// A key a resource leaves out is not managed: apply neither sends nor
// compares it (on creation the server's default applies), so a file may
// declare as little as it cares about. Inside a destination's config,
// likewise, only the keys given are compared. Secrets (a webhook's
// secret, a segment destination's write key) are never read back from a
// node: export writes a reference to an environment variable, such as
// `${CRM_HOOK_SECRET}`, which apply expands when it sends the value; a
// secret is not compared.
//
// The package knows the management API's shapes (field names are the
// API's) but sends nothing: package manifestcmd is the command that talks
// to a node.
package manifest
