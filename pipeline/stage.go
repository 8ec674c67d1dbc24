package pipeline

import (
	"context"
	"time"

	"tandem/eventstore"
)

// Staging (Run's write stage, with an event store that is an
// [eventstore.Stager]): a batch's events are staged into the store's open
// transaction, and the batch is held, unacknowledged, until the store
// says its events are committed. The embedded store commits on its own
// whenever the staged rows fill a row group (which it writes straight to
// its file instead of to its write-ahead log and again at a checkpoint);
// the pipeline commits what is left as soon as it is idle (no batch in
// the earlier stages), or when the oldest held batch has waited
// CommitWait. Until its commit an event is durable in the log, which
// delivers a record again if it is never acknowledged: so a failed commit
// loses nothing.

// heldBatch is a batch whose events are staged, maybe not committed.
type heldBatch struct {
	b *batch
	// end is stagedPos after its last event; the batch is done once the
	// events staged up to end are committed.
	end          uint64
	stored, dups uint64
	at           time.Time // when it was staged
}

// stager returns the event store as a Stager, if it is one.
func (p *Pipeline) stager() (eventstore.Stager, bool) {
	st, ok := p.opts.Events.(eventstore.Stager)
	return st, ok
}

// writeStaged is Run's write stage with a Stager: it stages b's events and
// holds b until they are committed.
func (p *Pipeline) writeStaged(ctx context.Context, b *batch) error {
	st, ok := p.stager()
	if !ok {
		return p.write(ctx, b)
	}
	h := heldBatch{b: b, at: time.Now()}
	pr, _ := st.(eventstore.Preparer)
	for i, c := range b.chunks {
		var n, pending int
		var err error
		if pr != nil && i < len(b.prepared) && b.prepared[i] != nil {
			// Prepared in the decode stage.
			n, pending, err = pr.StagePrepared(ctx, b.prepared[i])
			b.prepared[i] = nil
		} else {
			n, pending, err = st.Stage(ctx, c)
		}
		if err != nil {
			// The store dropped what was staged and not committed: the
			// held batches stay unacknowledged, for the log to deliver
			// again; b goes the plain way, with its fallbacks.
			p.dropHeld(err)
			return p.write(ctx, b)
		}
		p.stagedPos += uint64(len(c))
		p.pending = pending
		h.stored += uint64(n)
		h.dups += uint64(len(c) - n)
		p.release(ctx)
	}
	h.end = p.stagedPos
	p.staging.add(time.Now(), p.stagedPos)
	// The events are in the store now: only the records' sequence
	// numbers are kept, to be acknowledged. Their bytes go: a row group's
	// worth of held records would be tens of MB of heap.
	p.releaseChunks(b)
	b.chunks, b.observed, b.prepared = nil, nil, nil
	for i := range b.msgs {
		b.msgs[i].Data = nil
	}
	p.held = append(p.held, h)
	p.release(ctx)
	p.setOldestHeld()
	return nil
}

// setOldestHeld publishes the first held batch's ord for Barrier.
func (p *Pipeline) setOldestHeld() {
	var ord uint64
	if len(p.held) > 0 {
		ord = p.held[0].b.ord
	}
	p.oldestHeld.Store(ord)
}

// holds reports whether a batch numbered up to ord is held.
func (p *Pipeline) holds(ord uint64) bool {
	o := p.oldestHeld.Load()
	return o != 0 && o <= ord
}

// release finishes the held batches whose events are committed.
func (p *Pipeline) release(ctx context.Context) {
	durable := p.stagedPos - uint64(p.pending)
	for len(p.held) > 0 && p.held[0].end <= durable {
		h := p.held[0]
		p.held = p.held[1:]
		p.stored.Add(h.stored)
		p.duplicates.Add(h.dups)
		p.finish(ctx, h.b)
	}
	if len(p.held) == 0 {
		p.held = nil
	}
}

// commitHeld commits the staged events and finishes the held batches; it
// returns the time that took.
func (p *Pipeline) commitHeld(ctx context.Context) time.Duration {
	st, ok := p.stager()
	if !ok || len(p.held) == 0 {
		return 0
	}
	start := time.Now()
	defer func() { p.stageSecs.Observe(time.Since(start).Seconds(), stageCommit) }()
	if err := st.Commit(ctx); err != nil {
		p.dropHeld(err)
		return time.Since(start)
	}
	p.pending = 0
	p.release(ctx)
	p.setOldestHeld()
	return time.Since(start)
}

// dropHeld gives the held batches up after the store lost their staged
// events: their records stay unacknowledged and the log delivers them
// again (after its ack wait), as after a crash.
func (p *Pipeline) dropHeld(err error) {
	p.failures.Add(1)
	if len(p.held) > 0 {
		p.opts.Logger.Error("pipeline: staged events not committed; their records will be delivered again",
			"records", func() int {
				n := 0
				for _, h := range p.held {
					n += len(h.b.msgs)
				}
				return n
			}(), "err", err.Error())
	}
	p.held = nil
	p.pending = 0
	p.setOldestHeld()
}

// nextWrite returns the next batch for the write stage. While batches are
// held it commits them first if the pipeline is idle (nothing in the
// earlier stages), the oldest has waited CommitWait, or Barrier asks.
func (p *Pipeline) nextWrite(ctx context.Context, resolved <-chan *batch) (*batch, bool) {
	for len(p.held) > 0 {
		wait := time.Until(p.held[0].at.Add(p.opts.CommitWait))
		idle := len(resolved) == 0 && p.begun.Load() == p.ended.Load()
		if wait <= 0 || p.flush.Swap(false) || (idle && !p.holdIdle(time.Now())) {
			d := p.commitHeld(context.WithoutCancel(ctx))
			if wait <= 0 {
				// A commit the backlog waited for is part of the
				// write stage's pace; one made while idle is not.
				p.capacity.extra(capWrite, d)
			}
			break
		}
		t := time.NewTimer(min(wait, idleCheck))
		select {
		case b, ok := <-resolved:
			t.Stop()
			return b, ok
		case <-t.C:
		}
	}
	b, ok := <-resolved
	return b, ok
}

// idleCheck is how often a write stage holding batches looks whether the
// pipeline went idle.
const idleCheck = 5 * time.Millisecond

// Holding an idle commit for the row group.
//
// A commit of fewer events than a row group goes through DuckDB's
// write-ahead log and is written again at the next checkpoint, which
// costs several µs an event more than a whole row group written straight
// to the file (docs/benchmarks.md#row-group-commits) and stalls the
// commit that runs the checkpoint. A pipeline with a backlog commits
// whole row groups; one that keeps up with a high rate went idle between
// batches (the read stage gathering the next one) and committed each
// batch through the WAL: its cost per event was highest just when it had
// the least to spare. So when idle, the write stage waits for the store
// to commit the row group itself while the events arriving would fill it
// within CommitHold of the oldest held batch's staging; at lower rates,
// where the extra cost does not matter, or when the read stage has found
// nothing for a few polls (a backlog or a burst ended: nothing fills the
// row group), it commits at once as before. Barrier's flush and
// CommitWait still commit regardless.

// arrivingWithin is how recently the read stage must have found records
// for the write stage to hold an idle commit: a few of its polls.
const arrivingWithin = 5 * pollInterval

// stagingWindow is how far back the write stage's staging rate looks.
const stagingWindow = 2 * time.Second

// stagingRate keeps when the write stage staged how many events in all,
// over the last stagingWindow and one reading before it.
type stagingRate struct {
	at  []time.Time
	pos []uint64
}

// add records that pos events in all were staged by t.
func (r *stagingRate) add(t time.Time, pos uint64) {
	r.at = append(r.at, t)
	r.pos = append(r.pos, pos)
	// Keep one reading older than the window.
	drop := 0
	for drop+1 < len(r.at) && t.Sub(r.at[drop+1]) >= stagingWindow {
		drop++
	}
	if drop > 0 {
		r.at = append(r.at[:0], r.at[drop:]...)
		r.pos = append(r.pos[:0], r.pos[drop:]...)
	}
}

// perSecond is the events staged a second from the oldest reading kept
// to now (a pause since the last batch lowers it), 0 while unknown.
func (r *stagingRate) perSecond(now time.Time) float64 {
	if len(r.at) < 2 {
		return 0
	}
	d := now.Sub(r.at[0]).Seconds()
	if d <= 0 {
		return 0
	}
	return float64(r.pos[len(r.pos)-1]-r.pos[0]) / d
}

// holdIdle reports whether the write stage, idle with batches held,
// waits for the store's row-group commit instead of committing now.
func (p *Pipeline) holdIdle(now time.Time) bool {
	if p.opts.CommitRows <= 0 || p.opts.CommitHold <= 0 || len(p.held) == 0 {
		return false
	}
	if now.Sub(time.Unix(0, p.lastFetch.Load())) > arrivingWithin {
		// Nothing came in lately (the end of a burst or of a backlog):
		// no row group is filling.
		return false
	}
	left := p.opts.CommitHold - now.Sub(p.held[0].at)
	room := p.opts.CommitRows - p.pending
	rate := p.staging.perSecond(now)
	if left <= 0 || room <= 0 || rate <= 0 {
		return false
	}
	return float64(room)/rate <= left.Seconds()
}
