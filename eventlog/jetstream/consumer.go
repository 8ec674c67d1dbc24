package jetstream

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	jsapi "github.com/nats-io/nats.go/jetstream"

	"tandem/eventlog"
)

var (
	ackBody = []byte("+ACK")
	// releaseBody makes a delivered record deliverable again at once. It is
	// a NAK with a delay of 1ns rather than a plain NAK because the server
	// stores a delayed NAK in the consumer's state, so a release survives a
	// server restart; a plain one only lives in memory.
	releaseBody = []byte(`-NAK {"delay": 1}`)
)

// noResponderGrace is how long Fetch keeps trying, even when not asked to
// wait, while no server answers for the consumer.
const noResponderGrace = time.Second

// consumer is an eventlog.Consumer on a durable pull consumer.
type consumer struct {
	log  *Log
	jc   jsapi.Consumer
	name string

	mu     sync.Mutex
	held   map[uint64]heldRecord // by stream seq, until acked
	closed bool
	stop   chan struct{} // closed when the consumer closes: ends heartbeat

	// oldest is the record Backlog last read the append time of: while
	// the consumer's ack floor stays (a burst the pipeline waits out, a
	// node that only collects), every reading asks for the same record,
	// and reading it loads its whole block from disk. Guarded by mu.
	oldest struct {
		seq uint64
		at  time.Time
	}
}

// heldRecord is a record this consumer fetched and has not acknowledged.
type heldRecord struct {
	reply string    // ack subject of its latest delivery
	since time.Time // when this consumer first fetched it
}

// maxInProgress bounds, in ack waits, how long the heartbeat keeps a held
// record from being delivered again: a reader that holds one longer has
// stopped working on it, and the ack wait then brings it back.
const maxInProgress = 10

var _ eventlog.Consumer = (*consumer)(nil)

func (c *consumer) check() error {
	if c.log.closed.Load() {
		return eventlog.ErrClosed
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return eventlog.ErrClosed
	}
	return nil
}

// Fetch returns the records available now, up to max; when there are none
// it waits up to wait for the first one and returns as soon as it arrives,
// with whatever else has arrived by then.
func (c *consumer) Fetch(ctx context.Context, max int, wait time.Duration) ([]eventlog.Message, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	if max <= 0 {
		return nil, nil
	}
	// One fetch is delivered in one go: at most fetchBytes of records
	// (the server keeps to it), or the connection's outbound buffer
	// overflows (a bulk import fills records to MaxRecordBytes).
	max = min(max, maxAckPending)

	// What is there already, in one round trip.
	start := time.Now()
	grace := noResponderGrace
	if wait > grace {
		grace = wait
	}
	msgs, err := c.fetchNoWait(ctx, nil, max)
	for errors.Is(err, nats.ErrNoResponders) && time.Since(start) < grace {
		// No server takes this consumer's requests: its leader is being
		// elected, or it has just been, and the cluster has not yet
		// heard where. Usually over in moments.
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		msgs, err = c.fetchNoWait(ctx, nil, max)
	}
	if err != nil || len(msgs) > 0 || wait <= 0 {
		return msgs, err
	}
	if wait -= time.Since(start); wait <= 0 {
		return nil, nil
	}

	// Nothing: wait for one record. A pull request for one is done as soon
	// as it is served, so none is left open to take later records.
	//
	// The server's expiry of the pull request ends the wait, not a
	// deadline of the client's: the server may serve the request until it
	// expires, and a record it sends to a client that has stopped
	// listening is lost to this reader until the ack wait has passed,
	// then comes after records appended later (out of order). So the
	// client listens until the server says the request is over (its
	// records come before that answer); if the caller gives up first,
	// what the request still brings is released.
	cctx, stop := c.log.withConn(ctx)
	defer stop()
	batch, err := c.jc.Fetch(1, jsapi.FetchMaxWait(wait))
	if err != nil {
		return nil, c.mapErr(ctx, cause(ctx, cctx, err))
	}
	type collected struct {
		msgs []eventlog.Message
		err  error
	}
	got := make(chan collected, 1)
	go func() {
		m, err := c.collect(nil, batch)
		got <- collected{m, err}
	}()
	var res collected
	select {
	case res = <-got:
	case <-cctx.Done():
		go func() { c.releaseLate((<-got).msgs) }()
		return nil, c.mapErr(ctx, cause(ctx, cctx, cctx.Err()))
	}
	msgs, err = res.msgs, res.err
	if len(msgs) == 0 {
		return nil, c.mapErr(ctx, err)
	}
	// An error after a record arrived shows again on the next call.
	if max > 1 {
		// And what came with it.
		msgs, _ = c.fetchNoWait(ctx, msgs, max-1)
	}
	return msgs, nil
}

// fetchNoWait appends to msgs the records available now, up to max. If it
// has records to return it does not return an error: that error will show
// again on the next call.
//
// It is one no-wait pull request bounded in bytes as well as in records
// (the client library's no-wait fetch has no byte bound): the server
// stops at fetchBytes, so a fetch of small records is not cut short by
// counting each at the log's largest record size, and a fetch of large
// ones still fits the connection's outbound buffer. One request brings
// what the pipeline gathers for a batch, instead of a dozen.
func (c *consumer) fetchNoWait(ctx context.Context, msgs []eventlog.Message, max int) ([]eventlog.Message, error) {
	n := len(msgs)
	got, err := c.pull(ctx, msgs, max)
	if len(got) > n {
		return got, nil
	}
	return got, c.mapErr(ctx, err)
}

// fetchBytes is the byte bound of one fetch: fetchBudget, or one of the
// log's largest records if that is more (the server sends nothing at all
// to a request whose bound is smaller than the next record).
func (c *consumer) fetchBytes() int {
	return max(fetchBudget, c.log.maxRecord+headerRoom+1024)
}

// pull sends one no-wait pull request for up to max records and
// fetchBytes bytes and appends what it brings to msgs.
func (c *consumer) pull(ctx context.Context, msgs []eventlog.Message, max int) ([]eventlog.Message, error) {
	nc := c.log.nc
	inbox := nc.NewInbox()
	// Room for every record and the status that ends the request: a
	// channel subscription drops what does not fit.
	ch := make(chan *nats.Msg, max+4)
	sub, err := nc.ChanSubscribe(inbox, ch)
	if err != nil {
		return msgs, err
	}
	budget := c.fetchBytes()
	req := fmt.Appendf(nil, `{"batch":%d,"max_bytes":%d,"no_wait":true}`, max, budget)
	if err := nc.PublishRequest(c.log.nextSubject(c.name), inbox, req); err != nil {
		_ = sub.Unsubscribe()
		return msgs, err
	}
	timer := time.NewTimer(c.log.timeout)
	defer timer.Stop()
	var records, bytes int
	for records < max && bytes < budget {
		select {
		case m := <-ch:
			if len(m.Data) == 0 && m.Header.Get(statusHeader) != "" {
				switch status := m.Header.Get(statusHeader); status {
				case "100": // a heartbeat
					continue
				case "404": // nothing now
					_ = sub.Unsubscribe()
					return msgs, nil
				case "408", "409":
					// The request is over: nothing more now, the next
					// record passes the byte bound, or the batch is
					// complete. On a replicated consumer the records may
					// come after this status: it says how many of the
					// batch were not sent, so the rest are waited for.
					if left, err := strconv.Atoi(m.Header.Get(pendingHeader)); err == nil && left >= 0 && records < max-left {
						max -= left
						continue
					}
					_ = sub.Unsubscribe()
					return msgs, nil
				case "503":
					err = nats.ErrNoResponders
				default:
					err = fmt.Errorf("pull request: status %s %s", status, m.Header.Get(descriptionHeader))
				}
				_ = sub.Unsubscribe()
				return msgs, err
			}
			records++
			bytes += m.Size()
			// One without metadata is not held: the server delivers it
			// again after AckWait.
			msgs, _ = c.hold(msgs, m)
			continue
		case <-timer.C:
			err = nats.ErrTimeout
		case <-ctx.Done():
			err = ctx.Err()
		}
		if err != nil {
			// The request may still bring records: they are released as
			// they come, so that they are delivered again at once.
			go c.releaseRest(sub, ch, max-records)
			return msgs, err
		}
	}
	// The server ends a request that reached its bound without a status.
	_ = sub.Unsubscribe()
	return msgs, nil
}

// The headers of a JetStream status message.
const (
	statusHeader      = "Status"
	descriptionHeader = "Description"
	pendingHeader     = "Nats-Pending-Messages" // records of the batch not sent
)

// releaseRest takes what an abandoned pull request still brings, up to
// left records or the end of the request, and releases it.
func (c *consumer) releaseRest(sub *nats.Subscription, ch chan *nats.Msg, left int) {
	defer func() { _ = sub.Unsubscribe() }()
	var late []eventlog.Message
	defer func() { c.releaseLate(late) }()
	timer := time.NewTimer(c.log.timeout)
	defer timer.Stop()
	for left > 0 {
		select {
		case m := <-ch:
			if len(m.Data) == 0 && m.Header.Get(statusHeader) != "" {
				if m.Header.Get(statusHeader) == "100" {
					continue
				}
				return
			}
			left--
			late, _ = c.hold(late, m)
		case <-timer.C:
			return
		}
	}
}

// hold remembers how to ack a delivered record and appends it to msgs.
func (c *consumer) hold(msgs []eventlog.Message, m *nats.Msg) ([]eventlog.Message, error) {
	md, err := m.Metadata()
	if err != nil {
		return msgs, err
	}
	c.remember(md.Sequence.Stream, m.Reply)
	return append(msgs, eventlog.Message{Seq: md.Sequence.Stream, Data: m.Data}), nil
}

// remember notes the ack subject of a record's latest delivery.
func (c *consumer) remember(seq uint64, reply string) {
	c.mu.Lock()
	h, ok := c.held[seq]
	if !ok {
		h.since = time.Now()
	}
	h.reply = reply
	c.held[seq] = h
	c.mu.Unlock()
}

// collect appends the batch's records to msgs and remembers how to ack
// them.
func (c *consumer) collect(msgs []eventlog.Message, batch jsapi.MessageBatch) ([]eventlog.Message, error) {
	var err error
	for m := range batch.Messages() {
		md, merr := m.Metadata()
		if merr != nil {
			if err == nil {
				err = merr
			}
			continue // the server delivers it again after AckWait
		}
		seq := md.Sequence.Stream
		c.remember(seq, m.Reply())
		msgs = append(msgs, eventlog.Message{Seq: seq, Data: m.Data()})
	}
	if err == nil {
		err = batch.Error()
	}
	return msgs, err
}

func (c *consumer) mapErr(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if c.check() != nil {
		return eventlog.ErrClosed
	}
	return fmt.Errorf("%w: consumer %s: %w", eventlog.ErrUnavailable, c.name, err)
}

// Ack acknowledges msgs, which must have been returned by this consumer's
// Fetch. It returns once the server has recorded the acks.
func (c *consumer) Ack(ctx context.Context, msgs ...eventlog.Message) error {
	if err := c.check(); err != nil {
		return err
	}
	replies := make([]string, 0, len(msgs))
	var unknown []uint64
	c.mu.Lock()
	for _, m := range msgs {
		if h, ok := c.held[m.Seq]; ok {
			replies = append(replies, h.reply)
		} else {
			unknown = append(unknown, m.Seq)
		}
	}
	c.mu.Unlock()
	err := c.send(ctx, replies, ackBody)
	// Forgotten even when the ack failed: the heartbeat then stops keeping
	// them, and the ack wait delivers them again if the ack was lost.
	c.mu.Lock()
	for _, m := range msgs {
		delete(c.held, m.Seq)
	}
	c.mu.Unlock()
	if err != nil {
		return c.mapErr(ctx, err)
	}
	if len(unknown) > 0 {
		return fmt.Errorf("eventlog/jetstream: consumer %s: ack of %d records it does not hold (acked already, or fetched by another consumer), first seq %d", c.name, len(unknown), unknown[0])
	}
	return nil
}

// send sends body to every reply subject and waits for the server's answer
// to the last. The server handles a consumer's acks in the order they
// arrive, so that answer means it has handled them all.
func (c *consumer) send(ctx context.Context, replies []string, body []byte) error {
	if len(replies) == 0 {
		return nil
	}
	nc := c.log.nc
	defer c.log.lastAck.Store(time.Now().UnixNano())
	last := len(replies) - 1
	for _, r := range replies[:last] {
		if err := nc.Publish(r, body); err != nil {
			return err
		}
	}
	cctx, stop := c.log.withConn(ctx)
	defer stop()
	if _, ok := cctx.Deadline(); !ok {
		var cancel context.CancelFunc
		cctx, cancel = context.WithTimeout(cctx, c.log.timeout)
		defer cancel()
	}
	_, err := nc.RequestWithContext(cctx, replies[last], body)
	return cause(ctx, cctx, err)
}

// Pending is the number of records not yet delivered plus those delivered
// and not yet acknowledged.
func (c *consumer) Pending(ctx context.Context) (uint64, error) {
	if err := c.check(); err != nil {
		return 0, err
	}
	cctx, stop := c.log.withConn(ctx)
	defer stop()
	info, err := c.jc.Info(cctx)
	if err != nil {
		return 0, c.mapErr(ctx, cause(ctx, cctx, err))
	}
	return info.NumPending + uint64(info.NumAckPending), nil
}

// Backlog reads the consumer's info and, when records are pending, the
// append time of the first unacknowledged one (the one after the ack
// floor; if retention removed it, the stream's first record).
func (c *consumer) Backlog(ctx context.Context) (eventlog.Backlog, error) {
	if err := c.check(); err != nil {
		return eventlog.Backlog{}, err
	}
	cctx, stop := c.log.withConn(ctx)
	defer stop()
	info, err := c.jc.Info(cctx)
	if err != nil {
		return eventlog.Backlog{}, c.mapErr(ctx, cause(ctx, cctx, err))
	}
	b := eventlog.Backlog{Records: info.NumPending + uint64(info.NumAckPending)}
	if b.Records == 0 {
		return b, nil
	}
	seq := info.AckFloor.Stream + 1
	c.mu.Lock()
	cached, at := c.oldest.seq == seq, c.oldest.at
	c.mu.Unlock()
	if cached {
		// A record's append time never changes. (Were the record removed
		// by retention since, the reading would stay this one, older than
		// the stream's first, until the consumer acknowledges anything.)
		b.Oldest = at
		return b, nil
	}
	msg, err := c.log.stream.GetMsg(cctx, seq)
	if errors.Is(err, jsapi.ErrMsgNotFound) {
		var si *jsapi.StreamInfo
		if si, err = c.log.stream.Info(cctx); err == nil {
			if si.State.FirstSeq <= seq {
				// Not removed by retention: an interior gap; the
				// caller reads again in a moment.
				return b, nil
			}
			msg, err = c.log.stream.GetMsg(cctx, si.State.FirstSeq)
		}
	}
	if err != nil {
		return eventlog.Backlog{}, c.mapErr(ctx, cause(ctx, cctx, err))
	}
	b.Oldest = msg.Time.UTC()
	if msg.Sequence == seq {
		c.mu.Lock()
		c.oldest.seq, c.oldest.at = seq, b.Oldest
		c.mu.Unlock()
	}
	return b, nil
}

// Close releases the records this consumer fetched and did not
// acknowledge, so that the next reader gets them at once rather than after
// the ack wait, and stops. The consumer's position stays on the server.
func (c *consumer) Close() error {
	c.log.forget(c)
	if c.log.closed.Load() {
		// Log.Close has released what this consumer held.
		c.mu.Lock()
		if !c.closed {
			c.closed = true
			close(c.stop)
		}
		c.mu.Unlock()
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.log.timeout)
	defer cancel()
	_, err := c.release(ctx)
	return err
}

// Release gives msgs back unacknowledged: the server delivers them again
// at once.
func (c *consumer) Release(ctx context.Context, msgs ...eventlog.Message) error {
	if err := c.check(); err != nil {
		return err
	}
	var replies []string
	c.mu.Lock()
	for _, m := range msgs {
		if h, ok := c.held[m.Seq]; ok {
			replies = append(replies, h.reply)
			delete(c.held, m.Seq)
		}
	}
	c.mu.Unlock()
	// If this fails, the ack wait brings them back: they are no longer
	// marked in progress.
	return c.mapErr(ctx, c.send(ctx, replies, releaseBody))
}

// releaseLate releases records a Fetch received after its caller gave up,
// so that they are delivered again at once, before any record after them.
func (c *consumer) releaseLate(msgs []eventlog.Message) {
	if len(msgs) == 0 {
		return
	}
	var replies []string
	c.mu.Lock()
	for _, m := range msgs {
		if h, ok := c.held[m.Seq]; ok {
			replies = append(replies, h.reply)
			delete(c.held, m.Seq)
		}
	}
	c.mu.Unlock()
	if len(replies) == 0 || c.log.closed.Load() {
		return // released by Close or Log.Close
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.log.timeout)
	defer cancel()
	_ = c.send(ctx, replies, releaseBody) // if this fails, the ack wait brings them back
}

// release marks c closed and releases what it holds; it returns the stream
// sequences of the records released.
func (c *consumer) release(ctx context.Context) ([]uint64, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, nil
	}
	c.closed = true
	close(c.stop)
	// In stream order, so that they are delivered again in that order.
	seqs := slices.Sorted(maps.Keys(c.held))
	replies := make([]string, len(seqs))
	for i, seq := range seqs {
		replies[i] = c.held[seq].reply
	}
	clear(c.held)
	c.mu.Unlock()
	if err := c.send(ctx, replies, releaseBody); err != nil {
		return seqs, fmt.Errorf("eventlog/jetstream: consumer %s: release unacknowledged records: %w", c.name, err)
	}
	return seqs, nil
}

// inProgressBody tells the server a delivered record is still being worked
// on: its ack wait starts again.
var inProgressBody = []byte("+WPI")

// heartbeat keeps the records this consumer holds from being delivered
// again while its reader still works on them: a reader slowed down (a
// loaded machine, a large batch) past the ack wait would otherwise get
// them a second time and process them twice, which slows it further.
// Every third of the ack wait it marks the records held longer than that
// as in progress, up to maxInProgress ack waits.
func (c *consumer) heartbeat(ackWait time.Duration) {
	t := time.NewTicker(ackWait / 3)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		if c.log.closed.Load() {
			return
		}
		now := time.Now()
		var replies []string
		c.mu.Lock()
		for _, h := range c.held {
			if age := now.Sub(h.since); age >= ackWait/3 && age < maxInProgress*ackWait {
				replies = append(replies, h.reply)
			}
		}
		c.mu.Unlock()
		for _, r := range replies {
			if c.log.nc.Publish(r, inProgressBody) != nil {
				break // disconnected: the ack wait decides
			}
		}
	}
}

// nextSubject is the JetStream API subject of pull requests for the named
// consumer of the log's stream.
func (l *Log) nextSubject(consumer string) string {
	return "$JS.API.CONSUMER.MSG.NEXT." + l.name + "." + consumer
}
