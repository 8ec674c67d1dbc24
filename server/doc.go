// Package server wires tandem together for `tandem serve`: it opens the
// event log, state store and event store (embedded under the data directory
// unless server backends are configured), bootstraps the first admin, starts
// the processing pipeline, and serves the collection API, the management API
// and the operations endpoints until it is told to stop.
package server
