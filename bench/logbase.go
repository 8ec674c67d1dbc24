package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"tandem/event"
	"tandem/eventlog"
	"tandem/eventlog/jetstream"
)

// logSourceID stands in for the source id the server would put in entries.
const logSourceID = "bench-source"

// encodeChunk turns a template's body into the log entries the collection
// API would append for it, with the counter offsets of both copies of each
// messageId (the MessageID field and the raw event). Parsing happens once
// here, not per append.
func encodeChunk(body []byte, prefix string, receivedAt time.Time) (patchBuf, error) {
	req, err := event.ParseBatch(body, receivedAt)
	if err != nil {
		return patchBuf{}, err
	}
	if len(req.Problems) > 0 {
		return patchBuf{}, fmt.Errorf("template event rejected: %s", req.Problems[0].Message)
	}
	b := event.AppendEntries(nil, logSourceID, req.Events, nil)
	return patchBuf{b: b, offs: counterOffsets(b, prefix)}, nil
}

// phaseLog appends the load's encoded batches straight to the embedded
// event log through the group committer: C goroutines for --duration.
func (b *bencher) phaseLog(ctx context.Context, rep *Report) error {
	dir, err := tempDir("log")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	chunks := make([]patchBuf, len(b.gen.templates))
	now := time.Now()
	for i, t := range b.gen.templates {
		if chunks[i], err = encodeChunk(t.patch.b, idPrefix(b.gen.runID, i), now); err != nil {
			return err
		}
	}
	b.logf("phase log: opening the embedded event log")
	log, err := jetstream.OpenEmbedded(jetstream.EmbeddedOptions{Dir: filepath.Join(dir, "eventlog")})
	if err != nil {
		return err
	}
	defer log.Close()
	cm := eventlog.NewCommitter(log, eventlog.CommitterOptions{})
	defer cm.Close()
	b.logf("phase log: %d appenders for %s", b.opts.Clients, b.opts.Duration)

	type appenderStats struct {
		lat   []time.Duration
		ok    int64
		errs  int64
		first string
	}
	stats := make([]appenderStats, len(chunks))
	cpu0, cpuErr := selfCPU()
	start := time.Now()
	deadline := start.Add(b.opts.Duration)
	var wg sync.WaitGroup
	for i := range chunks {
		wg.Add(1)
		go func(st *appenderStats, c *patchBuf, t *template) {
			defer wg.Done()
			for ctx.Err() == nil && time.Now().Before(deadline) {
				// The counters go on from the template's, so messageIds
				// stay unique in this phase too.
				t.counter++
				c.set(t.counter)
				t0 := time.Now()
				err := cm.Append(ctx, c.b)
				if ctx.Err() != nil {
					return
				}
				st.lat = append(st.lat, time.Since(t0))
				if err != nil {
					st.errs++
					if st.first == "" {
						st.first = err.Error()
					}
					if errors.Is(err, eventlog.ErrClosed) {
						return
					}
					sleep(ctx, 10*time.Millisecond)
					continue
				}
				st.ok++
			}
		}(&stats[i], &chunks[i], b.gen.templates[i])
	}
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				b.logf("phase log: %s/%s", now.Sub(start).Round(time.Second), b.opts.Duration)
			}
		}
	}()
	wg.Wait()
	close(done)
	wall := time.Since(start)
	cpu1, cpuErr1 := selfCPU()
	if ctx.Err() != nil {
		return ctx.Err()
	}

	res := &loadResult{Elapsed: wall, Errors: map[string]int64{}}
	for _, st := range stats {
		res.Requests += st.ok + st.errs
		res.OK += st.ok
		res.Latencies = append(res.Latencies, st.lat...)
		if st.errs > 0 {
			res.Errors["append"] += st.errs
			if res.FirstError == "" {
				res.FirstError = st.first
			}
		}
	}
	res.Events = res.OK * int64(b.gen.batch)
	slices.Sort(res.Latencies)
	pr := phaseFromLoad("log", res)
	pr.InProcess = true
	if cpuErr == nil && cpuErr1 == nil {
		pr.ServerCPUCores = ptr((cpu1 - cpu0).Seconds() / wall.Seconds())
	}
	st := cm.Stats()
	if st.Records > 0 {
		pr.Note = fmt.Sprintf("%.1f appends per fsync'd record", float64(st.Chunks)/float64(st.Records))
	}
	rep.Phases = append(rep.Phases, pr)
	b.logf("phase log: %s events/s, %s appends/s, p50 %.1f ms, p99 %.1f ms", group(pr.EventsPerSec), group(pr.RequestsPerSec), pr.P50Ms, pr.P99Ms)
	if res.Events == 0 {
		return fmt.Errorf("no append succeeded (first error: %s)", res.FirstError)
	}
	return nil
}
