package delivery

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"tandem/delivery/guard"
	"tandem/event"
	"tandem/eventlog"
	"tandem/governance"
	"tandem/metrics"
	"tandem/statestore"
)

// ErrNotRunning is matched by errors for an action that needs the
// destination's delivery running on this node (it is not approved, or was
// just created or changed and has not been picked up yet).
var ErrNotRunning = errors.New("delivery: destination is not being delivered")

// RetryPolicy bounds how a failed delivery is retried before its events go
// to the dead-letter store.
type RetryPolicy struct {
	MaxAttempts   int           // attempts in all, the first included; default 8
	Base          time.Duration // the first wait; each next one doubles; default 500ms
	Max           time.Duration // the longest wait between attempts; default 60s
	MaxRetryAfter time.Duration // the longest Retry-After honoured; default 5m
}

func (p *RetryPolicy) fill() {
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = 8
	}
	if p.Base <= 0 {
		p.Base = 500 * time.Millisecond
	}
	if p.Max <= 0 {
		p.Max = 60 * time.Second
	}
	if p.MaxRetryAfter <= 0 {
		p.MaxRetryAfter = 5 * time.Minute
	}
}

// Backoff is the wait before attempt n+1 after attempt n failed with err:
// the destination's Retry-After when it gave one (up to MaxRetryAfter),
// else Base·2^(n-1) capped at Max, with jitter (between half and all of
// it) so that many lanes do not retry in step.
func (p RetryPolicy) Backoff(n int, err error) time.Duration {
	var se *SendError
	if errors.As(err, &se) && se.RetryAfter > 0 {
		return min(se.RetryAfter, p.MaxRetryAfter)
	}
	d := p.Base
	for i := 1; i < n && d < p.Max; i++ {
		d *= 2
	}
	d = min(d, p.Max)
	return d/2 + rand.N(d/2+1)
}

// retryable reports whether a failed Send may succeed later: network
// errors and timeouts, and SendErrors that say so.
func retryable(err error) bool {
	var se *SendError
	if errors.As(err, &se) {
		return se.Retry
	}
	return true
}

// Options configure a [Manager].
type Options struct {
	Log        eventlog.Log
	Governance *governance.Store
	DB         *statestore.DB
	// Allow lists CIDRs destinations may reach despite the SSRF guard
	// (--destination-allow).
	Allow []string
	Retry RetryPolicy
	// Poll is how often destination changes made elsewhere (another node,
	// the database) are picked up; changes through this node's API are
	// picked up at once ([Manager.Refresh]). Default 1s.
	Poll    time.Duration
	Metrics *metrics.Registry
	Logger  *slog.Logger
	// Recent is how many delivery attempts are kept per destination for
	// GET /destinations/{id}/deliveries. Default 1000.
	Recent int
	// Consent, when set, is asked before each event goes to a destination
	// that declares consent purposes: an event whose profile has not
	// granted every one of them is not sent (counted as no_consent, not an
	// error). nil sends regardless of consent.
	Consent ConsentChecker
	// Suppress, when set, picks the events of erased people: they are not
	// sent, even when they were queued or retrying before the erasure
	// (counted as suppressed).
	Suppress Suppressor
}

// Suppressor reports whether an event carries an identifier of a person
// whose data was erased (privacy.Suppressions implements it).
type Suppressor interface {
	Suppressed(e *event.Event) bool
}

// ConsentChecker is the consent check of a destination's route
// (privacy.Store implements it): whether e's profile has granted every
// one of purposes at this moment, and if not, why, in words that name no
// person.
type ConsentChecker interface {
	AllowedEvent(ctx context.Context, e *event.Event, purposes []string) (ok bool, reason string, err error)
}

// Manager runs the delivery of every approved destination.
type Manager struct {
	opts  Options
	reg   *Registry
	guard *guard.Guard
	dead  deadLetters
	flows *flows

	mu      sync.Mutex
	workers map[string]*worker
	rings   map[string]*ring
	nudge   chan struct{}

	events   *metrics.CounterVec
	attempts *metrics.CounterVec
	request  *metrics.HistogramVec
	latency  *metrics.HistogramVec
	lag      *metrics.GaugeVec
}

// LatencyBuckets are the bounds, in seconds, of the time from the
// collection API's answer to a destination's: from 10ms (a local receiver
// on an idle node) to 5 minutes (retries).
var LatencyBuckets = []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300}

// New returns a manager; [Manager.Run] starts delivering.
func New(opts Options) (*Manager, error) {
	opts.Retry.fill()
	if opts.Poll <= 0 {
		opts.Poll = time.Second
	}
	if opts.Recent <= 0 {
		opts.Recent = 1000
	}
	if opts.Metrics == nil {
		opts.Metrics = metrics.NewRegistry()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	g, err := guard.New(opts.Allow)
	if err != nil {
		return nil, fmt.Errorf("delivery: %w", err)
	}
	env := Env{Guard: g, Client: func(timeout time.Duration) *http.Client { return g.Client(timeout) }}
	m := &Manager{
		opts: opts, guard: g, dead: deadLetters{db: opts.DB}, flows: &flows{db: opts.DB},
		reg:     newRegistry(env, builtin()...),
		workers: map[string]*worker{}, rings: map[string]*ring{}, nudge: make(chan struct{}, 1),
	}
	r := opts.Metrics
	m.events = r.NewCounterVec("tandem_delivery_events_total", "Events handled per destination, by outcome: delivered, dead_letter, filtered, before_approval, no_consent, invalid.", "destination", "outcome")
	m.attempts = r.NewCounterVec("tandem_delivery_attempts_total", "Requests to destinations, by result: ok, retry (failed, will be retried), failed (failed for good).", "destination", "result")
	m.request = r.NewHistogramVec("tandem_delivery_request_seconds", "Time one request to a destination took.", metrics.DefBuckets, "destination")
	m.latency = r.NewHistogramVec("tandem_delivery_latency_seconds", "Time from an event's receipt by the collection API to its delivery.", LatencyBuckets, "destination")
	m.lag = r.NewGaugeVec("tandem_delivery_lag_records", "Event log records a destination's consumer has not yet acknowledged.", "destination")
	return m, nil
}

// Types returns the destination types, for
// [governance.Store.SetDestinationTypes].
func (m *Manager) Types() *Registry { return m.reg }

// Refresh makes Run pick up destination changes now.
func (m *Manager) Refresh() {
	select {
	case m.nudge <- struct{}{}:
	default:
	}
}

// Run delivers until ctx is done, then stops every destination's
// delivery; events not yet delivered are delivered after the next start.
func (m *Manager) Run(ctx context.Context) error {
	t := time.NewTicker(m.opts.Poll)
	defer t.Stop()
	flowsDone := make(chan struct{})
	go func() { defer close(flowsDone); m.runFlows(ctx) }()
	defer func() { <-flowsDone }()
	for {
		if err := m.sync(ctx); err != nil && ctx.Err() == nil {
			m.opts.Logger.Warn("delivery: reading destinations failed", "err", err.Error())
		}
		select {
		case <-ctx.Done():
			m.mu.Lock()
			ws := m.workers
			m.workers = map[string]*worker{}
			m.mu.Unlock()
			var wg sync.WaitGroup
			for _, w := range ws {
				wg.Add(1)
				go func() { defer wg.Done(); w.stop() }()
			}
			wg.Wait()
			return nil
		case <-t.C:
		case <-m.nudge:
		}
	}
}

// sync starts the delivery of approved destinations, restarts it for
// changed ones and stops it for the others.
func (m *Manager) sync(ctx context.Context) error {
	ds, err := m.opts.Governance.AllDestinations(ctx)
	if err != nil {
		return err
	}
	want := map[string]governance.Destination{}
	for _, d := range ds {
		if d.Approval == governance.Approved {
			want[d.ID] = d
		}
	}
	m.mu.Lock()
	var stop []*worker
	for id, w := range m.workers {
		if d, ok := want[id]; !ok || !d.UpdatedAt.Equal(w.d.UpdatedAt) {
			stop = append(stop, w)
			delete(m.workers, id)
		}
	}
	m.mu.Unlock()
	for _, w := range stop {
		w.stop()
	}
	for id, d := range want {
		m.mu.Lock()
		_, running := m.workers[id]
		m.mu.Unlock()
		if running {
			continue
		}
		w, err := m.start(ctx, d)
		if err != nil {
			m.opts.Logger.Error("delivery: cannot start destination", "destination", id, "err", err.Error())
			continue
		}
		m.mu.Lock()
		m.workers[id] = w
		m.mu.Unlock()
	}
	return nil
}

// ConsumerName is the durable event-log consumer of a destination.
func ConsumerName(destinationID string) string { return "delivery-" + destinationID }

// Forget drops what the manager keeps for a deleted destination: its
// dead letters, recent attempts, metric series and, when the log can,
// its consumer.
func (m *Manager) Forget(ctx context.Context, id string) error {
	m.mu.Lock()
	w := m.workers[id]
	delete(m.workers, id)
	delete(m.rings, id)
	m.mu.Unlock()
	if w != nil {
		w.stop()
	}
	m.events.DeletePartial(map[string]string{"destination": id})
	m.attempts.DeletePartial(map[string]string{"destination": id})
	m.request.Delete(id)
	m.latency.Delete(id)
	m.lag.Delete(id)
	if dl, ok := m.opts.Log.(interface {
		DeleteConsumer(ctx context.Context, name string) error
	}); ok {
		if err := dl.DeleteConsumer(ctx, ConsumerName(id)); err != nil {
			m.opts.Logger.Warn("delivery: deleting consumer failed", "destination", id, "err", err.Error())
		}
	}
	return m.dead.removeDestination(ctx, id)
}

// Attempt is one try at delivering one event.
type Attempt struct {
	MessageID  string    `json:"messageId"`
	Attempt    int       `json:"attempt"`
	Status     string    `json:"status"` // delivered, retrying, dead_letter
	Error      string    `json:"error,omitempty"`
	HTTPStatus int       `json:"httpStatus,omitempty"`
	At         time.Time `json:"at"`
	LatencyMs  float64   `json:"latencyMs"` // of the request
	Replay     bool      `json:"replay,omitempty"`
	source     string    // the event's source ("" for a replay), for retention
	received   time.Time // when the event was received
}

// Expire deletes what delivery keeps of the events of source sourceID
// received before before (retention, docs/privacy.md): dead letters, and
// the recent attempts this node keeps in memory. It returns how many
// dead letters it deleted.
func (m *Manager) Expire(ctx context.Context, sourceID string, before time.Time) (int64, error) {
	m.mu.Lock()
	rings := make([]*ring, 0, len(m.rings))
	for _, r := range m.rings {
		rings = append(rings, r)
	}
	m.mu.Unlock()
	for _, r := range rings {
		r.expire(sourceID, before)
	}
	n, err := m.dead.expire(ctx, sourceID, before)
	if err != nil {
		return 0, fmt.Errorf("delivery: expire dead letters: %w", err)
	}
	return n, nil
}

// Deliveries returns the destination's most recent attempts on this node,
// newest first, at most limit.
func (m *Manager) Deliveries(id string, limit int) []Attempt {
	m.mu.Lock()
	r := m.rings[id]
	m.mu.Unlock()
	if r == nil {
		return []Attempt{}
	}
	return r.recent(limit)
}

// DeadLetters returns up to limit dead letters of a destination, oldest
// first, after the one with id after ("" for the start).
func (m *Manager) DeadLetters(ctx context.Context, id string, limit int, after string) ([]DeadLetter, error) {
	return m.dead.list(ctx, id, limit, after)
}

func (m *Manager) ring(id string) *ring {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.rings[id]
	if r == nil {
		r = &ring{buf: make([]Attempt, m.opts.Recent)}
		m.rings[id] = r
	}
	return r
}

// Replay sends a destination's dead letters again, in the order they
// failed, through its lanes (after what the lanes hold already). A dead
// letter delivered is removed; one that fails again stays, with its new
// error. It returns how many were queued; the sending goes on in the
// background.
func (m *Manager) Replay(ctx context.Context, id string) (int, error) {
	m.mu.Lock()
	w := m.workers[id]
	m.mu.Unlock()
	if w == nil {
		return 0, ErrNotRunning
	}
	var all []DeadLetter
	after := ""
	for len(all) < 1_000_000 {
		page, err := m.dead.list(ctx, id, 1000, after)
		if err != nil {
			return 0, err
		}
		if len(page) == 0 {
			break
		}
		all = append(all, page...)
		after = page[len(page)-1].ID
	}
	return w.replay(all), nil
}

// ring keeps the last attempts.
type ring struct {
	mu   sync.Mutex
	buf  []Attempt
	next int
	n    int
}

func (r *ring) add(a Attempt) {
	r.mu.Lock()
	r.buf[r.next] = a
	r.next = (r.next + 1) % len(r.buf)
	r.n = min(r.n+1, len(r.buf))
	r.mu.Unlock()
}

// expire drops the attempts of events of source received before before
// (attempts at replays, whose source is not kept, by their own time).
func (r *ring) expire(source string, before time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	kept := make([]Attempt, 0, r.n)
	for i := r.n; i >= 1; i-- { // oldest first
		a := r.buf[(r.next-i+len(r.buf))%len(r.buf)]
		old := a.source == source && a.received.Before(before)
		if a.source == "" && source == "" {
			old = a.At.Before(before)
		}
		if !old {
			kept = append(kept, a)
		}
	}
	clear(r.buf)
	copy(r.buf, kept)
	r.n = len(kept)
	r.next = len(kept) % len(r.buf)
}

func (r *ring) recent(limit int) []Attempt {
	r.mu.Lock()
	defer r.mu.Unlock()
	if limit <= 0 || limit > r.n {
		limit = r.n
	}
	out := make([]Attempt, 0, limit)
	for i := 1; i <= limit; i++ {
		out = append(out, r.buf[(r.next-i+len(r.buf))%len(r.buf)])
	}
	return out
}

// laneOf picks the lane of a profile key.
func laneOf(key string, n int) int {
	h := fnv.New32a()
	h.Write([]byte(key))
	return int(h.Sum32() % uint32(n))
}
