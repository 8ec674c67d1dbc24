// Package experiment runs A/B tests on the unified customer: experiment
// definitions in the state store, deterministic assignment of resolved
// profiles to variations, and results computed from the event store with
// the statistics of experiment/stats.
//
// # Units and events
//
// The unit is the resolved profile (eventstore.ProfileOf: the profile an
// event's key is linked to, else its userId, else its anonymousId), so a
// customer's exposures and conversions on the web, in an app, in the shop
// or at the call centre count once, together.
//
// An exposure is an event named ExposureEvent ("Experiment Viewed" by
// default) whose properties.<ExperimentProperty> ("experiment_id") is the
// experiment's key and properties.<VariationProperty> ("variation_id") one
// of its variations, at From <= time < End (End: the experiment's To, or
// now). A profile's first exposure gives its variation and its exposure
// time t0.
//
// # Metrics
//
// For each exposed profile, each metric's value counts the metric's
// events at t0 <= time < t0+Window (no Window: any time after t0) and
// before End:
//
//   - conversion: 1 when there is one, else 0;
//   - count: how many;
//   - revenue: the sum of properties.<Property> (a number, or a string
//     holding one; anything else counts 0).
//
// Events before t0 never count (a customer who bought before seeing the
// page did not convert because of it). The same value over the lookback
// before exposure, [t0-Window, t0) (14 days without a Window), is the
// pre-exposure value CUPED uses.
//
// # Multiple exposures
//
// A profile exposed to more than one variation is contaminated and
// excluded from every metric, and the results report how many were
// excluded. Exposures after the profile's first conversion on the first
// metric (its first event of that metric at or after t0, within the
// metric's window) do not count: once the outcome is in, a later
// exposure cannot have changed it. Profiles of one person that were
// assigned separately before identification and merged afterwards are
// contaminated when their variations differ (see docs/experiments.md).
package experiment

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"time"

	"tandem/analytics"
	"tandem/statestore"
)

// Defaults of an experiment's exposure event.
const (
	DefaultExposureEvent      = "Experiment Viewed"
	DefaultExperimentProperty = "experiment_id"
	DefaultVariationProperty  = "variation_id"
	// DefaultLookback is the pre-exposure period of a metric without a
	// window, for CUPED.
	DefaultLookback = 14 * 24 * time.Hour
)

// Limits of a definition.
const (
	MaxVariations = 10
	MaxMetrics    = 10
)

// Metric kinds.
const (
	Conversion = "conversion"
	Count      = "count"
	Revenue    = "revenue"
)

// Experiment is an experiment's definition.
type Experiment struct {
	ID   string `json:"id"`
	Key  string `json:"key"`
	Name string `json:"name"`
	// ExposureEvent names the exposure event; ExperimentProperty and
	// VariationProperty are its properties holding the experiment's key
	// and the variation.
	ExposureEvent      string      `json:"exposureEvent"`
	ExperimentProperty string      `json:"experimentProperty"`
	VariationProperty  string      `json:"variationProperty"`
	Variations         []Variation `json:"variations"`
	Control            string      `json:"control"`
	// Holdout is the share of traffic (0 to 0.99) that assignment keeps
	// out of the experiment: it sees no variation and is not exposed.
	Holdout   float64    `json:"holdout"`
	Metrics   []Metric   `json:"metrics"`
	From      time.Time  `json:"from"`
	To        *time.Time `json:"to"`
	CreatedBy string     `json:"createdBy"`
	CreatedAt time.Time  `json:"createdAt"`
}

// Variation is one arm with its planned share of the traffic (weights are
// relative: 50/50 and 1/1 are the same split).
type Variation struct {
	Key    string  `json:"key"`
	Weight float64 `json:"weight"`
}

// Metric is what an experiment measures per exposed profile.
type Metric struct {
	Name     string   `json:"name"`
	Kind     string   `json:"kind"`
	Event    string   `json:"event"`
	Property string   `json:"property,omitempty"`
	Window   Duration `json:"window"`
	// Guardrail marks a metric that must not get worse; it is reported
	// like the others, flagged.
	Guardrail bool `json:"guardrail,omitempty"`
}

var keyRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)

func fieldErr(field, format string, args ...any) error {
	return &statestore.FieldError{Field: field, Message: fmt.Sprintf(format, args...)}
}

// Normalize fills defaults and validates a definition, naming the JSON
// field at fault in a *statestore.FieldError.
func (e *Experiment) Normalize(now time.Time) error {
	if !keyRE.MatchString(e.Key) {
		return fieldErr("key", "want 1 to 128 letters, digits, '_', '.' or '-', starting with a letter or digit")
	}
	if e.Name == "" {
		e.Name = e.Key
	}
	if len(e.Name) > 200 {
		return fieldErr("name", "at most 200 characters")
	}
	if e.ExposureEvent == "" {
		e.ExposureEvent = DefaultExposureEvent
	}
	if e.ExperimentProperty == "" {
		e.ExperimentProperty = DefaultExperimentProperty
	}
	if e.VariationProperty == "" {
		e.VariationProperty = DefaultVariationProperty
	}
	for f, v := range map[string]string{"exposureEvent": e.ExposureEvent, "experimentProperty": e.ExperimentProperty, "variationProperty": e.VariationProperty} {
		if len(v) > 200 {
			return fieldErr(f, "at most 200 characters")
		}
	}
	if len(e.Variations) < 2 || len(e.Variations) > MaxVariations {
		return fieldErr("variations", "want 2 to %d variations", MaxVariations)
	}
	seen := map[string]bool{}
	for i, v := range e.Variations {
		if !keyRE.MatchString(v.Key) {
			return fieldErr(fmt.Sprintf("variations[%d].key", i), "want 1 to 128 letters, digits, '_', '.' or '-'")
		}
		if seen[v.Key] {
			return fieldErr(fmt.Sprintf("variations[%d].key", i), "repeats %q", v.Key)
		}
		seen[v.Key] = true
		if !(v.Weight > 0) || math.IsInf(v.Weight, 0) {
			return fieldErr(fmt.Sprintf("variations[%d].weight", i), "must be a positive number")
		}
	}
	if e.Control == "" {
		e.Control = e.Variations[0].Key
	}
	if !seen[e.Control] {
		return fieldErr("control", "%q is not one of the variations", e.Control)
	}
	if e.Holdout < 0 || e.Holdout > 0.99 || math.IsNaN(e.Holdout) {
		return fieldErr("holdout", "want a share from 0 to 0.99")
	}
	if len(e.Metrics) < 1 || len(e.Metrics) > MaxMetrics {
		return fieldErr("metrics", "want 1 to %d metrics", MaxMetrics)
	}
	names := map[string]bool{}
	for i, m := range e.Metrics {
		f := fmt.Sprintf("metrics[%d]", i)
		if m.Name == "" {
			e.Metrics[i].Name = m.Event
			m.Name = m.Event
		}
		if names[m.Name] {
			return fieldErr(f+".name", "repeats %q", m.Name)
		}
		names[m.Name] = true
		switch m.Kind {
		case Conversion, Count:
			if m.Property != "" {
				return fieldErr(f+".property", "only a revenue metric sums a property")
			}
		case Revenue:
			if m.Property == "" {
				return fieldErr(f+".property", "a revenue metric names the property it sums")
			}
		default:
			return fieldErr(f+".kind", "want conversion, count or revenue")
		}
		if m.Event == "" || len(m.Event) > 200 {
			return fieldErr(f+".event", "want an event name of 1 to 200 characters")
		}
		if len(m.Property) > 200 {
			return fieldErr(f+".property", "at most 200 characters")
		}
		if m.Window.bad != "" {
			return fieldErr(f+".window", "%s", m.Window.bad)
		}
		if m.Window.D < 0 {
			return fieldErr(f+".window", "must not be negative")
		}
	}
	// Event times are stored to the microsecond: so are the bounds.
	if e.From.IsZero() {
		e.From = now
	}
	e.From = e.From.UTC().Truncate(time.Microsecond)
	if e.To != nil {
		to := e.To.UTC().Truncate(time.Microsecond)
		e.To = &to
	}
	if e.To != nil && !e.To.After(e.From) {
		return fieldErr("to", "must be after from")
	}
	return nil
}

// Lookback is the pre-exposure period of m for CUPED.
func (m Metric) Lookback() time.Duration {
	if m.Window.D > 0 {
		return m.Window.D
	}
	return DefaultLookback
}

// End is the end of the experiment's analysis at now: its To, or now
// when it has none or it is later.
func (e *Experiment) End(now time.Time) time.Time {
	if e.To != nil && e.To.Before(now) {
		return *e.To
	}
	return now.UTC().Truncate(time.Microsecond)
}

// Weights are the planned weights in the order of Variations.
func (e *Experiment) Weights() []float64 {
	w := make([]float64, len(e.Variations))
	for i, v := range e.Variations {
		w[i] = v.Weight
	}
	return w
}

// Duration is a metric's window: in JSON a number of seconds or a string
// such as "36h" or "7d" (as the analytics queries take it); 0 for none.
type Duration struct {
	D   time.Duration
	bad string // why the JSON value is no duration; Normalize reports it
}

// Window returns a Duration of d.
func Window(d time.Duration) Duration { return Duration{D: d} }

// UnmarshalJSON reads seconds or a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	switch v := v.(type) {
	case nil:
		*d = Duration{}
	case float64:
		if math.Abs(v) > 1e9 {
			*d = Duration{bad: "out of range"}
			return nil
		}
		*d = Duration{D: time.Duration(math.Round(v*1e6)) * time.Microsecond}
	case string:
		x, err := analytics.ParseDuration(v)
		if err != nil {
			*d = Duration{bad: err.Error()}
			return nil
		}
		*d = Duration{D: x.Std()}
	default:
		*d = Duration{bad: "want seconds or a duration such as \"7d\""}
	}
	return nil
}

// MarshalJSON writes seconds.
func (d Duration) MarshalJSON() ([]byte, error) {
	return []byte(strconv.FormatFloat(d.D.Seconds(), 'f', -1, 64)), nil
}
