// Package api is tandem's management API under /api/v1: users, sources and
// their approvals, events, the quarantine, and the OpenAPI document that
// describes them. Every call is authenticated with a bearer token and
// authorised by the caller's role (see [tandem/access.Can]); every error is
// the one JSON shape of [tandem/apierror].
package api
