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
	// OnAppend, when set, is called by the committer's writer after each
	// Log.Append with its latency (the fsync latency), the record's size,
	// the number of chunks in it and the result. It runs before the waiting
	// callers are woken, so it must be quick (observe a histogram, add to
	// counters).
	OnAppend func(d time.Duration, bytes int, chunks int, err error)
}

// CommitterStats are a [Committer]'s counters since it was made.
type CommitterStats struct {
	Records      uint64 // records appended to the log
	Chunks       uint64 // chunks in those records
	Bytes        uint64 // bytes in those records, headers included
	Failed       uint64 // records whose Append failed
	FailedChunks uint64 // chunks in those records
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
// A Committer is safe for concurrent use. It does not own its Log: Close
// the Committer first, then the Log.
type Committer struct {
	log      Log
	max      int
	timeout  time.Duration
	onAppend func(time.Duration, int, int, error)

	mu     sync.Mutex
	queue  []*batch // records waiting for the writer; only the last one takes more chunks
	free   [][]byte // record buffers to reuse
	closed bool
	wake   chan struct{} // capacity 1: there is work or Close was called
	done   chan struct{} // closed when the writer has stopped

	records, chunks, bytes, failed, failedChunks atomic.Uint64
}

// A batch is one record being filled or written. Waiting callers hold a
// pointer to it and read err once done is closed; the writer touches
// nothing else of it after that.
type batch struct {
	buf    []byte
	chunks int
	done   chan struct{}
	err    error
}

// maxFreeBuffers is how many record buffers a Committer keeps for reuse.
// One is being written while the next fills, so two cover the steady state.
const maxFreeBuffers = 2

// NewCommitter returns a Committer appending to log and starts its writer.
func NewCommitter(log Log, opts CommitterOptions) *Committer {
	if opts.AppendTimeout <= 0 {
		opts.AppendTimeout = 10 * time.Second
	}
	c := &Committer{
		log:      log,
		max:      log.MaxRecordBytes(),
		timeout:  opts.AppendTimeout,
		onAppend: opts.OnAppend,
		wake:     make(chan struct{}, 1),
		done:     make(chan struct{}),
	}
	go c.run()
	return c
}

// Append makes entries, a chunk made by [event.AppendEntries], durable as
// part of a record. It returns nil once the record holding the chunk has
// been appended, or the Log's error for that record (typically wrapping
// [ErrUnavailable]). A chunk that cannot fit in a record on its own gets
// [ErrTooLarge]; after Close, Append returns [ErrClosed].
//
// Append copies entries before it waits: the caller may reuse it as soon as
// Append returns, whatever the result.
//
// If ctx ends before the record is written, Append returns ctx.Err() at once
// but the chunk stays queued: it may or may not become durable. A caller
// that must know retries with the same events and relies on deduplication
// downstream (events carry their messageId). An already ended ctx makes
// Append return ctx.Err() without queueing anything.
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
	var b *batch
	if n := len(c.queue); n > 0 && len(c.queue[n-1].buf)+len(entries) <= c.max {
		b = c.queue[n-1]
	} else {
		b = c.newBatchLocked()
		c.queue = append(c.queue, b)
	}
	b.buf = append(b.buf, entries...)
	b.chunks++
	c.mu.Unlock()

	select {
	case c.wake <- struct{}{}:
	default:
	}
	select {
	case <-b.done:
		return b.err
	case <-ctx.Done():
		return ctx.Err()
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
		c.mu.Unlock()

		c.write(b)
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
	if len(c.free) < maxFreeBuffers {
		c.free = append(c.free, buf[:0])
	}
	c.mu.Unlock()
	close(b.done)
}

// Stats returns the committer's counters.
func (c *Committer) Stats() CommitterStats {
	return CommitterStats{
		Records:      c.records.Load(),
		Chunks:       c.chunks.Load(),
		Bytes:        c.bytes.Load(),
		Failed:       c.failed.Load(),
		FailedChunks: c.failedChunks.Load(),
	}
}

// Close writes what is queued, waits for it, and stops the writer. Later
// Appends return [ErrClosed]. Close does not close the Log. It may be called
// more than once.
func (c *Committer) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	<-c.done
	return nil
}
