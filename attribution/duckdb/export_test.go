package duckdb

import "tandem/attribution"

// ByFacts is src reading every touch's facts as strings, as it does when
// two sets of facts hash alike.
func ByFacts(src attribution.Source) attribution.Source {
	c := *src.(*Source)
	c.facts = true
	return &c
}
