package delivery

import (
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"tandem/event"
	"tandem/eventlog"
	"tandem/governance"
	"tandem/statestore"
)

// Worker tuning.
const (
	fetchMax   = 256                    // records per fetch
	fetchWait  = 200 * time.Millisecond // wait for the first record
	laneQueue  = 1024                   // events queued per lane: the backpressure on fetching
	ackLinger  = 50 * time.Millisecond  // how long finished records wait to be acked together
	ackMax     = 512                    // records acked in one go at most
	lagEvery   = 2 * time.Second
	stopFlush  = 5 * time.Second // bounds the last acks and the release on stop
	storeRetry = time.Second     // wait before retrying a failed dead-letter write
)

// consumerFrom is a log whose new consumers can start at a time
// (eventlog/jetstream).
type consumerFrom interface {
	ConsumerFrom(ctx context.Context, name string, start time.Time) (eventlog.Consumer, error)
}

// startMargin is how long before its approval a destination's new
// consumer starts.
const startMargin = 5 * time.Minute

// worker delivers one approved destination: a durable consumer on the
// event log, events spread over ordered lanes by profile key, and acks of
// each record once all its events are delivered or dead-lettered.
type worker struct {
	m        *Manager
	d        governance.Destination
	sender   Sender
	consumer eventlog.Consumer
	ring     *ring
	limit    *limiter

	ctx    context.Context
	cancel context.CancelFunc
	lanes  []chan *item
	done   chan eventlog.Message // records whose events are all handled
	wg     sync.WaitGroup        // fetch loop and lanes
	ackWG  sync.WaitGroup

	replaying sync.Map // dead letter id → struct{}
	// inflight holds the log sequences dispatched and not yet acked: a
	// record the log delivers again meanwhile (its ack wait passed while a
	// lane retried) is not dispatched twice; the first dispatch acks it.
	inflight sync.Map // uint64 → struct{}
}

// item is one event to deliver: from the log (rec set) or a replayed dead
// letter (dl set).
type item struct {
	out      Outgoing
	key      string
	ev       *event.Event // the event from the log, for the consent check before each attempt (nil for a replay)
	source   string       // the event's source, for the catalogue's flows ("" for a replay)
	received time.Time
	rec      *record
	dl       *DeadLetter
}

type record struct {
	msg  eventlog.Message
	left atomic.Int32
}

func (m *Manager) start(ctx context.Context, d governance.Destination) (*worker, error) {
	sender, err := m.reg.open(d)
	if err != nil {
		return nil, err
	}
	var c eventlog.Consumer
	if from, ok := m.opts.Log.(consumerFrom); ok && d.ApprovedAt != nil {
		// A new consumer starts near the approval instead of reading the
		// whole log only to skip it; the margin covers a log server whose
		// clock is behind (what it lets in is skipped by receivedAt).
		c, err = from.ConsumerFrom(ctx, ConsumerName(d.ID), d.ApprovedAt.Add(-startMargin))
	} else {
		c, err = m.opts.Log.Consumer(ctx, ConsumerName(d.ID))
	}
	if err != nil {
		return nil, err
	}
	w := &worker{m: m, d: d, sender: sender, consumer: c, ring: m.ring(d.ID), limit: newLimiter(sender.Rate()),
		done: make(chan eventlog.Message, 4*fetchMax)}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	w.lanes = make([]chan *item, max(1, sender.Concurrency()))
	for i := range w.lanes {
		w.lanes[i] = make(chan *item, laneQueue)
		w.wg.Add(1)
		go w.lane(w.lanes[i])
	}
	w.wg.Add(1)
	go w.fetch()
	w.ackWG.Add(1)
	go w.acker()
	m.opts.Logger.Info("delivery started", "destination", d.ID, "type", d.Type, "lanes", len(w.lanes))
	return w, nil
}

// stop ends the delivery: lanes stop (a request under way is abandoned),
// finished records are acked, the rest released for the next start.
func (w *worker) stop() {
	w.cancel()
	w.wg.Wait()
	close(w.done)
	w.ackWG.Wait()
	_ = w.consumer.Close()
	if c, ok := w.sender.(io.Closer); ok {
		_ = c.Close()
	}
	w.m.opts.Logger.Info("delivery stopped", "destination", w.d.ID)
}

func (w *worker) fetch() {
	defer w.wg.Done()
	lagT := time.NewTicker(lagEvery)
	defer lagT.Stop()
	w.measureLag()
	for w.ctx.Err() == nil {
		select {
		case <-lagT.C:
			w.measureLag()
		default:
		}
		msgs, err := w.consumer.Fetch(w.ctx, fetchMax, fetchWait)
		if err != nil {
			if w.ctx.Err() != nil {
				return
			}
			w.m.opts.Logger.Warn("delivery: fetch failed", "destination", w.d.ID, "err", err.Error())
			sleep(w.ctx, time.Second)
			continue
		}
		for _, msg := range msgs {
			if !w.dispatch(msg) {
				return
			}
		}
	}
}

func (w *worker) measureLag() {
	ctx, cancel := context.WithTimeout(w.ctx, 2*time.Second)
	defer cancel()
	if n, err := w.consumer.Pending(ctx); err == nil {
		w.m.lag.Set(float64(n), w.d.ID)
	}
}

// dispatch queues a record's events on their lanes; false when stopping.
func (w *worker) dispatch(msg eventlog.Message) bool {
	if _, again := w.inflight.LoadOrStore(msg.Seq, struct{}{}); again {
		return true
	}
	events, _, done, err := event.DecodeRecordDone(msg.Data)
	if err != nil || slices.Contains(done, ConsumerName(w.d.ID)) {
		// The pipeline quarantines a corrupt record; nothing to deliver.
		// A copy the log made, for an erasure, of a record delivered
		// already: nothing new.
		w.done <- msg
		return true
	}
	id := w.d.ID
	rec := &record{msg: msg}
	items := make([]*item, 0, len(events))
	for i := range events {
		e := &events[i]
		if w.d.ApprovedAt != nil && e.ReceivedAt.Before(*w.d.ApprovedAt) {
			w.m.events.Add(1, id, "before_approval")
			continue
		}
		if sup := w.m.opts.Suppress; sup != nil && sup.Suppressed(e) {
			w.m.events.Add(1, id, "suppressed")
			continue
		}
		if !passes(w.d.Filter, e) || !forAudience(w.d.ID, e) {
			w.m.events.Add(1, id, "filtered")
			continue
		}
		// Consent is checked by the lane before each attempt (deliver).
		body, err := render(e, w.d.Mapping)
		if err != nil {
			w.m.events.Add(1, id, "invalid")
			continue
		}
		items = append(items, &item{out: Outgoing{MessageID: e.MessageID, Body: body}, key: profileKey(e), ev: e, source: e.SourceID, received: e.ReceivedAt, rec: rec})
	}
	if len(items) == 0 {
		w.done <- msg
		return true
	}
	rec.left.Store(int32(len(items)))
	for _, it := range items {
		select {
		case w.lanes[laneOf(it.key, len(w.lanes))] <- it:
		case <-w.ctx.Done():
			return false
		}
	}
	return true
}

// consented reports whether e may go to this destination by its profile's
// consent for the destination's purposes. When the consent store cannot
// answer, it asks again (with backoff) rather than send without consent
// or drop the event: this destination waits, the others do not. alive is
// false when the worker is stopping; the record then stays unacknowledged
// and is delivered again.
func (w *worker) consented(e *event.Event) (ok, alive bool) {
	c := w.m.opts.Consent
	if c == nil || len(w.d.ConsentPurposes) == 0 {
		return true, true
	}
	wait := 100 * time.Millisecond
	for {
		ok, _, err := c.AllowedEvent(w.ctx, e, w.d.ConsentPurposes)
		if err == nil {
			return ok, true
		}
		if w.ctx.Err() != nil {
			return false, false
		}
		w.m.opts.Logger.Warn("consent check failed; retrying", "destination", w.d.ID, "err", err.Error())
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-w.ctx.Done():
			t.Stop()
			return false, false
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// replay queues dead letters; it returns how many (those already being
// replayed are left out).
func (w *worker) replay(dls []DeadLetter) int {
	var queued []*item
	for i := range dls {
		if _, busy := w.replaying.LoadOrStore(dls[i].ID, struct{}{}); busy {
			continue
		}
		d := dls[i]
		queued = append(queued, &item{out: Outgoing{MessageID: d.MessageID, Body: []byte(d.body)}, key: d.laneKey, dl: &d})
	}
	go func() {
		for _, it := range queued {
			select {
			case w.lanes[laneOf(it.key, len(w.lanes))] <- it:
			case <-w.ctx.Done():
				return
			}
		}
	}()
	return len(queued)
}

func (w *worker) lane(ch chan *item) {
	defer w.wg.Done()
	n := max(1, w.sender.MaxBatch())
	for {
		var first *item
		select {
		case first = <-ch:
		case <-w.ctx.Done():
			return
		}
		batch := []*item{first}
	gather:
		for len(batch) < n {
			select {
			case it := <-ch:
				batch = append(batch, it)
			default:
				break gather
			}
		}
		if !w.deliver(batch) {
			return
		}
	}
}

// deliver sends a batch with retries; on success or after the retry
// budget (dead letters stored) the batch's records count it done. false
// when stopping before that: the records stay unacked.
func (w *worker) deliver(batch []*item) bool {
	id := w.d.ID
	policy := w.m.opts.Retry
	var lastErr error
	attempt := 0
	for attempt = 1; ; attempt++ {
		if err := w.limit.wait(w.ctx); err != nil {
			return false
		}
		// Checked before every attempt: a person erased while their
		// events waited or were retried is not sent.
		var dropped []*item
		if batch, dropped = w.unsuppressed(batch); len(dropped) > 0 {
			w.m.events.Add(uint64(len(dropped)), id, "suppressed")
			if !w.finish(dropped, nil, 0) {
				return false
			}
			if len(batch) == 0 {
				return true
			}
		}
		// Consent too: a withdrawal made while the events waited in their
		// lane or were retried holds for them.
		keep, refused, alive := w.consentedBatch(batch)
		if !alive {
			return false
		}
		if batch = keep; len(refused) > 0 {
			w.m.events.Add(uint64(len(refused)), id, "no_consent")
			if !w.finish(refused, nil, 0) {
				return false
			}
			if len(batch) == 0 {
				return true
			}
		}
		outs := make([]Outgoing, len(batch))
		for i, it := range batch {
			outs[i] = it.out
		}
		start := time.Now()
		err := w.sender.Send(w.ctx, outs)
		took := time.Since(start)
		if err != nil && w.ctx.Err() != nil {
			return false
		}
		w.m.request.Observe(took.Seconds(), id)
		if err == nil {
			now := time.Now()
			w.m.attempts.Add(1, id, "ok")
			w.record(batch, attempt, "delivered", nil, took)
			for _, it := range batch {
				w.m.events.Add(1, id, "delivered")
				w.m.flows.add(it.source, id, now, 1)
				if it.rec != nil {
					w.m.latency.Observe(now.Sub(it.received).Seconds(), id)
				}
			}
			return w.finish(batch, nil, attempt)
		}
		lastErr = err
		if !retryable(err) || attempt >= policy.MaxAttempts {
			w.m.attempts.Add(1, id, "failed")
			w.record(batch, attempt, "dead_letter", err, took)
			break
		}
		w.m.attempts.Add(1, id, "retry")
		w.record(batch, attempt, "retrying", err, took)
		if !sleep(w.ctx, policy.Backoff(attempt, err)) {
			return false
		}
	}
	w.m.events.Add(uint64(len(batch)), id, "dead_letter")
	return w.finish(batch, lastErr, attempt)
}

func (w *worker) record(batch []*item, attempt int, status string, err error, took time.Duration) {
	a := Attempt{Attempt: attempt, Status: status, At: time.Now().UTC(), LatencyMs: float64(took.Microseconds()) / 1000}
	if err != nil {
		a.Error = err.Error()
		var se *SendError
		if errors.As(err, &se) {
			a.HTTPStatus = se.Status
		}
	}
	for _, it := range batch {
		a.MessageID = it.out.MessageID
		a.Replay = it.dl != nil
		a.source, a.received = it.source, it.received
		w.ring.add(a)
	}
}

// unsuppressed splits batch into the items to send and those of erased
// people.
func (w *worker) unsuppressed(batch []*item) (keep, dropped []*item) {
	sup := w.m.opts.Suppress
	if sup == nil {
		return batch, nil
	}
	keep = batch[:0:0]
	for _, it := range batch {
		e := event.Event{}
		if v, ok := strings.CutPrefix(it.key, "u:"); ok {
			e.UserID = v
		} else if v, ok := strings.CutPrefix(it.key, "a:"); ok {
			e.AnonymousID = v
		}
		if sup.Suppressed(&e) {
			dropped = append(dropped, it)
		} else {
			keep = append(keep, it)
		}
	}
	return keep, dropped
}

// consentedBatch splits batch into the items whose profile's consent
// allows this destination now and those refused. Replayed dead letters
// are kept: they carry no event to judge. alive is false when the worker
// is stopping.
func (w *worker) consentedBatch(batch []*item) (keep, refused []*item, alive bool) {
	if w.m.opts.Consent == nil || len(w.d.ConsentPurposes) == 0 {
		return batch, nil, true
	}
	keep = batch[:0:0]
	for _, it := range batch {
		if it.ev == nil {
			keep = append(keep, it)
			continue
		}
		ok, alive := w.consented(it.ev)
		if !alive {
			return nil, nil, false
		}
		if ok {
			keep = append(keep, it)
		} else {
			refused = append(refused, it)
		}
	}
	return keep, refused, true
}

// finish stores dead letters when failed is not nil (updates them, for
// replayed ones), removes delivered replayed ones, and marks log records
// done. The state store is retried until it answers or the worker stops.
func (w *worker) finish(batch []*item, failed error, attempts int) bool {
	var add []DeadLetter
	var delivered []string
	now := time.Now().UTC()
	for _, it := range batch {
		switch {
		case it.dl != nil && failed == nil:
			delivered = append(delivered, it.dl.ID)
		case it.dl != nil:
			for !w.try(func(ctx context.Context) error {
				return w.m.dead.update(ctx, it.dl.ID, it.dl.Attempts+attempts, failed.Error(), now)
			}) {
				if w.ctx.Err() != nil {
					return false
				}
			}
		case failed != nil:
			add = append(add, DeadLetter{ID: statestore.NewID("dlq"), DestinationID: w.d.ID, MessageID: it.out.MessageID,
				Attempts: attempts, LastError: failed.Error(), FailedAt: now, laneKey: it.key, body: string(it.out.Body),
				sourceID: it.source, received: it.received})
		}
	}
	if len(add) > 0 {
		for !w.try(func(ctx context.Context) error { return w.m.dead.add(ctx, add) }) {
			if w.ctx.Err() != nil {
				return false
			}
		}
	}
	if len(delivered) > 0 {
		for !w.try(func(ctx context.Context) error { return w.m.dead.remove(ctx, delivered) }) {
			if w.ctx.Err() != nil {
				return false
			}
		}
	}
	for _, it := range batch {
		if it.dl != nil {
			w.replaying.Delete(it.dl.ID)
		}
		if it.rec != nil && it.rec.left.Add(-1) == 0 {
			w.done <- it.rec.msg
		}
	}
	return true
}

// try runs a state store write, logging and pausing after a failure.
func (w *worker) try(op func(context.Context) error) bool {
	ctx, cancel := context.WithTimeout(w.ctx, 10*time.Second)
	defer cancel()
	if err := op(ctx); err != nil {
		w.m.opts.Logger.Error("delivery: dead-letter store write failed; retrying", "destination", w.d.ID, "err", err.Error())
		sleep(w.ctx, storeRetry)
		return false
	}
	return true
}

// acker acknowledges finished records in groups.
func (w *worker) acker() {
	defer w.ackWG.Done()
	var pending []eventlog.Message
	flush := func() {
		if len(pending) == 0 {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), stopFlush)
		defer cancel()
		if err := w.consumer.Ack(ctx, pending...); err != nil {
			// Not lost: the records come again and are delivered twice
			// (at least once).
			w.m.opts.Logger.Warn("delivery: ack failed", "destination", w.d.ID, "err", err.Error())
		}
		for _, m := range pending {
			w.inflight.Delete(m.Seq)
		}
		pending = pending[:0]
	}
	t := time.NewTimer(ackLinger)
	defer t.Stop()
	for {
		select {
		case msg, ok := <-w.done:
			if !ok {
				flush()
				return
			}
			pending = append(pending, msg)
			if len(pending) >= ackMax {
				flush()
			}
		case <-t.C:
			flush()
			t.Reset(ackLinger)
		}
	}
}

// limiter spaces requests at most rate per second; nil means no limit.
type limiter struct {
	mu    sync.Mutex
	every time.Duration
	next  time.Time
}

func newLimiter(rate float64) *limiter {
	if rate <= 0 {
		return nil
	}
	return &limiter{every: time.Duration(float64(time.Second) / rate)}
}

func (l *limiter) wait(ctx context.Context) error {
	if l == nil {
		return ctx.Err()
	}
	l.mu.Lock()
	now := time.Now()
	if l.next.Before(now) {
		l.next = now
	}
	at := l.next
	l.next = l.next.Add(l.every)
	l.mu.Unlock()
	if !sleep(ctx, time.Until(at)) {
		return ctx.Err()
	}
	return nil
}

// sleep waits d or until ctx ends; false if ctx ended.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
