package eventlog

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"tandem/event"
)

// CommitterOptions configure a [Committer].
type CommitterOptions struct {
	// AppendTimeout bounds each Log.Append the committer makes. Zero means
	// 10 seconds.
	AppendTimeout time.Duration
	// MaxQueueBytes bounds the bytes of chunks accepted but not yet written
	// (queued, or in the record being appended). An Append that would go
	// over it fails at once with [ErrOverloaded], queueing nothing, so a
	// slow log shows as refusals rather than as memory growing without
	// end. A chunk larger than the whole budget is still taken when nothing
	// else waits. Zero or less means no bound.
	MaxQueueBytes int64
	// OnAppend, when set, is called by the committer's writer after each
	// Log.Append with its latency (the fsync latency), the record's size,
	// the number of chunks in it and the result. It runs before the waiting
	// callers are woken, so it must be quick (observe a histogram, add to
	// counters).
	OnAppend func(d time.Duration, bytes int, chunks int, err error)
	// OnOverload, when set, is called with the chunk's size each time
	// Append refuses a chunk with ErrOverloaded. It must be quick.
	OnOverload func(bytes int)
}

// CommitterStats are a [Committer]'s counters since it was made.
type CommitterStats struct {
	Records      uint64 // records appended to the log
	Chunks       uint64 // chunks in those records
	Bytes        uint64 // bytes in those records, headers included
	Failed       uint64 // records whose Append failed
	FailedChunks uint64 // chunks in those records
	Overloaded   uint64 // chunks refused with ErrOverloaded
	Withdrawn    uint64 // chunks whose caller gave up before they were written, taken out of the queue
	QueuedBytes  int64  // bytes of chunks waiting now (queued or being written)
}

// A Committer makes chunks of log entries durable with group commit: it
// packs the chunks of concurrent [Committer.Append] calls into as few
// records as fit and appends them to its [Log] one at a time, so that one
// fsync covers many requests. While one record is being appended the next
// one fills up with whatever callers arrive meanwhile.
//
// A chunk is the output of [event.AppendEntries]; a record is
// [event.RecordHeader] followed by one or more chunks, whole and in the
// order their Append calls queued them. A record never exceeds the log's
// MaxRecordBytes.
//
// The bytes waiting are bounded by [CommitterOptions.MaxQueueBytes]; a
// caller that gives up (its context ends) before its record is taken for
// writing takes its chunk out of the queue.
//
// A Committer is safe for concurrent use. It does not own its Log: Close
// the Committer first, then the Log.
type Committer struct {
	log        Log
	max        int
	timeout    time.Duration
	maxQueue   int64
	onAppend   func(time.Duration, int, int, error)
	onOverload func(int)

	mu       sync.Mutex
	queue    []*batch // records waiting for the writer; only the last one takes more chunks
	free     [][]byte // record buffers to reuse
	queued   int64    // bytes of chunks in queue and in the record being written
	closed   bool
	flushErr error         // the first append that failed after Close was called
	flushBad int           // how many did
	wake     chan struct{} // capacity 1: there is work or Close was called
	done     chan struct{} // closed when the writer has stopped

	records, chunks, bytes, failed, failedChunks, overloaded, withdrawn atomic.Uint64
}

// A batch is one record being filled or written. Waiting callers hold a
// pointer to it and read err once done is closed; the writer touches
// nothing else of it after that.
type batch struct {
	buf    []byte
	chunks int
	// slots are the chunks in buf, in order, while the batch is queued: a
	// caller that gives up removes its own. Guarded by Committer.mu.
	slots []*slot
	taken bool // the writer has it: its chunks can no longer be removed
	done  chan struct{}
	err   error
}

// A slot is where one caller's chunk sits in its batch's buffer.
type slot struct{ off, n int }

// maxFreeBuffers is how many record buffers a Committer keeps for reuse.
// One is being written while the next fills, so two cover the steady state.
const maxFreeBuffers = 2

// NewCommitter returns a Committer appending to log and starts its writer.
func NewCommitter(log Log, opts CommitterOptions) *Committer {
	if opts.AppendTimeout <= 0 {
		opts.AppendTimeout = 10 * time.Second
	}
	c := &Committer{
		log:        log,
		max:        log.MaxRecordBytes(),
		timeout:    opts.AppendTimeout,
		maxQueue:   opts.MaxQueueBytes,
		onAppend:   opts.OnAppend,
		onOverload: opts.OnOverload,
		wake:       make(chan struct{}, 1),
		done:       make(chan struct{}),
	}
	go c.run()
	return c
}

// Append makes entries, a chunk made by [event.AppendEntries], durable as
// part of a record. It returns nil once the record holding the chunk has
// been appended, or the Log's error for that record (typically wrapping
// [ErrUnavailable]). A chunk that cannot fit in a record on its own gets
// [ErrTooLarge]; a chunk that would take the bytes waiting over the budget
// gets [ErrOverloaded] at once, and nothing is queued; after Close, Append
// returns [ErrClosed].
//
// Append copies entries before it waits: the caller may reuse it as soon as
// Append returns, whatever the result.
//
// If ctx ends before the record is written, Append returns ctx.Err() at
// once. If the record had not been taken for writing yet, the chunk leaves
// the queue and is not written; otherwise it may or may not become
// durable. A caller that must know retries with the same events and relies
// on deduplication downstream (events carry their messageId). An already
// ended ctx makes Append return ctx.Err() without queueing anything.
func (c *Committer) Append(ctx context.Context, entries []byte) error {
	if len(entries) == 0 {
		return nil
	}
	if len(event.RecordHeader)+len(entries) > c.max {
		return fmt.Errorf("%w: chunk of %d bytes, records take at most %d", ErrTooLarge, len(entries), c.max-len(event.RecordHeader))
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	if c.maxQueue > 0 && c.queued > 0 && c.queued+int64(len(entries)) > c.maxQueue {
		queued := c.queued
		c.mu.Unlock()
		c.overloaded.Add(1)
		if c.onOverload != nil {
			c.onOverload(len(entries))
		}
		return fmt.Errorf("%w: %d bytes are waiting for the event log, the budget is %d", ErrOverloaded, queued, c.maxQueue)
	}
	var b *batch
	if n := len(c.queue); n > 0 && len(c.queue[n-1].buf)+len(entries) <= c.max {
		b = c.queue[n-1]
	} else {
		b = c.newBatchLocked()
		c.queue = append(c.queue, b)
	}
	sl := &slot{off: len(b.buf), n: len(entries)}
	b.buf = append(b.buf, entries...)
	b.chunks++
	b.slots = append(b.slots, sl)
	c.queued += int64(len(entries))
	c.mu.Unlock()

	select {
	case c.wake <- struct{}{}:
	default:
	}
	select {
	case <-b.done:
		return b.err
	case <-ctx.Done():
	}
	c.mu.Lock()
	if !b.taken {
		b.remove(sl)
		c.queued -= int64(sl.n)
		c.mu.Unlock()
		c.withdrawn.Add(1)
		return ctx.Err()
	}
	c.mu.Unlock()
	select {
	case <-b.done:
		return b.err // written meanwhile: the caller may as well know
	default:
		return ctx.Err()
	}
}

// remove takes sl's chunk out of b's buffer. The caller holds
// Committer.mu and b is not taken.
func (b *batch) remove(sl *slot) {
	copy(b.buf[sl.off:], b.buf[sl.off+sl.n:])
	b.buf = b.buf[:len(b.buf)-sl.n]
	b.chunks--
	for i, s := range b.slots {
		if s == sl {
			for _, later := range b.slots[i+1:] {
				later.off -= sl.n
			}
			b.slots = append(b.slots[:i], b.slots[i+1:]...)
			break
		}
	}
}

func (c *Committer) newBatchLocked() *batch {
	var buf []byte
	if n := len(c.free); n > 0 {
		buf = c.free[n-1]
		c.free[n-1] = nil
		c.free = c.free[:n-1]
	} else {
		buf = make([]byte, 0, min(c.max, 64<<10))
	}
	return &batch{buf: append(buf, event.RecordHeader...), done: make(chan struct{})}
}

// run is the writer: it appends queued records one at a time, in order,
// until Close has been called and the queue is empty.
func (c *Committer) run() {
	defer close(c.done)
	for {
		c.mu.Lock()
		for len(c.queue) == 0 {
			if c.closed {
				c.mu.Unlock()
				return
			}
			c.mu.Unlock()
			<-c.wake
			c.mu.Lock()
		}
		b := c.queue[0]
		n := copy(c.queue, c.queue[1:])
		c.queue[n] = nil
		c.queue = c.queue[:n]
		b.taken = true
		b.slots = nil
		if b.chunks == 0 {
			// Every caller gave up: there is nothing to write.
			c.recycleLocked(b.buf)
			b.buf = nil
			c.mu.Unlock()
			close(b.done)
			continue
		}
		c.mu.Unlock()

		c.write(b)
	}
}

func (c *Committer) recycleLocked(buf []byte) {
	if len(c.free) < maxFreeBuffers {
		c.free = append(c.free, buf[:0])
	}
}

func (c *Committer) write(b *batch) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	start := time.Now()
	_, err := c.log.Append(ctx, b.buf)
	d := time.Since(start)
	cancel()

	size := len(b.buf)
	if err == nil {
		c.records.Add(1)
		c.chunks.Add(uint64(b.chunks))
		c.bytes.Add(uint64(size))
	} else {
		c.failed.Add(1)
		c.failedChunks.Add(uint64(b.chunks))
	}
	if c.onAppend != nil {
		c.onAppend(d, size, b.chunks, err)
	}

	buf := b.buf
	b.buf = nil
	b.err = err
	c.mu.Lock()
	c.queued -= int64(size - len(event.RecordHeader))
	if err != nil && c.closed {
		if c.flushErr == nil {
			c.flushErr = err
		}
		c.flushBad++
	}
	c.recycleLocked(buf)
	c.mu.Unlock()
	close(b.done)
}

// Stats returns the committer's counters.
func (c *Committer) Stats() CommitterStats {
	c.mu.Lock()
	queued := c.queued
	c.mu.Unlock()
	return CommitterStats{
		Records:      c.records.Load(),
		Chunks:       c.chunks.Load(),
		Bytes:        c.bytes.Load(),
		Failed:       c.failed.Load(),
		FailedChunks: c.failedChunks.Load(),
		Overloaded:   c.overloaded.Load(),
		Withdrawn:    c.withdrawn.Load(),
		QueuedBytes:  queued,
	}
}

// Close writes what is queued, waits for it, and stops the writer. Later
// Appends return [ErrClosed]. Close does not close the Log. It may be called
// more than once.
//
// Close returns an error when an append failed while it was flushing (the
// final flush): those callers were answered with the error, but the
// operator should hear of it too.
func (c *Committer) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	<-c.done
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.flushErr != nil {
		return fmt.Errorf("eventlog: final flush: %d record(s) failed to append: %w", c.flushBad, c.flushErr)
	}
	return nil
}
