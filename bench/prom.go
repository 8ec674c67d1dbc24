package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Metric names the bench reads from the server.
const (
	metricStored     = "tandem_pipeline_events_stored_total"
	metricLag        = "tandem_pipeline_lag_records"
	metricLagSeconds = "tandem_pipeline_lag_seconds"
	metricAccepted   = "tandem_events_accepted_total"
	metricRSS        = "process_resident_memory_bytes"
)

// parseProm reads a Prometheus text exposition with the Prometheus parser
// and flattens it into one value per series, as PromQL sees them: a
// histogram becomes its _bucket{le=…}, _sum and _count series. Each series
// is keyed by its name and its labels sorted by name, values escaped as the
// format writes them, e.g. `requests_total{code="200",path="/a"}`.
func parseProm(r io.Reader) (map[string]float64, error) {
	p := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		samples, err := expfmt.ExtractSamples(&expfmt.DecodeOptions{Timestamp: model.Now()}, mf)
		if err != nil {
			return nil, fmt.Errorf("metrics: %s: %w", mf.GetName(), err)
		}
		for _, s := range samples {
			out[seriesKey(s.Metric)] = float64(s.Value)
		}
	}
	return out, nil
}

// seriesKey writes a series as the exposition would, labels sorted.
func seriesKey(m model.Metric) string {
	names := make([]string, 0, len(m))
	for k := range m {
		if k != model.MetricNameLabel {
			names = append(names, string(k))
		}
	}
	name := string(m[model.MetricNameLabel])
	if len(names) == 0 {
		return name
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString(name)
	b.WriteByte('{')
	for i, k := range names {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k)
		b.WriteString(`="`)
		b.WriteString(labelEscaper.Replace(string(m[model.LabelName(k)])))
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String()
}

// labelEscaper escapes a label value as the text format does.
var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

// promSum returns the sum of every series of metric name (the one value of
// an unlabelled metric), and whether there was any.
func promSum(m map[string]float64, name string) (float64, bool) {
	var sum float64
	found := false
	for k, v := range m {
		if k == name || (strings.HasPrefix(k, name) && len(k) > len(name) && k[len(name)] == '{') {
			sum += v
			found = true
		}
	}
	return sum, found
}

// sample is one reading of the pipeline's metrics. The fields after Lag
// are -1 when the server does not export them.
type sample struct {
	At         time.Time
	Stored     float64
	Lag        float64
	LagSeconds float64
	Accepted   float64 // events made durable in the log, all sources
	RSS        float64 // bytes
	// All is every series of the scrape, for the pipeline's shape over
	// a step (e2eShape).
	All map[string]float64
}

// scrapePipeline reads the pipeline's stored counter and lag gauge.
func scrapePipeline(ctx context.Context, s *server, hc *http.Client) (sample, error) {
	m, err := s.metrics(ctx, hc)
	if err != nil {
		return sample{}, err
	}
	at := time.Now()
	stored, ok1 := promSum(m, metricStored)
	lag, ok2 := promSum(m, metricLag)
	if !ok1 || !ok2 {
		return sample{}, fmt.Errorf("/metrics has no %s or %s", metricStored, metricLag)
	}
	smp := sample{At: at, Stored: stored, Lag: lag, LagSeconds: -1, Accepted: -1, RSS: -1, All: m}
	if v, ok := promSum(m, metricLagSeconds); ok {
		smp.LagSeconds = v
	}
	if v, ok := promSum(m, metricAccepted); ok {
		smp.Accepted = v
	}
	if v, ok := promSum(m, metricRSS); ok {
		smp.RSS = v
	}
	return smp, nil
}

// sampler scrapes the pipeline metrics every interval in the background.
type sampler struct {
	mu      sync.Mutex
	samples []sample
	lastErr error
	stop    chan struct{}
	done    chan struct{}
}

func startSampler(ctx context.Context, s *server, every time.Duration) *sampler {
	sp := &sampler{stop: make(chan struct{}), done: make(chan struct{})}
	hc := &http.Client{Timeout: every + time.Second}
	take := func() {
		smp, err := scrapePipeline(ctx, s, hc)
		sp.mu.Lock()
		defer sp.mu.Unlock()
		if err != nil {
			sp.lastErr = err
			return
		}
		sp.samples = append(sp.samples, smp)
	}
	go func() {
		defer close(sp.done)
		take()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-sp.stop:
				take()
				return
			case <-t.C:
				take()
			}
		}
	}()
	return sp
}

// latest returns the newest sample, if any.
func (sp *sampler) latest() (sample, bool) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if len(sp.samples) == 0 {
		return sample{}, false
	}
	return sp.samples[len(sp.samples)-1], true
}

// finish takes a last sample and returns them all.
func (sp *sampler) finish() ([]sample, error) {
	close(sp.stop)
	<-sp.done
	sp.mu.Lock()
	defer sp.mu.Unlock()
	return sp.samples, sp.lastErr
}
