// Package pipeline carries events from the event log to the stores: a
// durable consumer reads log records in order, writes their valid events to
// the event store in large batches and their invalid ones to the quarantine,
// then acknowledges the records.
//
// Effects are idempotent, so a crash between writing and acknowledging only
// causes a redelivery that changes nothing: the event store keeps one event
// per (source, messageId) and the quarantine one entry per (log sequence,
// position). Later stages (identity, profiles, audiences, destinations) slot
// in as further steps of [Pipeline.store] under the same rule.
//
// [Pipeline.Run] works on four batches at once, each in its own goroutine:
// while one batch is appended to the event store and acknowledged, the next
// goes through identity resolution and the other state-store steps, the
// one after that is decoded, and the next one is fetched. Each batch passes the steps in the
// same order as before (a stored event's key is linked to its profile
// before the event is stored) and batches pass each step in log order; a
// batch is acknowledged only after its last step. The state store and the
// event store then work at the same time, on the two batches. Under a
// backlog the state stage takes two waiting batches at once, in one
// state-store transaction, and hands them on once it committed.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"tandem/event"
	"tandem/eventlog"
	"tandem/eventstore"
	"tandem/identity"
	"tandem/metrics"
)

// Quarantine keeps events that failed validation or processing.
type Quarantine interface {
	// Add stores problems found in the log record logSeq; adding the same
	// record's problems again stores nothing new.
	Add(ctx context.Context, logSeq uint64, problems []event.Problem) error
}

// Resolver is identity resolution: it takes a batch of valid events into
// the identity graph and links their profile keys in the event store,
// idempotently, before the events are stored.
type Resolver interface {
	Resolve(ctx context.Context, events []event.Event) error
}

// ObservingResolver is a [Resolver] whose reading of the events (their
// identifiers and traits, from each event's JSON) runs apart from the
// resolution: [Pipeline.Run] observes a batch in its decode stage, on
// another core than the state-store steps of the batch before.
type ObservingResolver interface {
	Resolver
	Observe(events []event.Event) *identity.Observed
	ResolveObserved(ctx context.Context, o *identity.Observed) error
}

// ConsentRecorder records the consent decisions events carry (package
// privacy), idempotently, after identity resolution.
type ConsentRecorder interface {
	Record(ctx context.Context, events []event.Event) error
}

// PlanChecker checks events against their sources' tracking plans
// (package trackingplan): it returns the events to keep and the problems
// of those that fail, to be quarantined. If it also has a method
// Flush(context.Context) error, that is called once per processed batch.
type PlanChecker interface {
	Check(ctx context.Context, events []event.Event) (keep []event.Event, problems []event.Problem, err error)
}

// TraitRecorder keeps computed traits current (package audience),
// idempotently, after identity resolution.
type TraitRecorder interface {
	Record(ctx context.Context, events []event.Event) error
}

// Options configure a [Pipeline].
type Options struct {
	Log        eventlog.Log
	Events     eventstore.Store
	Quarantine Quarantine
	Identity   Resolver      // nil: no identity resolution
	Consumer   string        // durable consumer name; default "pipeline"
	MaxRecords int           // records per fetch; default 256
	MaxEvents  int           // events per event-store batch; default 20000
	Wait       time.Duration // how long a fetch waits for the first record; default 200ms
	// Linger is how long the pipeline gathers records before writing them,
	// unless MaxBytes arrive sooner. Fewer, larger event-store
	// transactions cost far less (each one is an fsync and a sort) and
	// disturb collection's own fsyncs less. Default 500ms.
	Linger   time.Duration
	MaxBytes int // record bytes that end a gathering early; default 8 MiB
	// CommitWait is how long Run holds staged events uncommitted at most
	// while it has a backlog, when the event store is an
	// [eventstore.Stager] (see stage.go); default 10s, well below the
	// log's ack wait (30 s), after which it would deliver them again.
	CommitWait time.Duration
	// CommitRows and CommitHold: when idle, Run's write stage holds its
	// staged events for the store's own commit of CommitRows (its row
	// group) while the events arriving would fill that within CommitHold
	// of the oldest's staging (see stage.go). Zero: it commits at once.
	CommitRows int
	CommitHold time.Duration
	Metrics    *metrics.Registry
	Logger     *slog.Logger

	// Consent records events' consent decisions; nil: not recorded.
	Consent ConsentRecorder

	// Plans checks events against tracking plans before anything else
	// sees them; nil: not checked.
	Plans PlanChecker
	// Traits keeps computed traits current (package audience); nil: none.
	Traits TraitRecorder
	// Audiences evaluates audience membership for the profiles a batch
	// touches, after Traits (package audience); nil: none.
	Audiences TraitRecorder
	// Suppress picks the events of erased people (package privacy): they
	// are dropped before anything else sees them, and counted; nil: none.
	Suppress Suppressor
	// Defer, when set, is asked before Run gathers each batch; while it
	// returns true Run waits (collection first during bursts, burst.go).
	// It is asked too while a batch is gathered: the batch then stops
	// growing.
	Defer func() bool
	// StateBatch, when not nil, runs a batch's identity, consent and
	// computed-trait steps, of all its chunks, as one state-store
	// transaction (the state store's statestore.DB.Batch): one commit
	// instead of one per step and chunk. Audiences run after it commits,
	// as they read what it wrote.
	StateBatch func(ctx context.Context, fn func(ctx context.Context) error) error
}

// Suppressor reports whether an event carries an identifier of a person
// whose data was erased (see docs/privacy.md).
type Suppressor interface {
	Suppressed(e *event.Event) bool
}

// Pipeline is the processing loop.
type Pipeline struct {
	opts     Options
	consumer eventlog.Consumer
	lag      atomic.Int64
	// begun and ended count the batches that entered the first stage and
	// those that left the pipeline (see Barrier).
	begun, ended atomic.Uint64
	// Staging state of Run's write stage (stage.go): the batches staged
	// and not yet known committed, the events staged so far, and how many
	// of them the store last said were pending.
	held []heldBatch
	// recordSize is the mean size of the records fetched last (Run's
	// reading), 0 before the first.
	recordSize int
	// limit is the record bytes that end the gathering of the next
	// batch: MaxBytes once the pipeline is busy, less for the first
	// batches after it was idle (see gather).
	limit     int
	stagedPos uint64
	staging   stagingRate // of the write stage (stage.go)
	// lastFetch is when a fetch last found records (unix ns): records
	// still arriving, for the write stage's hold (stage.go).
	lastFetch atomic.Int64
	pending   int
	// oldestHeld is the ord of the first held batch, 0 if none; flush
	// asks the write stage to commit what it holds (Barrier).
	oldestHeld atomic.Uint64
	flush      atomic.Bool

	// free holds up to maxFreeChunks event buffers of full chunks
	// (capacity chunkCap or more), every entry zero, for decode to fill
	// again: a buffer a batch had comes back once its events are in the
	// event store. Not a sync.Pool: under load the collector runs more
	// than once while a buffer goes from the write stage back to decode,
	// and a pool would have dropped it. Emptied when the log has nothing
	// to give.
	freeMu sync.Mutex
	free   [][]event.Event

	stored      *metrics.Counter
	duplicates  *metrics.Counter
	quarantined *metrics.CounterVec
	suppressed  *metrics.Counter
	records     *metrics.Counter
	batchSecs   *metrics.Histogram
	stageSecs   *metrics.HistogramVec
	failures    *metrics.Counter

	// capacity is the pipeline's measure of its own pace (capacity.go).
	capacity capacityMeter
}

// The stages as tandem_pipeline_stage_seconds names them.
const (
	stageRead   = "read"   // fetching a batch's records from the log, with the linger
	stageDecode = "decode" // decoding, plans, quarantine, observing identity
	stageState  = "state"  // the state-store steps
	stageWrite  = "write"  // the event-store append or staging, and acknowledgements
	stageCommit = "commit" // committing staged events, and acknowledgements
)

// timed runs f, adds its time to the stage's and returns it.
// runStage runs one middle stage of Run: each batch from in through f,
// in order, then on to out; a batch f gives up on goes back to the log
// (redelivered) and counts as ended. It closes out when in is closed.
func (p *Pipeline) runStage(ctx context.Context, in <-chan *batch, out chan<- *batch, name string, c int, f func(context.Context, *batch) error) {
	defer close(out)
	for b := range in {
		var ok bool
		d := p.timed(name, func() { ok = p.retry(ctx, b, f) })
		if !ok {
			p.giveBack(b)
			p.ended.Add(1)
			continue
		}
		p.capacity.batch(c, b.bytes, d)
		// Not selecting on ctx: the later stages finish every batch
		// handed to them, so a stop loses nothing and repeats nothing.
		out <- b
	}
}

// runState is Run's state stage: runStage with p.prepare, except that
// when more batches wait for it (a backlog) it takes up to stateGroup of
// them at once and runs their state-store steps in one transaction
// (prepareGroup). Each batch is handed on only after that transaction
// committed, and in order.
func (p *Pipeline) runState(ctx context.Context, in <-chan *batch, out chan<- *batch) {
	defer close(out)
	group := make([]*batch, 0, stateGroup)
	for b := range in {
		group = append(group[:0], b)
		more := true
		for more && len(group) < stateGroup && p.opts.StateBatch != nil {
			select {
			case nb, ok := <-in:
				if !ok {
					more = false
					break
				}
				group = append(group, nb)
			default:
				more = false
			}
		}
		if len(group) > 1 {
			var err error
			d := p.timed(stageState, func() { err = p.prepareGroup(ctx, group) })
			if err == nil {
				bytes := 0
				for _, b := range group {
					bytes += b.bytes
				}
				p.capacity.batch(capState, bytes, d)
				for _, b := range group {
					out <- b
				}
				clear(group)
				continue
			}
			// Each batch again on its own, with the retries of any
			// other stage: one that fails keeps failing alone.
			p.failures.Add(1)
			p.opts.Logger.Warn("pipeline state batches failed together; trying them one by one", "batches", len(group), "err", err.Error())
		}
		for _, b := range group {
			var ok bool
			d := p.timed(stageState, func() { ok = p.retry(ctx, b, p.prepare) })
			if !ok {
				p.giveBack(b)
				p.ended.Add(1)
				continue
			}
			p.capacity.batch(capState, b.bytes, d)
			out <- b
		}
		clear(group)
	}
}

// stateGroup is how many waiting batches the state stage takes into one
// state-store transaction at most.
const stateGroup = 2

// prepareGroup runs the state-store steps of several batches, in order,
// in one state-store transaction (Options.StateBatch): one commit, and one
// wait for the identity links written beside it, for all of them.
func (p *Pipeline) prepareGroup(ctx context.Context, group []*batch) error {
	var chunks [][]event.Event
	var obs []*identity.Observed
	for _, b := range group {
		for i, c := range b.chunks {
			chunks = append(chunks, c)
			var ob *identity.Observed
			if i < len(b.observed) {
				ob = b.observed[i]
			}
			obs = append(obs, ob)
		}
	}
	return p.store(context.WithoutCancel(ctx), chunks, obs)
}

func (p *Pipeline) timed(stage string, f func()) time.Duration {
	start := time.Now()
	f()
	d := time.Since(start)
	p.stageSecs.Observe(d.Seconds(), stage)
	return d
}

// New prepares a pipeline; [Pipeline.Run] starts it.
func New(ctx context.Context, opts Options) (*Pipeline, error) {
	if opts.Consumer == "" {
		opts.Consumer = "pipeline"
	}
	if opts.MaxRecords <= 0 {
		opts.MaxRecords = 256
	}
	if opts.MaxEvents <= 0 {
		opts.MaxEvents = 20000
	}
	if opts.Wait <= 0 {
		opts.Wait = 200 * time.Millisecond
	}
	if opts.Linger <= 0 {
		opts.Linger = 500 * time.Millisecond
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = 8 << 20
	}
	if opts.CommitWait <= 0 {
		opts.CommitWait = 10 * time.Second
	}
	if opts.Metrics == nil {
		opts.Metrics = metrics.NewRegistry()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	c, err := opts.Log.Consumer(ctx, opts.Consumer)
	if err != nil {
		return nil, fmt.Errorf("pipeline: open consumer: %w", err)
	}
	p := &Pipeline{opts: opts, consumer: c}
	p.lag.Store(-1)
	m := opts.Metrics
	p.stored = m.NewCounter("tandem_pipeline_events_stored_total", "Events written to the event store.")
	p.duplicates = m.NewCounter("tandem_pipeline_events_duplicate_total", "Events skipped because their source and messageId were already stored.")
	p.suppressed = m.NewCounter("tandem_pipeline_events_suppressed_total", "Events dropped by the pipeline because they carry an identifier of an erased person (docs/privacy.md).")
	p.quarantined = m.NewCounterVec("tandem_pipeline_events_quarantined_total", "Events put in the quarantine by the pipeline, by reason.", "code")
	p.records = m.NewCounter("tandem_pipeline_records_total", "Event log records processed.")
	p.failures = m.NewCounter("tandem_pipeline_batch_failures_total", "Attempts at a batch of log records that failed (a store down or restarting); the records stay in the log, unacknowledged, and are tried again.")
	p.batchSecs = m.NewHistogram("tandem_pipeline_batch_seconds", "Time to process one batch of log records.", metrics.DefBuckets)
	p.stageSecs = m.NewHistogramVec("tandem_pipeline_stage_seconds", "Time one stage of the pipeline spent on one batch of log records (read, decode, state, write, commit): the stage with the largest sum is the one the others wait for.", metrics.DefBuckets, "stage")
	m.NewGaugeFunc("tandem_pipeline_capacity_bytes_per_second", "The pipeline's pace by its own measure: bytes of event log records a second its slowest stage gets through while it works, over the last few batches of at least 1 MiB; 0 until one was processed. Collection counts as a burst only above it (docs/operations.md#collection-first-during-bursts).", p.Capacity)
	// The lag gauges are the Monitor's (every node has one, pipeline or not).
	return p, nil
}

// Lag is the last measured number of unprocessed log records, -1 if unknown.
func (p *Pipeline) Lag() int64 { return p.lag.Load() }

// Run processes records until ctx is done. A batch in progress is finished
// before Run returns, so a stop loses nothing and repeats nothing.
// retryInPlace is how long a failed batch is retried before it is given
// back to the log (released), which delivers it again.
const retryInPlace = 20 * time.Second

func (p *Pipeline) Run(ctx context.Context) error {
	defer p.consumer.Close()
	lagTick := time.NewTicker(time.Second)
	defer lagTick.Stop()
	p.measureLag()
	// One batch waits between stages at most (after the state stage, the
	// group it hands on at once: see runState), and the reader holds the
	// one it gathered until decode takes it: memory stays bounded at a
	// few batches of MaxBytes.
	fetched := make(chan *batch)
	decoded := make(chan *batch, 1)
	resolved := make(chan *batch, stateGroup)
	done := make(chan struct{})
	go p.runStage(ctx, fetched, decoded, stageDecode, capDecode, p.decode)
	go p.runState(ctx, decoded, resolved)
	go func() {
		defer close(done)
		for {
			b, ok := p.nextWrite(ctx, resolved)
			if !ok {
				break
			}
			var ok2 bool
			d := p.timed(stageWrite, func() { ok2 = p.retry(ctx, b, p.writeStaged) })
			if ok2 {
				p.capacity.batch(capWrite, b.bytes, d)
			} else {
				p.giveBack(b)
			}
			p.ended.Add(1)
		}
		p.commitHeld(context.WithoutCancel(ctx))
	}()
	// The read stage, here: it gathers the next batch while decode works
	// on the one before.
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		select {
		case <-lagTick.C:
			p.measureLag()
		default:
		}
		p.waitForCollection(ctx)
		read := time.Now()
		msgs, err := p.gather(ctx)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			p.opts.Logger.Warn("pipeline fetch failed", "err", err.Error())
			sleep(ctx, backoff)
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		if len(msgs) == 0 {
			p.dropFreeChunks()
			continue
		}
		p.stageSecs.Observe(time.Since(read).Seconds(), stageRead)
		b := &batch{msgs: msgs, start: time.Now()}
		for _, m := range msgs {
			b.bytes += len(m.Data)
		}
		// Begun once gathered, before decode reads the suppression list
		// (Barrier); and a gathered batch keeps the write stage from
		// taking the pipeline for idle.
		b.ord = p.begun.Add(1)
		fetched <- b
	}
	close(fetched)
	<-done
	p.measureLag()
	return nil
}

// batch is one gathered run of log records on its way through the stages.
type batch struct {
	msgs   []eventlog.Message
	chunks [][]event.Event // the valid events, at most MaxEvents per chunk
	// observed holds each chunk's observation when the resolver is an
	// ObservingResolver.
	observed []*identity.Observed
	// prepared holds each chunk prepared for staging when the event
	// store is an [eventstore.Preparer] (see writeStaged).
	prepared []eventstore.Prepared
	start    time.Time
	ord      uint64 // its number in the order batches began (begun)
	bytes    int    // of its records, as fetched
}

// giveBack gives a batch the pipeline gave up on back to the log, which
// delivers it again (to this node or another); if that fails, the log's
// ack wait does.
func (p *Pipeline) giveBack(b *batch) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.consumer.Release(ctx, b.msgs...); err != nil {
		p.opts.Logger.Warn("pipeline release failed; the log delivers the records again after its ack wait", "err", err.Error())
	}
}

// retry runs one stage on b, again after a failure (a store restarting),
// the batch's records still held, for up to retryInPlace; after that it
// gives up and the caller releases the batch, for the log to deliver again
// (to this node or another). It reports whether the stage succeeded. The stage
// runs even if ctx ended meanwhile, so a batch in progress is finished.
func (p *Pipeline) retry(ctx context.Context, b *batch, stage func(context.Context, *batch) error) bool {
	start := time.Now()
	backoff := 100 * time.Millisecond
	for {
		err := stage(context.WithoutCancel(ctx), b)
		if err == nil {
			return true
		}
		p.failures.Add(1)
		p.opts.Logger.Error("pipeline batch failed; will retry", "err", err.Error())
		sleep(ctx, backoff)
		backoff = min(2*backoff, 5*time.Second)
		if ctx.Err() != nil || time.Since(start) > retryInPlace {
			return false
		}
	}
}

// gather fetches records until MaxBytes of them arrived or Linger passed
// since the first one; it returns none if none came within Wait.
//
// It polls the log (a fetch that takes what is there, then a pause)
// instead of leaving a waiting request at it: a waiting request that
// expires just as the log hands it a record loses that record until the
// log's ack wait (30 s) delivers it again, and on a busy machine, with a
// fetch always under way beside the other stages, that happened often
// enough to hold the pipeline's lag at tens of seconds.
//
// The first batch after the pipeline was idle is an eighth of MaxBytes,
// and each batch after it twice the one before, up to MaxBytes: the later
// stages start on a backlog after a short read and decode rather than
// wait for a full batch, and each batch is read and decoded while the
// state stage works on the one before, half its size (the state stage
// takes about twice the read's or decode's time an event).
func (p *Pipeline) gather(ctx context.Context) ([]eventlog.Message, error) {
	var msgs []eventlog.Message
	if p.limit <= 0 {
		p.limit = max(1, p.opts.MaxBytes/rampBatches)
	}
	for first := time.Now(); ; {
		var err error
		if msgs, err = p.fetch(ctx, 0); err != nil || len(msgs) > 0 {
			msgs, err = p.gatherMore(ctx, msgs, err)
			if len(msgs) > 0 {
				p.limit = min(2*p.limit, p.opts.MaxBytes)
			}
			return msgs, err
		}
		if time.Since(first) >= p.opts.Wait || ctx.Err() != nil {
			p.limit = 0 // idle: the next batch starts small again
			return nil, nil
		}
		sleep(ctx, pollInterval)
	}
}

// rampBatches is how much smaller than MaxBytes the first batch after an
// idle spell is.
const rampBatches = 8

// fetch takes what the log has now, as many records as should fill the
// batch to MaxBytes when size bytes are gathered already (judged by the
// size of the records fetched last), at most MaxRecords: a batch is one
// or two fetches, and does not overshoot MaxBytes by much.
func (p *Pipeline) fetch(ctx context.Context, size int) ([]eventlog.Message, error) {
	n := p.opts.MaxRecords
	if p.recordSize > 0 {
		n = min(n, max(0, p.limit-size)/p.recordSize+1)
	} else {
		n = min(n, firstFetch)
	}
	msgs, err := p.consumer.Fetch(ctx, n, 0)
	if len(msgs) > 0 {
		p.lastFetch.Store(time.Now().UnixNano())
		bytes := 0
		for _, m := range msgs {
			bytes += len(m.Data)
		}
		p.recordSize = max(1, bytes/len(msgs))
	}
	return msgs, err
}

// firstFetch is the records the pipeline asks for while it does not know
// their size.
const firstFetch = 16

// pollInterval is the pause between fetches that found nothing.
const pollInterval = 20 * time.Millisecond

func (p *Pipeline) gatherMore(ctx context.Context, msgs []eventlog.Message, err error) ([]eventlog.Message, error) {
	if err != nil || len(msgs) == 0 {
		return msgs, err
	}
	size := 0
	for _, m := range msgs {
		size += len(m.Data)
	}
	deadline := time.Now().Add(p.opts.Linger)
	// When a burst of collection begins while the batch is gathered, what
	// was fetched is processed and the rest waits (Options.Defer).
	for size < p.limit && len(msgs) < 16*p.opts.MaxRecords && (p.opts.Defer == nil || !p.opts.Defer()) {
		wait := time.Until(deadline)
		if wait <= 0 || ctx.Err() != nil {
			break
		}
		more, err := p.fetch(ctx, size)
		if err != nil {
			// What was fetched is processed; the error surfaces next time.
			break
		}
		if len(more) == 0 {
			sleep(ctx, min(wait, pollInterval))
			continue
		}
		for _, m := range more {
			size += len(m.Data)
		}
		msgs = append(msgs, more...)
	}
	return msgs, nil
}

// Drain processes until the log has nothing pending, or ctx ends.
func (p *Pipeline) Drain(ctx context.Context) error {
	for {
		msgs, err := p.consumer.Fetch(ctx, p.opts.MaxRecords, 50*time.Millisecond)
		if err != nil {
			return err
		}
		if len(msgs) == 0 {
			n, err := p.consumer.Pending(ctx)
			if err != nil {
				return err
			}
			if n == 0 {
				p.lag.Store(0)
				return nil
			}
			continue
		}
		if err := p.process(ctx, msgs); err != nil {
			return err
		}
	}
}

func (p *Pipeline) measureLag() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if n, err := p.consumer.Pending(ctx); err == nil {
		p.lag.Store(int64(n))
	}
}

// Barrier waits until every batch begun before it is done (written and
// acknowledged, or given up and left for the log to deliver again): the batches after it
// see what was true when Barrier was called (an erasure calls it after
// adding to the suppression list, so that no batch that missed the list
// writes after the erasure's deletions). With the stages overlapping, up
// to eight batches may be in flight (one a stage, one between each two,
// and a second in and after the state stage: see runState).
func (p *Pipeline) Barrier(ctx context.Context) error {
	target := p.begun.Load()
	for p.ended.Load() < target || p.holds(target) {
		if p.holds(target) {
			// Staged batches count once committed and acknowledged.
			p.flush.Store(true)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}

// process takes one fetched run of records through every stage, one after
// the other (Drain's way; Run overlaps the stages of successive batches).
func (p *Pipeline) process(ctx context.Context, msgs []eventlog.Message) error {
	b := &batch{msgs: msgs, start: time.Now()}
	p.begun.Add(1)
	defer p.ended.Add(1)
	for _, stage := range []func(context.Context, *batch) error{p.decode, p.prepare, p.write} {
		if err := stage(ctx, b); err != nil {
			return err
		}
	}
	return nil
}

// decode is the first stage: it decodes b's records, checks their events
// against the tracking plans, quarantines what failed (idempotent per
// record) and splits the rest into chunks of at most MaxEvents.
func (p *Pipeline) decode(ctx context.Context, b *batch) error {
	p.releaseChunks(b) // those of an attempt that failed
	left := 0          // record bytes not decoded yet, for a chunk's capacity
	for _, m := range b.msgs {
		left += len(m.Data)
	}
	// An empty suppression list (the usual case) is asked once a batch,
	// not once an event; a name added to it before the batch began is
	// seen either way (see Barrier).
	suppress := p.opts.Suppress != nil
	if l, ok := p.opts.Suppress.(interface{ Len() int }); ok && l.Len() == 0 {
		suppress = false
	}
	var chunk []event.Event
	for _, m := range b.msgs {
		if chunk == nil {
			// Each record is decoded straight into the chunk: room for
			// what the records left may hold (an event entry takes well
			// over 64 bytes), so the chunk is rarely copied to grow.
			chunk = p.newChunk(min(left/64+1, p.chunkCap()))
		}
		left -= len(m.Data)
		start := len(chunk)
		var problems []event.Problem
		var done []string
		var err error
		chunk, problems, done, err = event.AppendRecord(chunk, nil, m.Data)
		if err != nil {
			// Never drop: keep the whole record, undecoded, with the reason.
			problems = []event.Problem{{Code: "corrupt_record", Message: err.Error(), Raw: m.Data, ReceivedAt: time.Now().UTC()}}
		}
		if slices.Contains(done, p.opts.Consumer) {
			// A copy the event log made of a record processed already,
			// without an erased person's entries.
			clear(chunk[start:])
			chunk = chunk[:start]
			continue
		}
		events := chunk[start:]
		if suppress {
			events, problems = p.suppress(events, problems)
		}
		if p.opts.Plans != nil && len(events) > 0 {
			// Before identity: an event that fails its plan reaches no
			// store. Its problems join the record's, so a redelivery
			// quarantines it once.
			keep, failed, err := p.opts.Plans.Check(ctx, events)
			if err != nil {
				return fmt.Errorf("pipeline: tracking plans: %w", err)
			}
			events, problems = keep, append(problems, failed...)
		}
		if len(problems) > 0 {
			if err := p.opts.Quarantine.Add(ctx, m.Seq, problems); err != nil {
				return fmt.Errorf("pipeline: quarantine record %d: %w", m.Seq, err)
			}
			for _, pr := range problems {
				p.quarantined.Add(1, pr.Code)
			}
		}
		// The record's events that remain take its place in the chunk
		// (a copy onto itself when nothing was dropped).
		had := len(chunk)
		chunk = append(chunk[:start], events...)
		clear(chunk[len(chunk):had])
		if len(chunk) >= p.opts.MaxEvents {
			b.chunks = append(b.chunks, chunk)
			chunk = nil
		}
	}
	if len(chunk) > 0 {
		b.chunks = append(b.chunks, chunk)
	}
	b.observed = b.observed[:0]
	if o, ok := p.opts.Identity.(ObservingResolver); ok {
		for _, c := range b.chunks {
			b.observed = append(b.observed, o.Observe(c))
		}
	}
	// The event store's own work on each event, here rather than in the
	// write stage: the later stages do not change the events.
	b.prepared = b.prepared[:0]
	if pr, ok := p.opts.Events.(eventstore.Preparer); ok {
		for _, c := range b.chunks {
			b.prepared = append(b.prepared, pr.Prepare(c))
		}
	}
	return nil
}

// prepare is the second stage: every state-store step of the batch's
// chunks, in one state-store transaction (see store).
func (p *Pipeline) prepare(ctx context.Context, b *batch) error {
	return p.store(ctx, b.chunks, b.observed)
}

// write is the last stage: it appends each chunk to the event store, then
// acknowledges the records.
func (p *Pipeline) write(ctx context.Context, b *batch) error {
	for _, c := range b.chunks {
		if err := p.appendEvents(ctx, c); err != nil {
			return err
		}
	}
	p.releaseChunks(b)
	p.finish(ctx, b)
	return nil
}

// chunkCap is the capacity of a full chunk: room for MaxEvents and the
// record that ends it.
func (p *Pipeline) chunkCap() int { return p.opts.MaxEvents + p.opts.MaxEvents/8 }

// newChunk returns an empty event buffer of the capacity asked for (at
// most chunkCap): a full one from the pool when there is one.
func (p *Pipeline) newChunk(capacity int) []event.Event {
	if capacity < p.chunkCap() {
		return make([]event.Event, 0, capacity)
	}
	p.freeMu.Lock()
	defer p.freeMu.Unlock()
	if n := len(p.free); n > 0 {
		c := p.free[n-1]
		p.free[n-1] = nil
		p.free = p.free[:n-1]
		return c
	}
	return make([]event.Event, 0, p.chunkCap())
}

// maxFreeChunks bounds the buffers kept for reuse: the chunks of the
// batches in flight, about one a stage.
const maxFreeChunks = 4

// dropFreeChunks lets the buffers kept for reuse go, when the pipeline is
// idle.
func (p *Pipeline) dropFreeChunks() {
	p.freeMu.Lock()
	defer p.freeMu.Unlock()
	clear(p.free)
	p.free = nil
}

// releaseChunks gives b's event buffers back for the batches after it,
// cleared so that they keep nothing of b alive (its records, its
// strings). The event store keeps nothing of the events it was given once
// Append or Stage returned, and the earlier stages are done with them.
func (p *Pipeline) releaseChunks(b *batch) {
	for i, c := range b.chunks {
		if cap(c) >= p.chunkCap() { // full, or grown by a long record
			// decode leaves every entry past len zero.
			clear(c)
			p.freeMu.Lock()
			if len(p.free) < maxFreeChunks {
				p.free = append(p.free, c[:0])
			}
			p.freeMu.Unlock()
		}
		b.chunks[i] = nil
	}
	b.chunks = b.chunks[:0]
	clear(b.prepared)
	b.prepared = b.prepared[:0]
}

// finish acknowledges b's records once its events are stored.
func (p *Pipeline) finish(ctx context.Context, b *batch) {
	if f, ok := p.opts.Plans.(interface{ Flush(context.Context) error }); ok {
		// What the plans noted in this batch (unplanned events flagged),
		// in one write; only a count, so a failure does not hold the batch.
		if err := f.Flush(ctx); err != nil {
			p.opts.Logger.Warn("tracking plan notes not recorded; will retry", "err", err.Error())
		}
	}
	if err := p.consumer.Ack(ctx, b.msgs...); err != nil {
		// Effects are idempotent: a redelivery after a lost ack is harmless.
		p.opts.Logger.Warn("pipeline ack failed", "err", err.Error())
	}
	p.records.Add(uint64(len(b.msgs)))
	p.batchSecs.Observe(time.Since(b.start).Seconds())
}

// suppress drops the events and problems of erased people.
func (p *Pipeline) suppress(events []event.Event, problems []event.Problem) ([]event.Event, []event.Problem) {
	n := len(events) + len(problems)
	events = slices.DeleteFunc(events, func(e event.Event) bool { return p.opts.Suppress.Suppressed(&e) })
	problems = slices.DeleteFunc(problems, func(pr event.Problem) bool {
		return p.opts.Suppress.Suppressed(&event.Event{SourceID: pr.SourceID, MessageID: pr.MessageID, Raw: pr.Raw})
	})
	p.suppressed.Add(uint64(n - len(events) - len(problems)))
	return events, problems
}

// store runs the state-store steps on a batch's chunks of events, before
// they are appended to the event store ([Pipeline.appendEvents]); obs, if
// not nil, holds each chunk's identity observation.
//
// With Options.StateBatch the steps of every chunk run in one state-store
// transaction: a batch pays one commit (its fsync, and the write of every
// index page it dirtied, which costs about as much for the 1,200 events
// a full batch has past MaxEvents as for the 20,000 before them) and one
// wait for the identity links written beside it, not one per chunk. If a
// step fails, nothing of the batch's steps is committed and the batch is
// tried again whole. The audiences run after the commit, as they read
// what it wrote.
func (p *Pipeline) store(ctx context.Context, chunks [][]event.Event, obs []*identity.Observed) error {
	steps := func(ctx context.Context) error {
		for i, c := range chunks {
			var ob *identity.Observed
			if i < len(obs) {
				ob = obs[i]
			}
			if err := p.stateSteps(ctx, c, ob); err != nil {
				return err
			}
		}
		return nil
	}
	if p.opts.StateBatch != nil {
		if err := p.opts.StateBatch(ctx, steps); err != nil {
			return err
		}
	} else if err := steps(ctx); err != nil {
		return err
	}
	if p.opts.Audiences != nil {
		for _, c := range chunks {
			if err := p.opts.Audiences.Record(ctx, c); err != nil {
				return fmt.Errorf("pipeline: audiences: %w", err)
			}
		}
	}
	return nil
}

// stateSteps are the steps of [Pipeline.store] before the audiences.
func (p *Pipeline) stateSteps(ctx context.Context, batch []event.Event, ob *identity.Observed) error {
	if p.opts.Identity != nil {
		// Before the events are stored, so that a stored event's key is
		// already linked to its profile.
		resolve := func() error { return p.opts.Identity.Resolve(ctx, batch) }
		if o, ok := p.opts.Identity.(ObservingResolver); ok && ob != nil {
			resolve = func() error { return o.ResolveObserved(ctx, ob) }
		}
		if err := resolve(); err != nil {
			return fmt.Errorf("pipeline: identity: %w", err)
		}
	}
	if p.opts.Consent != nil {
		// Before the events are stored (and so before any delivery of
		// them), so that a route's consent check sees their decisions.
		if err := p.opts.Consent.Record(ctx, batch); err != nil {
			return fmt.Errorf("pipeline: consent: %w", err)
		}
	}
	if p.opts.Traits != nil {
		// After identity, so that merges are known when values are read.
		if err := p.opts.Traits.Record(ctx, batch); err != nil {
			return fmt.Errorf("pipeline: computed traits: %w", err)
		}
	}
	return nil
}

// appendEvents writes a chunk to the event store. If the chunk as a whole
// keeps failing, events are tried one by one and those that fail alone go
// to the quarantine, so one poisonous event cannot block the pipeline.
func (p *Pipeline) appendEvents(ctx context.Context, batch []event.Event) error {
	n, err := p.opts.Events.Append(ctx, batch)
	if err == nil {
		p.stored.Add(uint64(n))
		p.duplicates.Add(uint64(len(batch) - n))
		return nil
	}
	if ctx.Err() != nil {
		return err
	}
	// A store that is down (a server killed or restarting) fails every
	// write: keep the records unacknowledged and retry the batch, rather
	// than write its events one by one (which a server store would store
	// as that many parts, if it answered at all).
	if _, probe := p.opts.Events.Count(ctx); probe != nil {
		return fmt.Errorf("pipeline: event store unavailable: %w", err)
	}
	// A store just back may fail once more on a connection from before
	// its restart: the whole batch again, once, after a pause.
	sleep(ctx, time.Second)
	if n, err1 := p.opts.Events.Append(ctx, batch); err1 == nil {
		p.stored.Add(uint64(n))
		p.duplicates.Add(uint64(len(batch) - n))
		return nil
	} else if ctx.Err() != nil {
		return err1
	}
	p.opts.Logger.Warn("event store batch failed; retrying event by event", "events", len(batch), "err", err.Error())
	paused := false
	for i := range batch {
		n, err1 := p.opts.Events.Append(ctx, batch[i:i+1])
		if err1 == nil {
			p.stored.Add(uint64(n))
			p.duplicates.Add(uint64(1 - n))
			continue
		}
		if errors.Is(err1, context.Canceled) || errors.Is(err1, context.DeadlineExceeded) {
			return err1
		}
		// If even a tiny write fails, the store itself is down: retry later.
		if _, probe := p.opts.Events.Count(ctx); probe != nil {
			return fmt.Errorf("pipeline: event store unavailable: %w", err1)
		}
		// A server store may fail one write and answer the next (a
		// restart, a lost connection): try once more before deciding the
		// event itself is at fault.
		// One pause per batch: a batch of truly bad events costs no more.
		if !paused {
			paused = true
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Second):
			}
		}
		if n, err2 := p.opts.Events.Append(ctx, batch[i:i+1]); err2 == nil {
			p.stored.Add(uint64(n))
			p.duplicates.Add(uint64(1 - n))
			continue
		}
		e := batch[i]
		pr := event.Problem{SourceID: e.SourceID, MessageID: e.MessageID, ReceivedAt: e.ReceivedAt,
			Code: "processing_failed", Message: "event store rejected the event: " + err1.Error(), Raw: e.Raw}
		// Key the entry by the event's identity so a retry adds it once.
		if err := p.opts.Quarantine.Add(ctx, processingSeq(e), []event.Problem{pr}); err != nil {
			return fmt.Errorf("pipeline: quarantine failed event: %w", err)
		}
		p.quarantined.Add(1, pr.Code)
	}
	return nil
}

// processingSeq gives events that failed in processing a stable quarantine
// key outside the log's sequence space (bit 62 set; logs never get that far).
func processingSeq(e event.Event) uint64 {
	h := uint64(14695981039346656037)
	for _, s := range []string{e.SourceID, "\x00", e.MessageID} {
		for i := 0; i < len(s); i++ {
			h ^= uint64(s[i])
			h *= 1099511628211
		}
	}
	return h&(1<<62-1) | 1<<62
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
