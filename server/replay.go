package server

import (
	"context"
	"time"

	"tandem/eventlog"
	"tandem/eventstore/duckdb"
	"tandem/metrics"
	"tandem/pipeline"
	"tandem/trackingplan"
)

// replayConsumer is the event log consumer of --replay-last; it exists
// only while a replay runs.
const replayConsumer = "pipeline-replay"

// pipelineOptions are the pipeline's stages as this node runs them, its
// metrics in m.
func (s *Server) pipelineOptions(m *metrics.Registry) pipeline.Options {
	return pipeline.Options{
		Log: s.Log, Events: s.Events, Quarantine: s.Quarantine, Identity: s.Identity, Metrics: m, Logger: s.logger,
		Consent: s.Consent, Plans: trackingplan.NewChecker(s.Plans, 0, m),
		Traits: s.Traits, Audiences: s.Audiences, Suppress: s.Suppressions,
		StateBatch: s.State.Batch,
		// The embedded store commits whole row groups itself; a node
		// that keeps up with a high rate waits for that rather than
		// commit each batch through DuckDB's WAL (pipeline/stage.go).
		CommitRows: duckdb.RowGroupRows, CommitHold: commitHold,
	}
}

// commitHold is how long the pipeline holds staged events for the row
// group when it is idle: at rates from about 41,000 events/s up, where
// the row group fills within it.
const commitHold = 3 * time.Second

// replay processes the event log's records appended since start once
// more, through a second pipeline with its own consumer, until it has
// caught up with the log; then it removes that consumer. Every stage is
// idempotent, so what the stores already hold stays as it is and only
// what they lost (a ClickHouse part an OS crash took, see
// docs/operations.md#durability) is written again. A failure (the store
// still down) is retried with backoff until ctx ends.
func (s *Server) replay(ctx context.Context, start time.Time) {
	from, ok := s.Log.(interface {
		ConsumerFrom(ctx context.Context, name string, start time.Time) (eventlog.Consumer, error)
		DeleteConsumer(ctx context.Context, name string) error
	})
	if !ok {
		s.logger.Error("replay: this event log cannot start a consumer at a time; nothing replayed")
		return
	}
	log := s.logger.With("since", start.UTC().Format(time.RFC3339))
	// A replay an earlier run left unfinished starts over from start.
	if err := from.DeleteConsumer(ctx, replayConsumer); err != nil {
		log.Error("replay: remove the previous replay's consumer", "err", err.Error())
		return
	}
	backoff := time.Second
	for ctx.Err() == nil {
		err := s.replayOnce(ctx, from.ConsumerFrom, start)
		if err == nil {
			if err := from.DeleteConsumer(context.WithoutCancel(ctx), replayConsumer); err != nil {
				log.Warn("replay: remove the replay's consumer", "err", err.Error())
			}
			return
		}
		if ctx.Err() != nil {
			return
		}
		log.Error("replay failed; will retry", "err", err.Error())
		sleep(ctx, backoff)
		backoff = min(2*backoff, 30*time.Second)
	}
}

func (s *Server) replayOnce(ctx context.Context, open func(context.Context, string, time.Time) (eventlog.Consumer, error), start time.Time) error {
	c, err := open(ctx, replayConsumer, start)
	if err != nil {
		return err
	}
	c.Close() // created at start; the pipeline opens its own handle
	opts := s.pipelineOptions(metrics.NewRegistry())
	opts.Consumer = replayConsumer
	p, err := pipeline.New(ctx, opts)
	if err != nil {
		return err
	}
	s.logger.Info("replaying the event log", "since", start.UTC().Format(time.RFC3339))
	began := time.Now()
	if err := p.Drain(ctx); err != nil {
		return err
	}
	s.logger.Info("replay done", "since", start.UTC().Format(time.RFC3339), "took", time.Since(began).Round(time.Millisecond).String())
	return nil
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
