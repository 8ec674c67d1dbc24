package pipeline

import (
	"context"
	"fmt"
	"sync"
	"time"

	"tandem/eventlog"
	"tandem/metrics"
)

// Monitor measures the pipeline's backlog in the event log: how many
// records its durable consumer has not acknowledged and when the oldest of
// them was appended. A node measures it whether or not it runs the
// pipeline itself (with a shared log, another node may run it): the
// figures are the cluster's, not this node's.
type Monitor struct {
	log      eventlog.Log
	consumer string
	now      func() time.Time

	cmu sync.Mutex
	c   eventlog.Consumer // opened on first use, again after a failure

	mu      sync.Mutex
	reading Backlog
}

// Backlog is one reading of the pipeline's backlog.
type Backlog struct {
	Known   bool      // false before the first successful reading
	At      time.Time // when it was read
	Records uint64    // unprocessed log records
	// Oldest is when the oldest unprocessed record was appended (its
	// events were collected then); zero when none is unprocessed.
	Oldest time.Time
}

// Age is how long the oldest unprocessed record has waited, as of now:
// the pipeline's lag in time; 0 when nothing is unprocessed or before the
// first reading.
func (b Backlog) Age(now time.Time) time.Duration {
	if !b.Known || b.Oldest.IsZero() {
		return 0
	}
	return max(0, now.Sub(b.Oldest))
}

// NewMonitor registers the lag gauges in m (nil: none) for the consumer
// named consumer ("" is the pipeline's default, "pipeline").
func NewMonitor(log eventlog.Log, consumer string, m *metrics.Registry) *Monitor {
	if consumer == "" {
		consumer = "pipeline"
	}
	mon := &Monitor{log: log, consumer: consumer, now: time.Now}
	if m != nil {
		m.NewGaugeFunc("tandem_pipeline_lag_records", "Event log records not yet processed (-1 before the first reading).", func() float64 {
			b := mon.Backlog()
			if !b.Known {
				return -1
			}
			return float64(b.Records)
		})
		m.NewGaugeFunc("tandem_pipeline_lag_seconds", "Age of the oldest event log record not yet processed: how far processing is behind collection (0 when caught up).", func() float64 {
			return mon.Backlog().Age(mon.now()).Seconds()
		})
		m.NewGaugeFunc("tandem_pipeline_oldest_unprocessed_timestamp_seconds", "Unix time the oldest unprocessed event log record was appended (0 when none).", func() float64 {
			b := mon.Backlog()
			if b.Oldest.IsZero() {
				return 0
			}
			return float64(b.Oldest.UnixNano()) / 1e9
		})
	}
	return mon
}

// Backlog returns the last reading.
func (m *Monitor) Backlog() Backlog {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.reading
}

// Measure takes one reading now.
func (m *Monitor) Measure(ctx context.Context) error {
	m.cmu.Lock()
	defer m.cmu.Unlock()
	if m.c == nil {
		c, err := m.log.Consumer(ctx, m.consumer)
		if err != nil {
			return fmt.Errorf("pipeline monitor: %w", err)
		}
		m.c = c
	}
	b, err := m.c.Backlog(ctx)
	if err != nil {
		m.c.Close()
		m.c = nil
		return fmt.Errorf("pipeline monitor: %w", err)
	}
	m.mu.Lock()
	m.reading = Backlog{Known: true, At: m.now(), Records: b.Records, Oldest: b.Oldest}
	m.mu.Unlock()
	return nil
}

// Close releases the monitor's consumer handle (it never fetches, so the
// pipeline's position is untouched).
func (m *Monitor) Close() {
	m.cmu.Lock()
	defer m.cmu.Unlock()
	if m.c != nil {
		m.c.Close()
		m.c = nil
	}
}

// Run takes a reading every interval until ctx ends. A failed reading
// keeps the previous one (the log's own readiness reports its outages).
func (m *Monitor) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		rctx, cancel := context.WithTimeout(ctx, max(interval, 2*time.Second))
		_ = m.Measure(rctx)
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
