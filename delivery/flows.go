package delivery

import (
	"context"
	"fmt"
	"sync"
	"time"

	"tandem/governance"
	"tandem/statestore"
)

// The catalogue's data flows: how many events each source's data took to
// each destination per day (UTC), counted when delivered, kept in memory
// and added to the state store's delivery_flows every flowFlushEvery, at
// the end of Run and before each read, so every node's counts add up.

// flowFlushEvery is how often the counts go to the state store.
const flowFlushEvery = 10 * time.Second

// FlowWindow is the period GET /catalog's flows count (events30d).
const FlowWindow = 30 * 24 * time.Hour

// flowKeepDays is how many days of counts are kept (the window and a day).
const flowKeepDays = 31

var flowMigration = statestore.Migration{
	Package: "delivery",
	Version: 2,
	SQL: `
CREATE TABLE delivery_flows (
	source_id TEXT NOT NULL,
	destination_id TEXT NOT NULL,
	day BIGINT NOT NULL,
	n BIGINT NOT NULL,
	PRIMARY KEY (source_id, destination_id, day)
);
`,
}

type flowKey struct {
	source, dest string
	day          int64 // days since 1970-01-01 UTC
}

// flows counts deliveries until they are flushed.
type flows struct {
	db *statestore.DB
	mu sync.Mutex
	n  map[flowKey]int64
	// flushMu keeps two flushes from adding the same counts twice.
	flushMu sync.Mutex
}

func dayOf(t time.Time) int64 { return t.UTC().Unix() / 86400 }

func (f *flows) add(source, dest string, at time.Time, n int64) {
	if source == "" {
		return // a replayed dead letter (its source is not kept)
	}
	f.mu.Lock()
	if f.n == nil {
		f.n = map[flowKey]int64{}
	}
	f.n[flowKey{source, dest, dayOf(at)}] += n
	f.mu.Unlock()
}

// flush adds the counts to the state store and drops days older than the
// window. Counts that cannot be written are kept for the next flush.
func (f *flows) flush(ctx context.Context, now time.Time) error {
	f.flushMu.Lock()
	defer f.flushMu.Unlock()
	f.mu.Lock()
	pending := f.n
	f.n = nil
	f.mu.Unlock()
	if len(pending) == 0 {
		return nil
	}
	err := f.db.Tx(ctx, func(tx *statestore.Tx) error {
		for k, n := range pending {
			if _, err := tx.Exec(ctx, `INSERT INTO delivery_flows (source_id, destination_id, day, n) VALUES (?, ?, ?, ?)
				ON CONFLICT (source_id, destination_id, day) DO UPDATE SET n = delivery_flows.n + excluded.n`,
				k.source, k.dest, k.day, n); err != nil {
				return err
			}
		}
		_, err := tx.Exec(ctx, `DELETE FROM delivery_flows WHERE day < ?`, dayOf(now)-flowKeepDays)
		return err
	})
	if err != nil {
		f.mu.Lock()
		if f.n == nil {
			f.n = map[flowKey]int64{}
		}
		for k, n := range pending {
			f.n[k] += n
		}
		f.mu.Unlock()
		return fmt.Errorf("delivery: flows: %w", err)
	}
	return nil
}

// Flows returns the events delivered per source and destination since
// since (whole UTC days), after adding this node's latest counts.
func (m *Manager) Flows(ctx context.Context, since time.Time) ([]governance.Flow, error) {
	if err := m.flows.flush(ctx, time.Now()); err != nil {
		return nil, err
	}
	rows, err := m.opts.DB.Query(ctx, `SELECT source_id, destination_id, SUM(n) FROM delivery_flows WHERE day >= ?
		GROUP BY source_id, destination_id ORDER BY source_id, destination_id`, dayOf(since))
	if err != nil {
		return nil, fmt.Errorf("delivery: flows: %w", err)
	}
	defer rows.Close()
	out := []governance.Flow{}
	for rows.Next() {
		var f governance.Flow
		if err := rows.Scan(&f.From, &f.To, &f.Events30d); err != nil {
			return nil, fmt.Errorf("delivery: flows: %w", err)
		}
		out = append(out, f)
	}
	return out, rows.Err()
}

// CatalogTools makes the manager a [governance.ToolProvider] of the
// catalogue's flows (its tools come from governance): source →
// destination with the events delivered over the last 30 days.
func (m *Manager) CatalogTools(ctx context.Context) ([]governance.Tool, []governance.Flow, error) {
	fs, err := m.Flows(ctx, time.Now().Add(-FlowWindow))
	return nil, fs, err
}

// runFlows flushes the counts every flowFlushEvery until ctx is done,
// then once more.
func (m *Manager) runFlows(ctx context.Context) {
	t := time.NewTicker(flowFlushEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if err := m.flows.flush(fctx, time.Now()); err != nil {
				m.opts.Logger.Warn("delivery: flow counts lost at shutdown", "err", err.Error())
			}
			cancel()
			return
		case <-t.C:
			if err := m.flows.flush(ctx, time.Now()); err != nil && ctx.Err() == nil {
				m.opts.Logger.Warn("delivery: writing flow counts failed; kept for the next try", "err", err.Error())
			}
		}
	}
}
