package privacy

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"tandem/governance"
	"tandem/metrics"
)

// Retention is the configured maximum age of stored data (the config
// file's retention key; docs/privacy.md, retention). An event's age is
// the shortest of the ages that apply to it: its source's (by name or
// id), each data category its source declares, and the default. Zero
// ages do not apply; with none, events are kept until erased.
type Retention struct {
	Default    time.Duration            `yaml:"default"`
	Sources    map[string]time.Duration `yaml:"sources"`
	Categories map[string]time.Duration `yaml:"categories"`
	// ConsentHistory is how long past consent decisions stay in the
	// history (the current decision of each purpose always stays).
	ConsentHistory time.Duration `yaml:"consent_history"`
	// Every is how often expired data is removed; default [DefaultRetentionEvery].
	Every time.Duration `yaml:"every"`
}

// DefaultRetentionEvery is how often retention runs when Every is not set.
const DefaultRetentionEvery = time.Hour

// Validate checks the ages: none negative; every, when set, at least a
// second.
func (r Retention) Validate() error {
	check := func(key string, d time.Duration) error {
		if d < 0 {
			return &ValidationError{Key: key, Message: fmt.Sprintf("%v is negative", d)}
		}
		return nil
	}
	if err := check("retention.default", r.Default); err != nil {
		return err
	}
	for _, k := range slices.Sorted(maps.Keys(r.Sources)) {
		if strings.TrimSpace(k) == "" {
			return &ValidationError{Key: "retention.sources", Message: "a source name must not be empty"}
		}
		if err := check("retention.sources."+k, r.Sources[k]); err != nil {
			return err
		}
	}
	for _, k := range slices.Sorted(maps.Keys(r.Categories)) {
		if strings.TrimSpace(k) == "" {
			return &ValidationError{Key: "retention.categories", Message: "a category must not be empty"}
		}
		if err := check("retention.categories."+k, r.Categories[k]); err != nil {
			return err
		}
	}
	if err := check("retention.consent_history", r.ConsentHistory); err != nil {
		return err
	}
	if r.Every != 0 && r.Every < time.Second {
		return &ValidationError{Key: "retention.every", Message: fmt.Sprintf("%v is under a second", r.Every)}
	}
	return nil
}

// Enabled reports whether any age is configured.
func (r Retention) Enabled() bool {
	return r.Shortest() > 0 || r.ConsentHistory > 0
}

// Shortest is the shortest age of events configured (default, sources,
// categories), 0 for none. The event log keeps records no longer than
// this: a record may hold several sources' events.
func (r Retention) Shortest() time.Duration {
	var min time.Duration
	for _, d := range append(slices.Collect(maps.Values(r.Sources)), append(slices.Collect(maps.Values(r.Categories)), r.Default)...) {
		if d > 0 && (min == 0 || d < min) {
			min = d
		}
	}
	return min
}

// LogAge is how long the event log keeps records under r, given
// --log-max-age: that, or the shortest age when that is shorter (a
// record may hold several sources' events, so the log follows the
// strictest); 0 for ever.
func (r Retention) LogAge(flag time.Duration) time.Duration {
	if s := r.Shortest(); s > 0 && (flag == 0 || s < flag) {
		return s
	}
	return flag
}

// AgeOf is the maximum age of src's events and what sets it: "source",
// "category NAME" or "default"; 0 and "" when none applies.
func (r Retention) AgeOf(src governance.Source) (time.Duration, string) {
	age, basis := r.Default, "default"
	if age == 0 {
		basis = ""
	}
	consider := func(d time.Duration, b string) {
		if d > 0 && (age == 0 || d < age) {
			age, basis = d, b
		}
	}
	for _, c := range src.DataCategories {
		for k, d := range r.Categories {
			if strings.EqualFold(k, c) {
				consider(d, "category "+c)
			}
		}
	}
	for k, d := range r.Sources {
		if k == src.ID || strings.EqualFold(strings.TrimSpace(k), src.Name) {
			consider(d, "source")
		}
	}
	return age, basis
}

// Interval is how often the schedule runs: Every, or [DefaultRetentionEvery].
func (r Retention) Interval() time.Duration {
	if r.Every > 0 {
		return r.Every
	}
	return DefaultRetentionEvery
}

// SourceExpirer is a store that removes the data of a source's events
// older than a time: the event store, the quarantine, delivery's dead
// letters and attempts.
type SourceExpirer interface {
	Expire(ctx context.Context, sourceID string, before time.Time) (int64, error)
}

// Expirer is a store that removes data older than a time regardless of
// source: the computed traits' buckets.
type Expirer interface {
	Expire(ctx context.Context, before time.Time) (int64, error)
}

// RetentionStores are the stores retention removes expired data from,
// each named for the report and the metric.
type RetentionStores struct {
	// BySource are asked per source with the source's cutoff (and with
	// source "" and the default's, for entries no source is known of).
	BySource []NamedSourceExpirer
	// ByDefault are asked with the default age's cutoff.
	ByDefault []NamedExpirer
	// Consent, when set, has its history cut at ConsentHistory.
	Consent *Store
	// Compact run, in order, after the deletions of a run that removed
	// anything from one of their After stores (any store when After is
	// empty), so that the removed rows' bytes leave the stores' files as
	// an erasure's do: the DuckDB file's copy, the state store's
	// checkpoint or scrub. A failure fails the run, and the compaction
	// runs again at the next run whatever it removes.
	Compact []Compacter
}

// Compacter makes rows deleted from a store unreadable on disk.
type Compacter struct {
	Name  string   // for the report: compacted lists it when it ran
	After []string // the stores whose removals need it; empty: any
	Run   func(ctx context.Context) error
}

// NamedSourceExpirer is a [SourceExpirer] with its store's name.
type NamedSourceExpirer struct {
	Name  string
	Store SourceExpirer
}

// NamedExpirer is an [Expirer] with its store's name.
type NamedExpirer struct {
	Name  string
	Store Expirer
}

// Retainer removes expired data on a schedule ([Retainer.Run]) and on
// demand ([Retainer.RunOnce], POST /api/v1/privacy/retention/run).
type Retainer struct {
	policy  atomic.Pointer[Retention] // see SetPolicy
	sources *governance.Store
	stores  RetentionStores
	logger  *slog.Logger
	now     func() time.Time

	changed chan struct{}   // SetPolicy wakes Run
	mu      sync.Mutex      // one run at a time
	owed    map[string]bool // compactions that failed, run again at the next run; under mu
	last    atomic.Pointer[RetentionRun]
	removed *metrics.CounterVec
	runs    *metrics.CounterVec
}

// NewRetainer returns a retainer of policy over the stores; sources
// lists the sources (their names and data categories decide their ages).
func NewRetainer(policy Retention, sources *governance.Store, stores RetentionStores, reg *metrics.Registry, logger *slog.Logger) *Retainer {
	if reg == nil {
		reg = metrics.NewRegistry()
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	r := &Retainer{sources: sources, stores: stores, logger: logger, now: time.Now, changed: make(chan struct{}, 1)}
	r.SetPolicy(policy)
	r.removed = reg.NewCounterVec("tandem_retention_removed_total", "Rows removed by retention because they were older than their configured maximum age, by store.", "store")
	r.runs = reg.NewCounterVec("tandem_retention_runs_total", "Retention runs, by result: ok, failed (a store could not remove; tried again at the next run).", "result")
	reg.NewGaugeFunc("tandem_retention_last_run_timestamp_seconds", "When the last successful retention run started (Unix seconds); 0 before the first.", func() float64 {
		if l := r.last.Load(); l != nil {
			return float64(l.At.UnixNano()) / 1e9
		}
		return 0
	})
	return r
}

// Policy is the retention in force.
func (r *Retainer) Policy() Retention { return *r.policy.Load() }

// SetPolicy puts a new retention in force (checked by
// [Retention.Validate]): the scheduled runs ([Retainer.Run]) follow it
// from their next run, which is at once.
func (r *Retainer) SetPolicy(p Retention) {
	p.Sources, p.Categories = maps.Clone(p.Sources), maps.Clone(p.Categories)
	r.policy.Store(&p)
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// SourceAge is one source's maximum age in a run.
type SourceAge struct {
	Source string    `json:"source"` // id
	Name   string    `json:"name"`
	MaxAge string    `json:"maxAge"` // a Go duration, "" when none applies
	Basis  string    `json:"basis"`  // source, category NAME, default, or ""
	Before time.Time `json:"before"` // data older than this was removed; zero when none
}

// RetentionRun is what one run removed.
type RetentionRun struct {
	At      time.Time        `json:"at"`
	Sources []SourceAge      `json:"sources"`
	Removed map[string]int64 `json:"removed"` // per store
	// Compacted names the compactions that ran after the deletions, so
	// that the removed rows' bytes left the files too.
	Compacted []string `json:"compacted"`
	Errors    []string `json:"errors"` // per store that failed, without personal data
}

// LastRun is the last successful run, nil before the first.
func (r *Retainer) LastRun() *RetentionRun { return r.last.Load() }

// RunOnce removes every store's expired data now and reports what it
// removed. A store that fails is reported (and the run's error says so);
// the others still run.
func (r *Retainer) RunOnce(ctx context.Context) (RetentionRun, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now().UTC()
	policy := r.Policy()
	run := RetentionRun{At: now, Sources: []SourceAge{}, Removed: map[string]int64{}, Compacted: []string{}, Errors: []string{}}
	for _, s := range r.stores.BySource {
		run.Removed[s.Name] = 0
	}
	for _, s := range r.stores.ByDefault {
		run.Removed[s.Name] = 0
	}
	if r.stores.Consent != nil {
		run.Removed["consent_history"] = 0
	}
	fail := func(store string, err error) {
		r.logger.Warn("retention: a store could not remove expired data", "store", store, "err", err.Error())
		run.Errors = append(run.Errors, store+": "+err.Error())
	}
	add := func(store string, n int64) {
		run.Removed[store] += n
		if n > 0 {
			r.removed.Add(uint64(n), store)
		}
	}
	var srcs []governance.Source
	for cursor := ""; ; {
		page, next, err := r.sources.ListSources(ctx, 1000, cursor)
		if err != nil {
			r.runs.Add(1, "failed")
			return run, fmt.Errorf("privacy: retention: list sources: %w", err)
		}
		srcs = append(srcs, page...)
		if next == "" {
			break
		}
		cursor = next
	}
	// Entries no source is known of (a corrupt log record's) follow the
	// default.
	srcs = append(srcs, governance.Source{ID: "", Name: ""})
	for _, src := range srcs {
		age, basis := policy.AgeOf(src)
		sa := SourceAge{Source: src.ID, Name: src.Name, Basis: basis}
		if age > 0 {
			sa.MaxAge, sa.Before = age.String(), now.Add(-age)
		}
		if src.ID != "" {
			run.Sources = append(run.Sources, sa)
		}
		if age == 0 {
			continue
		}
		for _, s := range r.stores.BySource {
			n, err := s.Store.Expire(ctx, src.ID, sa.Before)
			if err != nil {
				fail(s.Name, err)
				continue
			}
			add(s.Name, n)
		}
	}
	if policy.Default > 0 {
		for _, s := range r.stores.ByDefault {
			n, err := s.Store.Expire(ctx, now.Add(-policy.Default))
			if err != nil {
				fail(s.Name, err)
				continue
			}
			add(s.Name, n)
		}
	}
	if r.stores.Consent != nil && policy.ConsentHistory > 0 {
		n, err := r.stores.Consent.ExpireHistory(ctx, now.Add(-policy.ConsentHistory))
		if err != nil {
			fail("consent_history", err)
		} else {
			add("consent_history", n)
		}
	}
	for _, c := range r.stores.Compact {
		need := false
		for store, n := range run.Removed {
			need = need || (n > 0 && (len(c.After) == 0 || slices.Contains(c.After, store)))
		}
		if !need && !r.owed[c.Name] {
			continue
		}
		if err := c.Run(ctx); err != nil {
			fail(c.Name, err)
			if r.owed == nil {
				r.owed = map[string]bool{}
			}
			r.owed[c.Name] = true // the rows are deleted: their bytes are still owed
			continue
		}
		delete(r.owed, c.Name)
		run.Compacted = append(run.Compacted, c.Name)
	}
	if len(run.Errors) > 0 {
		r.runs.Add(1, "failed")
		return run, fmt.Errorf("privacy: retention: %s", strings.Join(run.Errors, "; "))
	}
	r.runs.Add(1, "ok")
	r.last.Store(&run)
	return run, nil
}

// Run runs retention every Retention.Every (first right away) until ctx
// is done, under the policy in force at each run; while no age is
// configured it only waits (for ctx, or a policy set by SetPolicy, which
// runs at once).
func (r *Retainer) Run(ctx context.Context) {
	for {
		p := r.Policy()
		if p.Enabled() {
			if _, err := r.RunOnce(ctx); err != nil && ctx.Err() == nil {
				r.logger.Warn("retention run failed; tried again at the next", "err", err.Error())
			}
		}
		t := time.NewTimer(p.Interval())
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-r.changed: // a new policy: run under it now
			t.Stop()
		}
	}
}
