package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"tandem/event"
	"tandem/eventstore/duckdb"
)

// IngestFig is what `tandem bench funnel --ingest-rate` appended while the
// queries ran.
type IngestFig struct {
	Offered      float64 `json:"offeredEventsPerSec"`
	Events       int64   `json:"events"`
	Seconds      float64 `json:"seconds"`
	EventsPerSec float64 `json:"eventsPerSec"`
	AppendP99Ms  float64 `json:"appendP99Ms"`
	Error        string  `json:"error,omitempty"`
}

// ingester appends generated track events into a store at a steady rate.
type ingester struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	fig    IngestFig
	start  time.Time
	lat    []time.Duration
}

// ingestTick is how often the ingester appends a batch.
const ingestTick = 100 * time.Millisecond

// startIngest appends o.IngestRate events/s into store until stop: a batch
// every ingestTick, as the pipeline appends. The events belong to the
// generated profiles but lie after the generated span.
func startIngest(ctx context.Context, store *duckdb.Store, o funnelOptions, logf func(string, ...any)) *ingester {
	ctx, cancel := context.WithCancel(ctx)
	in := &ingester{cancel: cancel, start: time.Now()}
	in.fig.Offered = o.IngestRate
	after := benchBase.Add(time.Duration(o.Days+1) * 24 * time.Hour)
	logf("ingesting %s events/s while querying", group(o.IngestRate))
	in.wg.Add(1)
	go func() {
		defer in.wg.Done()
		tick := time.NewTicker(ingestTick)
		defer tick.Stop()
		// What is owed follows the clock, not the ticks: a ticker drops
		// the ticks of a slow Append (one the store held back while a
		// query ran), and the next batch makes up for them.
		var due int64
		var seq int64
		// Message ids new to a database kept from an earlier run
		// (--reuse), which the store would drop as duplicates.
		run := in.start.UnixNano()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			n := int(int64(o.IngestRate*time.Since(in.start).Seconds()) - due)
			// At most a second's worth at once: an appender that cannot
			// keep up falls behind the offered rate (as reported) rather
			// than sending ever larger batches.
			if most := int(o.IngestRate); n > most {
				due += int64(n - most)
				n = most
			}
			due += int64(n)
			if n <= 0 {
				continue
			}
			batch := make([]event.Event, n)
			now := time.Now().UTC()
			for i := range batch {
				seq++
				uid := fmt.Sprintf("u%d", rand.Int64N(o.Profiles))
				name := benchNames[rand.IntN(o.Names)]
				ts := after.Add(time.Duration(seq) * time.Millisecond)
				batch[i] = event.Event{SourceID: "bench", MessageID: fmt.Sprintf("ingest-%d-%d", run, seq), Type: "track", Name: name,
					UserID: uid, Timestamp: ts, ReceivedAt: now,
					Raw: fmt.Appendf(nil, `{"type":"track","event":%q,"userId":%q,"properties":{"plan":"p%d"}}`, name, uid, seq%3)}
			}
			t0 := time.Now()
			if _, err := store.Append(ctx, batch); err != nil {
				if ctx.Err() == nil && in.fig.Error == "" {
					in.fig.Error = err.Error()
				}
				continue
			}
			in.lat = append(in.lat, time.Since(t0))
			in.fig.Events += int64(n)
		}
	}()
	return in
}

// stop ends the appends and returns what was appended.
func (in *ingester) stop() *IngestFig {
	in.cancel()
	in.wg.Wait()
	in.fig.Seconds = time.Since(in.start).Seconds()
	in.fig.EventsPerSec = float64(in.fig.Events) / in.fig.Seconds
	slices.Sort(in.lat)
	in.fig.AppendP99Ms = ms(percentile(in.lat, 99))
	return &in.fig
}
