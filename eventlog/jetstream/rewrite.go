package jetstream

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	jsapi "github.com/nats-io/nats.go/jetstream"

	"tandem/eventlog"
)

// RewriteStats count what [Log.Rewrite] did.
type RewriteStats struct {
	Scanned   int // records read
	Rewritten int // records replaced by a shorter copy appended anew
	Erased    int // records erased (rewritten ones included)
}

// Rewrite removes data from records already in the log, for an erasure.
// It reads every record stored when it starts and calls edit with the
// record and nil; when edit reports a change it calls it again with the
// names of the consumers that have processed the record already
// (acknowledged it, or start after it), for the copy. When edit reports a change, the
// record is replaced: out, unless empty, is appended as a new record, and
// then the original is erased with JetStream's secure erase, which
// overwrites the record in its message block with random bytes and writes
// the block anew (the old file is removed), so its bytes are gone from the
// disk files, not only hidden. edit should name done in out (see
// event.Redact) so that those consumers skip the copy; the others read it
// in its new place, after the records appended meanwhile.
//
// Records appended after Rewrite started are not read. A stream with
// store encryption skips the overwrite (JetStream's rule): do not rely on
// Rewrite there.
func (l *Log) Rewrite(ctx context.Context, edit func(rec []byte, done []string) (out []byte, changed bool, err error)) (RewriteStats, error) {
	var st RewriteStats
	if l.closed.Load() {
		return st, eventlog.ErrClosed
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	rctx := func() (context.Context, context.CancelFunc) {
		if _, ok := ctx.Deadline(); ok {
			return context.WithCancel(ctx)
		}
		return context.WithTimeout(ctx, l.timeout)
	}
	c, cancel := rctx()
	info, err := l.stream.Info(c)
	cancel()
	if err != nil {
		return st, l.mapErr("rewrite: stream info", err)
	}
	first, last := info.State.FirstSeq, info.State.LastSeq
	if info.State.Msgs == 0 {
		return st, nil
	}
	handle := func(seq uint64, data []byte, at time.Time) error {
		st.Scanned++
		// Most records are not the subject's: ask first, then learn
		// which consumers are done with the record and make the copy.
		_, changed, err := edit(data, nil)
		if err != nil {
			return fmt.Errorf("eventlog/jetstream: rewrite record %d: %w", seq, err)
		}
		if !changed {
			return nil
		}
		done, err := l.doneWith(ctx, seq, at)
		if err != nil {
			return err
		}
		out, _, err := edit(data, done)
		if err != nil {
			return fmt.Errorf("eventlog/jetstream: rewrite record %d: %w", seq, err)
		}
		if len(out) > 0 {
			// First the copy, then the erase: a crash between them leaves
			// the other entries twice (readers are idempotent), never
			// lost.
			c, cancel := rctx()
			_, err := l.js.Publish(c, l.subject, out, l.pubOpts...)
			cancel()
			if err != nil {
				return l.mapErr(fmt.Sprintf("rewrite: append the copy of record %d", seq), err)
			}
			st.Rewritten++
		}
		c, cancel := rctx()
		err = l.stream.SecureDeleteMsg(c, seq)
		cancel()
		if err != nil && !errors.Is(err, jsapi.ErrMsgNotFound) {
			return l.mapErr(fmt.Sprintf("rewrite: erase record %d", seq), err)
		}
		st.Erased++
		return nil
	}
	// The records are read in batches through an ordered consumer of our
	// own (one request per record would take a minute per million), which
	// is deleted afterwards.
	c, cancel = rctx()
	oc, err := l.stream.OrderedConsumer(c, jsapi.OrderedConsumerConfig{
		DeliverPolicy: jsapi.DeliverAllPolicy, InactiveThreshold: time.Minute, NamePrefix: rewriterPrefix + rand.Text()})
	cancel()
	if err != nil {
		return st, l.mapErr("rewrite: reader", err)
	}
	defer func() {
		if ci := oc.CachedInfo(); ci != nil {
			c, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.timeout)
			_ = l.js.DeleteConsumer(c, l.name, ci.Name) // else it goes after a minute idle
			cancel()
		}
	}()
	for next := first; next <= last; {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		batch, err := oc.FetchBytes(fetchBudget, jsapi.FetchMaxWait(time.Second))
		if err != nil {
			return st, l.mapErr("rewrite: read records", err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			md, err := m.Metadata()
			if err != nil {
				return st, l.mapErr("rewrite: read records", err)
			}
			seq := md.Sequence.Stream
			if seq > last {
				next = seq
				break
			}
			if err := handle(seq, m.Data(), md.Timestamp); err != nil {
				return st, err
			}
			if seq == last {
				return st, nil // without waiting out the fetch
			}
			next = seq + 1
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
			return st, l.mapErr("rewrite: read records", err)
		}
		if got == 0 {
			break // the rest was erased or aged out meanwhile
		}
	}
	return st, nil
}

// rewriterPrefix starts the names of Rewrite's readers.
const rewriterPrefix = "tandem-rewrite-"

// doneWith returns the consumers of the stream that have processed the
// record seq (appended at at): acknowledged it, or configured to start
// after it.
func (l *Log) doneWith(ctx context.Context, seq uint64, at time.Time) ([]string, error) {
	c, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	var done []string
	lister := l.stream.ListConsumers(c)
	for ci := range lister.Info() {
		switch {
		case strings.HasPrefix(ci.Name, rewriterPrefix):
			// A Rewrite's own reader.
		case ci.AckFloor.Stream >= seq,
			ci.Config.DeliverPolicy == jsapi.DeliverByStartSequencePolicy && ci.Config.OptStartSeq > seq,
			ci.Config.DeliverPolicy == jsapi.DeliverByStartTimePolicy && ci.Config.OptStartTime != nil && ci.Config.OptStartTime.After(at):
			done = append(done, ci.Name)
		}
	}
	if err := lister.Err(); err != nil {
		return nil, l.mapErr("rewrite: list consumers", err)
	}
	return done, nil
}
