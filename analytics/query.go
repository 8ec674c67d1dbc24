package analytics

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Limits on queries.
const (
	MaxSteps     = 20  // funnel steps
	MaxWhere     = 10  // property filters per condition
	MaxPathSteps = 10  // path depth
	MaxPeriods   = 60  // retention periods
	MaxSample    = 100 // sample profile ids per hand-off
	// MaxStageEvents bounds a lifecycle's events in all (each becomes a
	// condition of a scan).
	MaxStageEvents = 60
	DefaultRange   = 30 * 24 * time.Hour
	defaultSample  = 10
)

// FieldError is a bad query; Field names the JSON field at fault, as
// "steps[1].event".
type FieldError struct {
	Field   string
	Message string
}

func (e *FieldError) Error() string { return "analytics: " + e.Field + ": " + e.Message }

func fieldErr(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Message: fmt.Sprintf(format, args...)}
}

// Condition selects events: those named Event (a track event's name, or a
// page's or screen's name) whose properties pass every filter of Where.
type Condition struct {
	Event string   `json:"event"`
	Where []Filter `json:"where,omitempty"`
}

// Filter compares one property of an event (properties.<Property>) with
// Value. Ops: eq, neq (as strings, or as numbers when Value is a number),
// in (Value an array), contains (substring), gt, gte, lt, lte (numbers),
// exists, not_exists (Value unused). A missing property fails every op
// but neq and not_exists.
type Filter struct {
	Property string `json:"property"`
	Op       string `json:"op"`
	Value    any    `json:"value,omitempty"`
}

// Ops lists the filter operators.
var Ops = []string{"eq", "neq", "in", "contains", "gt", "gte", "lt", "lte", "exists", "not_exists"}

func (c *Condition) validate(field string) error {
	if c.Event == "" {
		return fieldErr(field+".event", "must not be empty")
	}
	if strings.ContainsRune(c.Event, 0) {
		return fieldErr(field+".event", "must not contain NUL")
	}
	if len(c.Where) > MaxWhere {
		return fieldErr(field+".where", "at most %d filters", MaxWhere)
	}
	for i := range c.Where {
		if err := c.Where[i].validate(fmt.Sprintf("%s.where[%d]", field, i)); err != nil {
			return err
		}
	}
	return nil
}

func (f *Filter) validate(field string) error {
	if err := validName(f.Property); err != nil {
		return fieldErr(field+".property", "%s", err)
	}
	switch f.Op {
	case "eq", "neq":
		if !scalar(f.Value) {
			return fieldErr(field+".value", "must be a string, number or boolean")
		}
	case "in":
		vs, ok := f.Value.([]any)
		if !ok || len(vs) == 0 {
			return fieldErr(field+".value", "must be a non-empty array")
		}
		for _, v := range vs {
			if !scalar(v) {
				return fieldErr(field+".value", "must hold strings, numbers or booleans")
			}
		}
	case "contains":
		if v, ok := f.Value.(string); !ok || strings.ContainsRune(v, 0) {
			return fieldErr(field+".value", "must be a string (without NUL)")
		}
	case "gt", "gte", "lt", "lte":
		if _, ok := f.Value.(float64); !ok {
			return fieldErr(field+".value", "must be a number")
		}
	case "exists", "not_exists":
	default:
		return fieldErr(field+".op", "want one of %s", strings.Join(Ops, ", "))
	}
	return nil
}

func scalar(v any) bool {
	switch v := v.(type) {
	case string:
		return !strings.ContainsRune(v, 0)
	case float64, bool:
		return true
	}
	return false
}

// validName checks a property or trait name: it becomes a quoted JSON path
// key, so quotes, backslashes and control characters are refused.
func validName(s string) error {
	if s == "" {
		return fmt.Errorf("must not be empty")
	}
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

// ScalarString is the text a filter compares for a scalar JSON value, the
// same text a JSON path extraction gives: strings as is, numbers in their
// shortest form, booleans as true/false.
func ScalarString(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case bool:
		return strconv.FormatBool(v)
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	return ""
}

// Duration is a length of time in a query: a JSON number of seconds or a
// string such as "90m", "36h" or "7d" (d is 24 hours). Internally it is
// kept in microseconds, the precision of stored event times.
type Duration struct {
	Micros int64
	set    bool
	bad    string // why the JSON value is not a duration; Validate reports it
}

// Seconds returns d as a Duration of n seconds.
func Seconds(n int64) Duration { return Duration{Micros: n * 1e6, set: true} }

// Std is d as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d.Micros) * time.Microsecond }

// UnmarshalJSON reads a number of seconds or a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	// Errors are kept for Validate, which names the field.
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	switch v := v.(type) {
	case float64:
		if math.Abs(v) > 1e12 {
			*d = Duration{set: true, bad: "out of range"}
			return nil
		}
		*d = Duration{Micros: int64(math.Round(v * 1e6)), set: true}
		return nil
	case string:
		x, err := ParseDuration(v)
		if err != nil {
			*d = Duration{set: true, bad: err.Error()}
			return nil
		}
		*d = x
		return nil
	}
	*d = Duration{set: true, bad: "want seconds or a duration such as \"7d\""}
	return nil
}

// check reports a bad or negative duration as field's error.
func (d Duration) check(field string) error {
	if d.bad != "" {
		return fieldErr(field, "%s", d.bad)
	}
	if d.Micros < 0 {
		return fieldErr(field, "must not be negative")
	}
	return nil
}

// IsSet reports whether d was given (in JSON or by [Seconds]).
func (d Duration) IsSet() bool { return d.set }

// Check reports a bad or negative duration as field's error (a
// [*FieldError]), for queries of other packages that take a Duration.
func (d Duration) Check(field string) error { return d.check(field) }

// MarshalJSON writes seconds.
func (d Duration) MarshalJSON() ([]byte, error) {
	return []byte(strconv.FormatFloat(float64(d.Micros)/1e6, 'f', -1, 64)), nil
}

// ParseDuration reads "7d", "36h", "90m", "1.5h", "1d12h"; d means 24
// hours.
func ParseDuration(s string) (Duration, error) {
	neg := strings.HasPrefix(s, "-")
	rest := strings.TrimPrefix(s, "-")
	var days float64
	if i := strings.IndexByte(rest, 'd'); i >= 0 {
		n, err := strconv.ParseFloat(rest[:i], 64)
		if err != nil {
			return Duration{}, fmt.Errorf("%q is not a duration such as \"7d\" or \"36h\"", s)
		}
		days, rest = n, rest[i+1:]
	}
	var std time.Duration
	if rest != "" {
		var err error
		if std, err = time.ParseDuration(rest); err != nil || std < 0 {
			return Duration{}, fmt.Errorf("%q is not a duration such as \"7d\" or \"36h\"", s)
		}
	}
	us := int64(math.Round(days*86400e6)) + std.Microseconds()
	if neg {
		us = -us
	}
	return Duration{Micros: us, set: true}, nil
}

// Time is an instant in a query, RFC 3339 in JSON. A bad value is kept
// for Validate, which names the field.
type Time struct {
	time.Time
	bad bool
}

// At wraps t.
func At(t time.Time) Time { return Time{Time: t} }

// UnmarshalJSON reads an RFC 3339 string.
func (t *Time) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		if x, err := time.Parse(time.RFC3339Nano, s); err == nil {
			*t = Time{Time: x}
			return nil
		}
	}
	*t = Time{bad: true}
	return nil
}

// Range is the time range a query reads: events with From <= time < To.
// Zero To means now; zero From means To minus 30 days.
type Range struct {
	From Time `json:"from"`
	To   Time `json:"to"`
}

func (r *Range) fill(now time.Time) error {
	if r.From.bad {
		return fieldErr("from", "not an RFC 3339 time")
	}
	if r.To.bad {
		return fieldErr("to", "not an RFC 3339 time")
	}
	if r.To.IsZero() {
		r.To = At(now)
	}
	if r.From.IsZero() {
		r.From = At(r.To.Add(-DefaultRange))
	}
	if !r.From.Before(r.To.Time) {
		return fieldErr("to", "must be after from")
	}
	return nil
}

// Fill checks r and fills its defaults relative to now (zero To: now;
// zero From: To minus 30 days), as every query's Validate does; for
// queries of other packages that embed a Range.
func (r *Range) Fill(now time.Time) error { return r.fill(now) }

// FromMicros and ToMicros are the range in microseconds since the epoch.
func (r Range) FromMicros() int64 { return r.From.UnixMicro() }
func (r Range) ToMicros() int64   { return r.To.UnixMicro() }

// Breakdown splits a funnel by a value of each profile: Property, the
// property of the profile's first step-1 event in the range; or Trait, the
// trait (traits.<Trait> of an identify, or context.traits.<Trait> of any
// event) on the profile's latest event before To that carries it.
type Breakdown struct {
	Property string `json:"property,omitempty"`
	Trait    string `json:"trait,omitempty"`
}

// FunnelStep is one step of a funnel: a condition and a display name.
type FunnelStep struct {
	Condition
	Name string `json:"name,omitempty"` // defaults to Event
}

// FunnelQuery asks how many profiles went through Steps in order.
type FunnelQuery struct {
	Steps     []FunnelStep `json:"steps"`
	Window    Duration     `json:"window"`
	Strict    bool         `json:"strict,omitempty"`
	Breakdown *Breakdown   `json:"breakdown,omitempty"`
	Range
}

// Validate checks q, filling defaults (range, step names) relative to now.
func (q *FunnelQuery) Validate(now time.Time) error {
	if len(q.Steps) == 0 {
		return fieldErr("steps", "at least one step is required")
	}
	if len(q.Steps) > MaxSteps {
		return fieldErr("steps", "at most %d steps", MaxSteps)
	}
	for i := range q.Steps {
		f := fmt.Sprintf("steps[%d]", i)
		if err := q.Steps[i].validate(f); err != nil {
			return err
		}
		if q.Steps[i].Name == "" {
			q.Steps[i].Name = q.Steps[i].Event
		}
	}
	if !q.Window.set {
		return fieldErr("window", "is required (seconds, or a duration such as \"7d\")")
	}
	if err := q.Window.check("window"); err != nil {
		return err
	}
	if err := q.Breakdown.validate(); err != nil {
		return err
	}
	return q.Range.fill(now)
}

func (b *Breakdown) validate() error {
	if b == nil {
		return nil
	}
	switch {
	case b.Property != "" && b.Trait != "":
		return fieldErr("breakdown", "give property or trait, not both")
	case b.Property != "":
		if err := validName(b.Property); err != nil {
			return fieldErr("breakdown.property", "%s", err)
		}
	case b.Trait != "":
		if err := validName(b.Trait); err != nil {
			return fieldErr("breakdown.trait", "%s", err)
		}
	default:
		return fieldErr("breakdown", "give property or trait")
	}
	return nil
}

// Overlapping reports whether one event could satisfy two steps (two steps
// name the same event).
func (q *FunnelQuery) Overlapping() bool {
	seen := map[string]bool{}
	for _, s := range q.Steps {
		if seen[s.Event] {
			return true
		}
		seen[s.Event] = true
	}
	return false
}

// Conditions returns the steps' conditions.
func (q *FunnelQuery) Conditions() []Condition {
	out := make([]Condition, len(q.Steps))
	for i, s := range q.Steps {
		out[i] = s.Condition
	}
	return out
}

// FunnelStepResult is one step of a funnel's answer.
type FunnelStepResult struct {
	Name     string `json:"name"`
	Profiles int64  `json:"profiles"`
	// Conversion is Profiles over the first step's; FromPrevious over the
	// previous step's (1 for the first step; 0 when the base is 0).
	Conversion   float64 `json:"conversion"`
	FromPrevious float64 `json:"fromPrevious"`
	// MedianSeconds is the median time from the previous step to this one
	// over the profiles that reached this step; nil for the first step or
	// when none did.
	MedianSeconds *float64 `json:"medianSecondsFromPrevious"`
}

// FunnelResult answers a FunnelQuery.
type FunnelResult struct {
	Steps     []FunnelStepResult `json:"steps"`
	Breakdown []FunnelBreakdown  `json:"breakdown,omitempty"`
}

// FunnelBreakdown is the funnel of the profiles with one breakdown value
// (nil: the profile has none).
type FunnelBreakdown struct {
	Value *string            `json:"value"`
	Steps []FunnelStepResult `json:"steps"`
}

// Stage is one lifecycle stage: reached by any of Events, owned by
// Department.
type Stage struct {
	Name       string   `json:"name" yaml:"name"`
	Department string   `json:"department" yaml:"department"`
	Events     []string `json:"events" yaml:"events"`
}

// JourneyQuery asks how profiles move through the lifecycle stages.
type JourneyQuery struct {
	// Stages defaults to the configured lifecycle.
	Stages []Stage `json:"stages,omitempty"`
	// Within is the hand-off time: a profile that reached a stage and has
	// not reached the next within it is stuck at that hand-off. Default 14d.
	Within Duration `json:"within"`
	Sample int      `json:"sample,omitempty"` // profile ids per hand-off, default 10
	Range
}

// Validate checks q, filling defaults; stages are the configured ones.
func (q *JourneyQuery) Validate(now time.Time, stages []Stage) error {
	if len(q.Stages) == 0 {
		q.Stages = stages
	}
	if err := ValidateStages(q.Stages, "stages"); err != nil {
		return err
	}
	if !q.Within.set {
		q.Within = Seconds(14 * 86400)
	}
	if err := q.Within.check("within"); err != nil {
		return err
	}
	if q.Sample == 0 {
		q.Sample = defaultSample
	}
	if q.Sample < 0 || q.Sample > MaxSample {
		return fieldErr("sample", "must be from 1 to %d", MaxSample)
	}
	return q.Range.fill(now)
}

// ValidateStages checks a lifecycle, naming fields under prefix.
func ValidateStages(stages []Stage, prefix string) error {
	if len(stages) == 0 {
		return fieldErr(prefix, "at least one stage is required")
	}
	if len(stages) > 30 {
		return fieldErr(prefix, "at most 30 stages")
	}
	total := 0
	for _, s := range stages {
		total += len(s.Events)
	}
	if total > MaxStageEvents {
		return fieldErr(prefix, "at most %d events over all stages", MaxStageEvents)
	}
	names := map[string]bool{}
	for i, s := range stages {
		f := fmt.Sprintf("%s[%d]", prefix, i)
		if s.Name == "" {
			return fieldErr(f+".name", "must not be empty")
		}
		if names[s.Name] {
			return fieldErr(f+".name", "%q is used twice", s.Name)
		}
		names[s.Name] = true
		if s.Department == "" {
			return fieldErr(f+".department", "must not be empty")
		}
		if len(s.Events) == 0 {
			return fieldErr(f+".events", "at least one event is required")
		}
		for j, e := range s.Events {
			if e == "" || strings.ContainsRune(e, 0) {
				return fieldErr(fmt.Sprintf("%s.events[%d]", f, j), "must not be empty or contain NUL")
			}
		}
	}
	return nil
}

// StageResult is one stage of a journey answer.
type StageResult struct {
	Name       string `json:"name"`
	Department string `json:"department"`
	Profiles   int64  `json:"profiles"`
	// Times from the previous stage over the profiles that reached both,
	// this one no earlier; nil for the first stage or when none did.
	MedianSeconds *float64 `json:"medianSecondsFromPrevious"`
	P90Seconds    *float64 `json:"p90SecondsFromPrevious"`
}

// Handoff is the profiles stuck between two consecutive stages.
type Handoff struct {
	From           string   `json:"from"`
	To             string   `json:"to"`
	FromDepartment string   `json:"fromDepartment"`
	ToDepartment   string   `json:"toDepartment"`
	Boundary       string   `json:"boundary"` // "marketing→sales"
	Reached        int64    `json:"reached"`  // reached From at least Within before the range's end
	Stuck          int64    `json:"stuck"`
	Sample         []string `json:"sample"` // stuck profile ids, smallest first
}

// Gap sums the hand-offs at one department boundary.
type Gap struct {
	Boundary string   `json:"boundary"`
	Stuck    int64    `json:"stuck"`
	Sample   []string `json:"sample"`
}

// JourneyResult answers a JourneyQuery.
type JourneyResult struct {
	Stages   []StageResult `json:"stages"`
	Handoffs []Handoff     `json:"handoffs"`
	Gaps     []Gap         `json:"gaps"`
}

// PathsQuery asks for the most frequent paths after (or before) an event.
type PathsQuery struct {
	Start     Condition `json:"start"`
	Direction string    `json:"direction,omitempty"` // "next" (default) or "previous"
	Steps     int       `json:"steps,omitempty"`     // default 3
	Limit     int       `json:"limit,omitempty"`     // edges, heaviest first; default 50
	Range
}

// Validate checks q, filling defaults.
func (q *PathsQuery) Validate(now time.Time) error {
	if err := q.Start.validate("start"); err != nil {
		return err
	}
	switch q.Direction {
	case "":
		q.Direction = "next"
	case "next", "previous":
	default:
		return fieldErr("direction", "want next or previous")
	}
	if q.Steps == 0 {
		q.Steps = 3
	}
	if q.Steps < 1 || q.Steps > MaxPathSteps {
		return fieldErr("steps", "must be from 1 to %d", MaxPathSteps)
	}
	if q.Limit == 0 {
		q.Limit = 50
	}
	if q.Limit < 1 || q.Limit > 1000 {
		return fieldErr("limit", "must be from 1 to 1000")
	}
	return q.Range.fill(now)
}

// PathNode is an event name at a depth from the start (0 the start; 1, 2,
// … after it, or -1, -2, … before it).
type PathNode struct {
	ID       string `json:"id"` // "depth:name"
	Name     string `json:"name"`
	Depth    int    `json:"depth"`
	Profiles int64  `json:"profiles"`
}

// PathEdge is a weighted link between two nodes (profiles that went from
// Source to Target).
type PathEdge struct {
	Source   string `json:"source"`
	Target   string `json:"target"`
	Profiles int64  `json:"profiles"`
}

// PathsResult answers a PathsQuery in a shape ready for a Sankey diagram.
type PathsResult struct {
	Nodes []PathNode `json:"nodes"`
	Edges []PathEdge `json:"edges"`
}

// RetentionQuery asks what share of a cohort comes back.
type RetentionQuery struct {
	Start    Condition `json:"start"`
	Return   Condition `json:"return"`
	Period   string    `json:"period,omitempty"`  // day (default), week (from Monday) or month
	Periods  int       `json:"periods,omitempty"` // later periods to report, default 7
	Timezone string    `json:"timezone,omitempty"`
	Range

	Location *time.Location `json:"-"`
}

// Validate checks q, filling defaults.
func (q *RetentionQuery) Validate(now time.Time) error {
	if err := q.Start.validate("start"); err != nil {
		return err
	}
	if err := q.Return.validate("return"); err != nil {
		return err
	}
	switch q.Period {
	case "":
		q.Period = "day"
	case "day", "week", "month":
	default:
		return fieldErr("period", "want day, week or month")
	}
	if q.Periods == 0 {
		q.Periods = 7
	}
	if q.Periods < 1 || q.Periods > MaxPeriods {
		return fieldErr("periods", "must be from 1 to %d", MaxPeriods)
	}
	if q.Timezone == "" {
		q.Timezone = "UTC"
	}
	loc, err := time.LoadLocation(q.Timezone)
	if err != nil || q.Timezone == "Local" {
		return fieldErr("timezone", "not an IANA time zone name such as Europe/Berlin")
	}
	q.Location = loc
	return q.Range.fill(now)
}

// Cohort is the profiles whose first start event fell in one period.
type Cohort struct {
	Start    time.Time `json:"start"` // the period's start in the query's time zone
	Profiles int64     `json:"profiles"`
	// Returned[k-1] profiles had a return event in the k-th period after
	// the cohort's; Share is Returned over Profiles.
	Returned []int64   `json:"returned"`
	Share    []float64 `json:"share"`
}

// RetentionResult answers a RetentionQuery.
type RetentionResult struct {
	Cohorts []Cohort `json:"cohorts"`
}
