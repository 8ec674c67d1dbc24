package analytics_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"tandem/analytics"
)

// FuzzQueries decodes outside JSON into each query, as the API does, and
// validates it: no panic; a refusal is a FieldError naming a field; an
// accepted query has its defaults filled (names, a forward range, no
// negative window) and is accepted again unchanged.
func FuzzQueries(f *testing.F) {
	for _, seed := range []string{
		`{"steps":[{"event":"A"},{"event":"B","where":[{"property":"plan","op":"eq","value":"pro"}]}],"window":"7d","from":"2024-01-01T00:00:00Z","to":"2024-02-01T00:00:00Z"}`,
		`{"steps":[{"event":"A"}],"window":-5}`,
		`{"steps":[],"window":"1h","breakdown":{"trait":"plan"}}`,
		`{"within":"1d","from":"2024-03-01T00:00:00Z","to":"2024-04-01T00:00:00Z"}`,
		`{"start":{"event":"Ad Clicked"},"steps":2,"direction":"previous"}`,
		`{"cohort":{"event":"Signed Up"},"return":{"event":"Login"},"period":"week","periods":8,"timezone":"Europe/Berlin"}`,
		`{"from":"yesterday"}`,
	} {
		f.Add([]byte(seed))
	}
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	stages := []analytics.Stage{{Name: "awareness", Department: "marketing", Events: []string{"Ad Clicked"}}, {Name: "purchase", Department: "sales", Events: []string{"Order Completed"}}}
	f.Fuzz(func(t *testing.T, body []byte) {
		check := func(kind string, q any, validate func() error) {
			dec := json.NewDecoder(bytes.NewReader(body))
			dec.DisallowUnknownFields()
			if dec.Decode(q) != nil {
				return // the API answers 400 invalid_json / invalid_type
			}
			err := validate()
			if err != nil {
				var fe *analytics.FieldError
				if !errors.As(err, &fe) || fe.Field == "" {
					t.Fatalf("%s: refusal %v does not name a field", kind, err)
				}
				return
			}
			if err := validate(); err != nil {
				t.Fatalf("%s: a validated query is refused on the second look: %v", kind, err)
			}
		}
		var fq analytics.FunnelQuery
		check("funnel", &fq, func() error { return fq.Validate(now) })
		if len(fq.Steps) > 0 && fq.Validate(now) == nil {
			if fq.Window.Micros < 0 || !fq.From.Before(fq.To.Time) {
				t.Fatalf("accepted funnel with window %v, range %v..%v", fq.Window, fq.From, fq.To)
			}
			for i, s := range fq.Steps {
				if s.Name == "" {
					t.Fatalf("accepted funnel step %d has no name", i)
				}
			}
		}
		var jq analytics.JourneyQuery
		check("journey", &jq, func() error { return jq.Validate(now, stages) })
		var pq analytics.PathsQuery
		check("paths", &pq, func() error { return pq.Validate(now) })
		var rq analytics.RetentionQuery
		check("retention", &rq, func() error { return rq.Validate(now) })
	})
}
