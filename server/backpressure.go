package server

import (
	"fmt"
	"math"
	"time"

	"tandem/apierror"
	"tandem/pipeline"
)

// Backpressure: how collection behaves when processing falls behind.
//
// The default (--max-pipeline-lag 0) keeps accepting: every accepted event
// is already durable in the event log, and the pipeline works through the
// backlog at its own pace (up to the log's retention, --log-max-age, and
// size, --log-max-bytes, at which point the log itself refuses with 503).
// With --max-pipeline-lag D > 0, collection answers 503 "overloaded" with
// Retry-After while the oldest unprocessed event has waited longer than D,
// as last measured (each second) by the pipeline monitor. The lag is the
// shared log's, so every node sharing it refuses together.

// lagCheckInterval is how often the pipeline monitor reads the backlog.
const lagCheckInterval = time.Second

// backpressure is collection's check: nil to accept.
func (s *Server) backpressure() *apierror.Error {
	bound := s.cfg.MaxPipelineLag
	if bound <= 0 || s.Lag == nil {
		return nil
	}
	over := s.Lag.Backlog().Age(time.Now()) - bound
	if over <= 0 {
		return nil
	}
	return &apierror.Error{Status: 503, Code: "overloaded",
		Message:    fmt.Sprintf("processing is behind: the oldest unprocessed event has waited more than %s; retry later", bound),
		RetryAfter: retryAfter(over)}
}

// retryAfter is the Retry-After for a lag over its bound by over: the
// excess in whole seconds, between 1 and 30.
func retryAfter(over time.Duration) int {
	return int(min(30, max(1, math.Ceil(over.Seconds()))))
}

// lagDetails is the pipeline part of /readyz.
type lagDetails struct {
	// LagRecords is null before the first reading.
	LagRecords *uint64 `json:"lagRecords"`
	LagSeconds float64 `json:"lagSeconds"`
	// OldestUnprocessed is when the oldest unprocessed event was
	// collected; null when none is.
	OldestUnprocessed *time.Time `json:"oldestUnprocessed"`
	// MaxLagSeconds is --max-pipeline-lag, 0 when off; Overloaded is true
	// while collection refuses because of it.
	MaxLagSeconds float64 `json:"maxLagSeconds"`
	Overloaded    bool    `json:"overloaded"`
}

func (s *Server) lagDetails() lagDetails {
	var b pipeline.Backlog
	if s.Lag != nil {
		b = s.Lag.Backlog()
	}
	d := lagDetails{LagSeconds: b.Age(time.Now()).Seconds(), MaxLagSeconds: s.cfg.MaxPipelineLag.Seconds(),
		Overloaded: s.backpressure() != nil}
	if b.Known {
		d.LagRecords = &b.Records
	}
	if !b.Oldest.IsZero() {
		t := b.Oldest.UTC()
		d.OldestUnprocessed = &t
	}
	return d
}
