package clickhouse

import "tandem/analytics"

// FunnelInSQL reports whether fq is answered by the funnel SQL (not the Go
// engine over Scan), for the tests to check that they exercise it.
func FunnelInSQL(fq *analytics.FunnelQuery) bool {
	_, ok := (&Backend{quote: func(s string) string { return s }}).funnelSQL(fq, false)
	return ok
}
