package jetstream

import (
	"context"
	"errors"
	"fmt"
	"time"

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
	for seq := first; seq <= last; seq++ {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		c, cancel := rctx()
		msg, err := l.stream.GetMsg(c, seq)
		cancel()
		if errors.Is(err, jsapi.ErrMsgNotFound) {
			continue // erased or aged out
		}
		if err != nil {
			return st, l.mapErr(fmt.Sprintf("rewrite: read record %d", seq), err)
		}
		st.Scanned++
		// Most records are not the subject's: ask first, then learn
		// which consumers are done with the record and make the copy.
		_, changed, err := edit(msg.Data, nil)
		if err != nil {
			return st, fmt.Errorf("eventlog/jetstream: rewrite record %d: %w", seq, err)
		}
		if !changed {
			continue
		}
		done, err := l.doneWith(ctx, seq, msg.Time)
		if err != nil {
			return st, err
		}
		out, _, err := edit(msg.Data, done)
		if err != nil {
			return st, fmt.Errorf("eventlog/jetstream: rewrite record %d: %w", seq, err)
		}
		if len(out) > 0 {
			// First the copy, then the erase: a crash between them leaves
			// the other entries twice (readers are idempotent), never
			// lost.
			c, cancel := rctx()
			_, err := l.js.Publish(c, l.subject, out, l.pubOpts...)
			cancel()
			if err != nil {
				return st, l.mapErr(fmt.Sprintf("rewrite: append the copy of record %d", seq), err)
			}
			st.Rewritten++
		}
		c, cancel = rctx()
		err = l.stream.SecureDeleteMsg(c, seq)
		cancel()
		if err != nil && !errors.Is(err, jsapi.ErrMsgNotFound) {
			return st, l.mapErr(fmt.Sprintf("rewrite: erase record %d", seq), err)
		}
		st.Erased++
	}
	return st, nil
}

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
