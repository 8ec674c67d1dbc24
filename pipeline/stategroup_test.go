package pipeline

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tandem/event"
	"tandem/eventlog"
	"tandem/metrics"
	"tandem/statestore"
)

// stateGroupRig runs Run over records of perRecord events each, one
// record a batch, with an identity step that writes one row an event in
// the state-store transaction and is slow on its first call, so that the
// batches after the first wait for the state stage (a backlog) and are
// taken together. failOnce, if not empty, is the message id of an event
// whose state transaction fails at its commit the first time.
type stateGroupRig struct {
	r        *rig
	p        *Pipeline
	log      *ackWatchLog
	m        *metrics.Registry
	records  int
	byRecord map[uint64][]string // log seq → the record's message ids
	mu       sync.Mutex
	order    []string // message ids in the order identity saw them
	early    atomic.Int64
	failed   atomic.Bool
	// failedTogether: the failed transaction held more than one batch's
	// events.
	failedTogether atomic.Bool
}

func newStateGroupRig(t *testing.T, records, perRecord int, failOnce string) *stateGroupRig {
	t.Helper()
	ctx := context.Background()
	g := &stateGroupRig{r: newRig(t, t.TempDir()), records: records, byRecord: map[uint64][]string{}, m: metrics.NewRegistry()}
	r := g.r
	// Not a primary key: a row the state store kept twice would show.
	if _, err := r.db.Exec(ctx, `CREATE TABLE state_rows (id TEXT NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	for i := range records {
		var evs []event.Event
		var ids []string
		for j := range perRecord {
			e := track(i*perRecord + j)
			evs = append(evs, e)
			ids = append(ids, e.MessageID)
		}
		seq, err := r.log.Append(ctx, event.EncodeRecord("s1", evs, nil))
		if err != nil {
			t.Fatal(err)
		}
		g.byRecord[seq] = ids
	}
	var calls atomic.Int64
	identity := stepFunc(func(ctx context.Context, events []event.Event) error {
		if calls.Add(1) == 1 {
			time.Sleep(300 * time.Millisecond)
		}
		return r.db.Tx(ctx, func(tx *statestore.Tx) error {
			for _, e := range events {
				if _, err := tx.Exec(ctx, `INSERT INTO state_rows (id) VALUES (?)`, e.MessageID); err != nil {
					return err
				}
			}
			g.mu.Lock()
			for _, e := range events {
				g.order = append(g.order, e.MessageID)
			}
			g.mu.Unlock()
			return nil
		})
	})
	stateBatch := func(ctx context.Context, fn func(ctx context.Context) error) error {
		return r.db.Batch(ctx, func(ctx context.Context) error {
			g.mu.Lock()
			n := len(g.order)
			g.mu.Unlock()
			if err := fn(ctx); err != nil {
				return err
			}
			g.mu.Lock()
			saw := g.order[n:]
			g.mu.Unlock()
			for _, id := range saw {
				if id == failOnce && !g.failed.Swap(true) {
					// As a commit that fails: the transaction rolls back.
					g.failedTogether.Store(saw[0] != saw[len(saw)-1] && len(saw) > perRecord)
					return errors.New("commit failed")
				}
			}
			return nil
		})
	}
	// An acknowledged record's state rows are committed already: the
	// check reads outside any transaction, so it sees committed rows only.
	log := &ackWatchLog{Log: r.log, check: func(msgs []eventlog.Message) error {
		for _, m := range msgs {
			ids := g.byRecord[m.Seq]
			var n int
			if err := r.db.QueryRow(context.Background(), `SELECT COUNT(*) FROM state_rows WHERE id IN (`+strings.TrimSuffix(strings.Repeat("?,", len(ids)), ",")+`)`, anyOf(ids)...).Scan(&n); err != nil {
				return err
			}
			if n < len(ids) {
				g.early.Add(1)
			}
		}
		return nil
	}}
	p, err := New(ctx, Options{Log: log, Events: r.ev, Quarantine: r.q, Metrics: g.m,
		Identity: identity, StateBatch: stateBatch,
		// One record a batch (see gather).
		MaxRecords: 1, MaxBytes: 1, Linger: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	g.p, g.log = p, log
	return g
}

func anyOf(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// run runs the pipeline until every event is stored and acknowledged.
func (g *stateGroupRig) run(t *testing.T, total int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.p.Run(ctx) }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		n, err := g.r.ev.Count(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if n == int64(total) && g.p.records.Value() == uint64(g.records) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stored %d events, acknowledged %d records; want %d and %d", n, g.p.records.Value(), total, g.records)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// stageCount is how many times the stage was timed (its batches; a
// group of batches the state stage takes together counts once).
func stageCount(t *testing.T, m *metrics.Registry, stage string) uint64 {
	t.Helper()
	fams, err := m.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != "tandem_pipeline_stage_seconds" {
			continue
		}
		for _, mm := range f.GetMetric() {
			for _, l := range mm.GetLabel() {
				if l.GetName() == "stage" && l.GetValue() == stage {
					return mm.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	return 0
}

// checkRows checks that each event's state row was committed once, and
// that identity saw the events in log order.
func (g *stateGroupRig) checkRows(t *testing.T, total int) {
	t.Helper()
	ctx := context.Background()
	rows, err := g.r.db.Query(ctx, `SELECT id, COUNT(*) FROM state_rows GROUP BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var id string
		var c int
		if err := rows.Scan(&id, &c); err != nil {
			t.Fatal(err)
		}
		if c != 1 {
			t.Errorf("event %s: %d state rows committed, want 1", id, c)
		}
		n++
	}
	if n != total {
		t.Errorf("%d events have state rows, want %d", n, total)
	}
	// Attempts that failed are seen again: log order holds from each
	// event's last sighting on.
	last := map[string]int{}
	for i, id := range g.order {
		last[id] = i
	}
	prev := -1
	for i := range total {
		at, ok := last[fmt.Sprintf("m%d", i)]
		if !ok {
			continue
		}
		if at < prev {
			t.Errorf("identity saw m%d before an event logged earlier", i)
		}
		prev = at
	}
}

// With a backlog the state stage takes the waiting batches together, in
// one state-store transaction; a batch is still acknowledged only after
// that transaction committed, and identity sees the events in log order.
func TestStateStageGroupsBacklog(t *testing.T) {
	const records, perRecord = 12, 3
	g := newStateGroupRig(t, records, perRecord, "")
	g.run(t, records*perRecord)
	if n := g.early.Load(); n > 0 {
		t.Errorf("%d records acknowledged before their state rows were committed", n)
	}
	if err, _ := g.log.bad.Load().(error); err != nil {
		t.Error(err)
	}
	g.checkRows(t, records*perRecord)
	states, writes := stageCount(t, g.m, stageState), stageCount(t, g.m, stageWrite)
	if writes != records {
		t.Errorf("write stage took %d batches, want %d (one record a batch)", writes, records)
	}
	if states >= writes {
		t.Errorf("state stage ran %d times for %d batches: waiting batches were not taken together", states, writes)
	}
}

// A state-store transaction of several batches that fails at its commit
// leaves nothing of any of them: each batch is then tried alone, and every
// event's state is committed once before its record is acknowledged.
func TestStateStageGroupCommitFails(t *testing.T) {
	const records, perRecord = 12, 3
	// An event of the third record: in the first group (the second and
	// third batches), after the slow first batch.
	g := newStateGroupRig(t, records, perRecord, "m7")
	g.run(t, records*perRecord)
	if !g.failed.Load() {
		t.Fatal("the commit never failed")
	}
	if !g.failedTogether.Load() {
		t.Error("the failed commit held one batch only, want the group of two")
	}
	if n := g.early.Load(); n > 0 {
		t.Errorf("%d records acknowledged before their state rows were committed", n)
	}
	if err, _ := g.log.bad.Load().(error); err != nil {
		t.Error(err)
	}
	g.checkRows(t, records*perRecord)
	if f := g.p.failures.Value(); f == 0 {
		t.Error("no failure counted")
	}
}
