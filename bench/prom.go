package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Metric names the bench reads from the server.
const (
	metricStored = "tandem_pipeline_events_stored_total"
	metricLag    = "tandem_pipeline_lag_records"
)

// parseProm parses the Prometheus text exposition format. Each series is
// keyed by its name followed by its label set as written, e.g.
// `requests_total{code="200"}`; comments and blank lines are skipped.
func parseProm(r io.Reader) (map[string]float64, error) {
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 4<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		key, rest, err := splitSeries(line)
		if err != nil {
			return nil, fmt.Errorf("metrics line %d: %w", n, err)
		}
		fields := strings.Fields(rest)
		if len(fields) < 1 || len(fields) > 2 {
			return nil, fmt.Errorf("metrics line %d: want a value and an optional timestamp", n)
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return nil, fmt.Errorf("metrics line %d: bad value %q", n, fields[0])
		}
		out[key] = v
	}
	return out, sc.Err()
}

// splitSeries splits a sample line into the series (name and labels) and
// the rest. Label values may hold spaces, braces and escaped quotes.
func splitSeries(line string) (series, rest string, err error) {
	i := strings.IndexAny(line, "{ \t")
	if i == 0 {
		return "", "", fmt.Errorf("no metric name")
	}
	if i < 0 {
		return "", "", fmt.Errorf("no value")
	}
	if line[i] != '{' {
		return line[:i], line[i:], nil
	}
	inQuote := false
	for j := i + 1; j < len(line); j++ {
		switch c := line[j]; {
		case inQuote && c == '\\':
			j++
		case c == '"':
			inQuote = !inQuote
		case !inQuote && c == '}':
			return line[:j+1], line[j+1:], nil
		}
	}
	return "", "", fmt.Errorf("unterminated label set")
}

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

// sample is one reading of the pipeline's metrics.
type sample struct {
	At     time.Time
	Stored float64
	Lag    float64
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
	return sample{At: at, Stored: stored, Lag: lag}, nil
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

// finish takes a last sample and returns them all.
func (sp *sampler) finish() ([]sample, error) {
	close(sp.stop)
	<-sp.done
	sp.mu.Lock()
	defer sp.mu.Unlock()
	return sp.samples, sp.lastErr
}
