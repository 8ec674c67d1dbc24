package privacy

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
)

// Rate is how a consent purpose is decided across everyone who decided
// it: the count of event keys (a profile's user ids and anonymous ids,
// see [Keys]) whose latest decision grants it and refuses it. A person
// known under two identifiers who decided on both counts twice; one who
// never decided is not counted (Default says what applies to them).
type Rate struct {
	Purpose string `json:"purpose"`
	Granted int64  `json:"granted"`
	Refused int64  `json:"refused"`
	// Share is Granted/(Granted+Refused), null when no one decided.
	Share *float64 `json:"share"`
	// Default is the configured default for those who did not decide,
	// null when the configuration has none.
	Default *bool `json:"default"`
}

// Rates returns every purpose decided or configured, sorted by name:
// aggregates only, no identifier. One GROUP BY over the current decisions
// (privacy_consent keeps one row per key and purpose).
func (s *Store) Rates(ctx context.Context) ([]Rate, error) {
	rows, err := s.db.Query(ctx, `SELECT purpose, granted, COUNT(*) FROM privacy_consent GROUP BY purpose, granted`)
	if err != nil {
		return nil, fmt.Errorf("privacy: consent rates: %w", err)
	}
	defer rows.Close()
	by := map[string]*Rate{} // lower-cased purpose
	name := func(p string) *Rate {
		k := strings.ToLower(p)
		r, ok := by[k]
		if !ok {
			r = &Rate{Purpose: p}
			by[k] = r
		}
		return r
	}
	// Configured names first: they are how the purposes are spelt.
	for p, v := range s.Config().Defaults {
		d := v
		name(p).Default = &d
	}
	for rows.Next() {
		var p string
		var g, n int64
		if err := rows.Scan(&p, &g, &n); err != nil {
			return nil, fmt.Errorf("privacy: consent rates: %w", err)
		}
		r := name(p)
		if g != 0 {
			r.Granted += n
		} else {
			r.Refused += n
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("privacy: consent rates: %w", err)
	}
	out := make([]Rate, 0, len(by))
	for _, r := range by {
		if t := r.Granted + r.Refused; t > 0 {
			sh := float64(r.Granted) / float64(t)
			r.Share = &sh
		}
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b Rate) int { return cmp.Compare(strings.ToLower(a.Purpose), strings.ToLower(b.Purpose)) })
	return out, nil
}
