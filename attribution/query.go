package attribution

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"tandem/analytics"
)

// Limits on queries.
const (
	MaxLookback = 365 * 24 * time.Hour
	MaxRange    = 2 * 366 * 24 * time.Hour
)

// The dimensions credits are given by.
const (
	ByChannel  = "channel"
	ByCampaign = "campaign"
	BySource   = "source" // the source (tool) a touch came through
	ByTool     = "tool"   // the tool a touch is credited to (Config.Tools, else its source)
)

// Dimensions lists the dimensions.
var Dimensions = []string{ByChannel, ByCampaign, BySource, ByTool}

// Conversion is what converts: events named Event, worth their Value
// property (a number or a string holding one; 0 when missing), or 0
// each when Value is empty.
type Conversion struct {
	Event string `json:"event" yaml:"event"`
	Value string `json:"value,omitempty" yaml:"value"`
}

// Query asks how conversions in a range are credited to the touches
// before them.
type Query struct {
	Conversion Conversion `json:"conversion"`
	// Lookback is how far before a conversion its touches count (default
	// the configured one, 30 days).
	Lookback analytics.Duration `json:"lookback"`
	Models   []string           `json:"models,omitempty"` // default all
	By       string             `json:"by,omitempty"`     // default channel
	// HalfLife is the time-decay model's half-life (default the
	// configured one, 7 days).
	HalfLife analytics.Duration `json:"halfLife"`
	analytics.Range
}

func fieldErr(field, format string, args ...any) error {
	return &analytics.FieldError{Field: field, Message: fmt.Sprintf(format, args...)}
}

// Validate checks q, filling its defaults from c and now.
func (q *Query) Validate(now time.Time, c *Config) error {
	if err := validEvent(q.Conversion.Event); err != nil {
		return fieldErr("conversion.event", "%s", err)
	}
	if q.Conversion.Value != "" {
		if err := validName(q.Conversion.Value); err != nil {
			return fieldErr("conversion.value", "%s", err)
		}
	}
	if !q.Lookback.IsSet() {
		q.Lookback = analytics.Seconds(int64(c.Lookback / time.Second))
	}
	if err := q.Lookback.Check("lookback"); err != nil {
		return err
	}
	if q.Lookback.Micros <= 0 || q.Lookback.Std() > MaxLookback {
		return fieldErr("lookback", "must be more than 0 and at most 365d")
	}
	if !q.HalfLife.IsSet() {
		q.HalfLife = analytics.Seconds(int64(c.HalfLife / time.Second))
	}
	if err := q.HalfLife.Check("halfLife"); err != nil {
		return err
	}
	if q.HalfLife.Micros <= 0 {
		return fieldErr("halfLife", "must be more than 0")
	}
	if len(q.Models) == 0 {
		q.Models = slices.Clone(Models)
	}
	for i, m := range q.Models {
		f := "models[" + strconv.Itoa(i) + "]"
		if !slices.Contains(Models, m) {
			return fieldErr(f, "want one of %s", strings.Join(Models, ", "))
		}
		if slices.Index(q.Models, m) != i {
			return fieldErr(f, "%q is given twice", m)
		}
	}
	switch q.By {
	case "":
		q.By = ByChannel
	case ByChannel, ByCampaign, BySource, ByTool:
	default:
		return fieldErr("by", "want one of %s", strings.Join(Dimensions, ", "))
	}
	if err := q.Range.Fill(now); err != nil {
		return err
	}
	if q.To.Sub(q.From.Time) > MaxRange {
		return fieldErr("from", "the range may span at most 732 days")
	}
	return nil
}

func validEvent(s string) error {
	if strings.TrimSpace(s) == "" {
		return fmt.Errorf("must not be empty")
	}
	if strings.ContainsRune(s, 0) {
		return fmt.Errorf("must not contain NUL")
	}
	return nil
}

// validName checks a property name: it becomes a quoted JSON path key.
func validName(s string) error {
	if len(s) > 200 {
		return fmt.Errorf("at most 200 bytes")
	}
	for _, r := range s {
		if r < 0x20 || r == '"' || r == '\\' || r == 0x7f {
			return fmt.Errorf("must not contain quotes, backslashes or control characters")
		}
	}
	return nil
}

// Money is an amount in hundredths, written in JSON as an exact decimal
// number (1234 as 12.34).
type Money int64

// MarshalJSON writes m as a decimal number with two places at most.
func (m Money) MarshalJSON() ([]byte, error) { return []byte(m.String()), nil }

func (m Money) String() string { return decimal(int64(m), 100, 2) }

// UnmarshalJSON reads a number, rounded to hundredths.
func (m *Money) UnmarshalJSON(b []byte) error {
	var f float64
	if err := json.Unmarshal(b, &f); err != nil {
		return err
	}
	*m = Money(math.Round(f * 100))
	return nil
}

// Share is a number of conversions in millionths, written in JSON as an
// exact decimal number (333334 as 0.333334).
type Share int64

// MarshalJSON writes s as a decimal number with six places at most.
func (s Share) MarshalJSON() ([]byte, error) { return []byte(s.String()), nil }

func (s Share) String() string { return decimal(int64(s), 1e6, 6) }

// UnmarshalJSON reads a number, rounded to millionths.
func (s *Share) UnmarshalJSON(b []byte) error {
	var f float64
	if err := json.Unmarshal(b, &f); err != nil {
		return err
	}
	*s = Share(math.Round(f * 1e6))
	return nil
}

func decimal(v, unit int64, places int) string {
	neg := v < 0
	if neg {
		v = -v
	}
	s := strconv.FormatInt(v/unit, 10)
	if f := v % unit; f != 0 {
		frac := strconv.FormatInt(f, 10)
		frac = strings.Repeat("0", places-len(frac)) + frac
		s += "." + strings.TrimRight(frac, "0")
	}
	if neg {
		s = "-" + s
	}
	return s
}

// Credit is what one key earned under a model.
type Credit struct {
	Key         string `json:"key"`
	Conversions Share  `json:"conversions"`
	Value       Money  `json:"value"`
}

// ModelResult is one model's credits, the largest value first (then
// conversions, then key).
type ModelResult struct {
	Model   string   `json:"model"`
	Credits []Credit `json:"credits"`
}

// Result answers a Query. Each model's credits sum to Conversions and
// Value exactly.
type Result struct {
	Conversions int64         `json:"conversions"`
	Value       Money         `json:"value"`
	By          string        `json:"by"`
	From        time.Time     `json:"from"`
	To          time.Time     `json:"to"`
	Models      []ModelResult `json:"models"`
	// NoTouch counts the conversions with no touch in their lookback
	// window (credited to the key "(none)").
	NoTouch int64 `json:"noTouch"`
	// Journeys are the Markov chain's journeys (0 without that model):
	// converting (one per conversion) and not.
	Journeys *JourneyCounts `json:"journeys,omitempty"`
	// RemovalEffects are the Markov model's removal effect per key.
	RemovalEffects map[string]float64 `json:"removalEffects,omitempty"`
}

// JourneyCounts are the journeys the Markov chain was built from.
type JourneyCounts struct {
	Converting    int64 `json:"converting"`
	NonConverting int64 `json:"nonConverting"`
}
