package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Widths of the fixed-width numbers in a messageId
// "bench-<run>-<client>-<request counter>-<event index>".
const (
	clientDigits  = 4
	counterDigits = 12
	eventDigits   = 4
	maxClients    = 9999
)

// generator owns one body template per client. Counters carry on from phase
// to phase, so every messageId of a run is unique, and the run id makes them
// unique across runs (for --target against a long-lived server).
type generator struct {
	runID     string
	batch     int
	templates []*template
}

// template is a request body whose messageIds differ, request to request,
// only in a fixed-width decimal counter: advancing it rewrites those digits
// in place, so the generator encodes no JSON per request.
type template struct {
	patch   patchBuf
	counter uint64 // the value of the last request built
}

// patchBuf is a byte slice with offsets of fixed-width counter fields.
type patchBuf struct {
	b    []byte
	offs []int
}

// set writes n, zero-padded to counterDigits, at every offset.
func (p *patchBuf) set(n uint64) {
	var d [counterDigits]byte
	for i := counterDigits - 1; i >= 0; i-- {
		d[i] = byte('0' + n%10)
		n /= 10
	}
	for _, o := range p.offs {
		copy(p.b[o:o+counterDigits], d[:])
	}
}

// newRunID returns 8 random hex digits.
func newRunID() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func newGenerator(runID string, clients, batch int, now time.Time) *generator {
	g := &generator{runID: runID, batch: batch}
	for c := 0; c < clients; c++ {
		g.templates = append(g.templates, newTemplate(runID, c, batch, now))
	}
	return g
}

// idPrefix is what precedes the counter in every messageId of one client.
func idPrefix(runID string, client int) string {
	return fmt.Sprintf("bench-%s-%0*d-", runID, clientDigits, client)
}

// newTemplate builds client's body: a /v1/batch object with batch small
// track events.
func newTemplate(runID string, client, batch int, now time.Time) *template {
	ts := now.UTC().Format(time.RFC3339Nano)
	prefix := idPrefix(runID, client)
	zero := fmt.Sprintf("%0*d", counterDigits, 0)
	var b bytes.Buffer
	b.WriteString(`{"batch":[`)
	for e := 0; e < batch; e++ {
		if e > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"type":"track","event":"Order Completed","userId":"user-%0*d-%0*d",`+
			`"messageId":"%s%s-%0*d","timestamp":%q,`+
			`"properties":{"orderId":"o-%d","revenue":%d.5,"currency":"EUR","plan":"pro"},`+
			`"context":{"library":{"name":"tandem-bench","version":"1"}}}`,
			clientDigits, client, eventDigits, e, prefix, zero, eventDigits, e, ts, e, 10+e%90)
	}
	fmt.Fprintf(&b, `],"sentAt":%q}`, ts)
	t := &template{patch: patchBuf{b: b.Bytes()}}
	t.patch.offs = counterOffsets(t.patch.b, prefix)
	return t
}

// counterOffsets finds the counter digits after every occurrence of prefix.
func counterOffsets(b []byte, prefix string) []int {
	var offs []int
	p := []byte(prefix)
	for i := 0; ; {
		j := bytes.Index(b[i:], p)
		if j < 0 {
			return offs
		}
		o := i + j + len(p)
		offs = append(offs, o)
		i = o + counterDigits
	}
}

// next patches the template for the next request and returns its body.
func (t *template) next() []byte {
	t.counter++
	t.patch.set(t.counter)
	return t.patch.b
}

// loadOptions configure one run of the load generator.
type loadOptions struct {
	URL      string // the /v1/batch URL
	WriteKey string
	Duration time.Duration // stop after this long, if > 0
	Events   int64         // stop once this many events were accepted, if > 0
	Rate     float64       // offered events/s across all clients, if > 0
	// CatchUp: with Rate, a client that fell behind its schedule sends at
	// once until it is back on it, so the offered rate holds on average
	// across stalls; without it a client drops what it missed.
	CatchUp  bool
	Phase    string    // for progress lines
	Progress io.Writer // nil: none
}

// loadResult is what the load generator measured.
type loadResult struct {
	Requests   int64
	OK         int64 // 200 responses
	Events     int64 // events accepted: OK × batch
	Bytes      int64 // body bytes of the accepted requests
	Elapsed    time.Duration
	Latencies  []time.Duration // of every request, sorted
	Errors     map[string]int64
	FirstError string
}

func (r *loadResult) eventsPerSec() float64 { return perSec(float64(r.Events), r.Elapsed) }
func (r *loadResult) requestsPerSec() float64 {
	return perSec(float64(r.Requests), r.Elapsed)
}

func perSec(n float64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return n / d.Seconds()
}

// newHTTPClient returns a keep-alive client with an idle connection kept for
// every load client.
func newHTTPClient(clients int) *http.Client {
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        2*clients + 8,
		MaxIdleConnsPerHost: 2*clients + 8,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
	return &http.Client{Transport: tr, Timeout: 60 * time.Second}
}

// bodyReader is a request body that reports when the transport is done with
// it: a template may only be patched again after that.
type bodyReader struct {
	bytes.Reader
	once   sync.Once
	closed chan struct{}
}

func (b *bodyReader) Close() error {
	b.once.Do(func() { close(b.closed) })
	return nil
}

// runLoad drives opts.URL with one goroutine per template of g until the
// duration is up, the event target is reached, or ctx ends.
func runLoad(ctx context.Context, hc *http.Client, g *generator, opts loadOptions) (*loadResult, error) {
	if opts.Duration <= 0 && opts.Events <= 0 {
		return nil, errors.New("bench: load needs a duration or an event count")
	}
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(opts.WriteKey+":"))
	batch := int64(g.batch)
	var (
		claimed  atomic.Int64 // events in requests sent or being sent (event-count mode)
		accepted atomic.Int64
	)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	var deadline time.Time
	if opts.Duration > 0 {
		deadline = start.Add(opts.Duration)
	}

	type clientStats struct {
		lat      []time.Duration
		requests int64
		ok       int64
		bytes    int64
		errors   map[string]int64
		firstErr string
	}
	stats := make([]clientStats, len(g.templates))
	var wg sync.WaitGroup
	for i, t := range g.templates {
		wg.Add(1)
		go func(st *clientStats, t *template) {
			defer wg.Done()
			st.errors = map[string]int64{}
			// With a rate, each client sends on its own schedule; a client
			// that falls behind sends at once but builds up no debt unless
			// opts.CatchUp.
			var interval time.Duration
			next := time.Now()
			if opts.Rate > 0 {
				interval = time.Duration(float64(time.Second) * float64(batch) * float64(len(g.templates)) / opts.Rate)
			}
			fail := func(key, msg string) {
				st.errors[key]++
				if st.firstErr == "" {
					st.firstErr = msg
				}
			}
			for runCtx.Err() == nil {
				if !deadline.IsZero() && !time.Now().Before(deadline) {
					return
				}
				if opts.Events > 0 {
					if accepted.Load() >= opts.Events {
						return
					}
					if claimed.Add(batch)-batch >= opts.Events {
						// Enough in flight; wait in case one of them fails.
						claimed.Add(-batch)
						sleep(runCtx, 5*time.Millisecond)
						continue
					}
				}
				if interval > 0 {
					if d := time.Until(next); d > 0 {
						sleep(runCtx, d)
					} else if -d > interval && !opts.CatchUp {
						next = time.Now()
					}
					next = next.Add(interval)
				}
				body := &bodyReader{closed: make(chan struct{})}
				body.Reset(t.next())
				req, err := http.NewRequestWithContext(runCtx, http.MethodPost, opts.URL, body)
				if err != nil {
					return
				}
				req.ContentLength = int64(body.Len())
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", auth)
				t0 := time.Now()
				resp, err := hc.Do(req)
				status, answer := 0, ""
				if err == nil {
					status = resp.StatusCode
					if status != http.StatusOK && st.firstErr == "" {
						b, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
						answer = string(bytes.TrimSpace(b))
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				lat := time.Since(t0)
				// The transport may still hold the body after an early
				// response; wait until it lets go before patching again.
				select {
				case <-body.closed:
				default:
					select {
					case <-body.closed:
					case <-time.After(5 * time.Second):
						t.patch.b = slices.Clone(t.patch.b)
					}
				}
				if runCtx.Err() != nil && err != nil {
					// Cut off by the end of the run, not a failure.
					if opts.Events > 0 {
						claimed.Add(-batch)
					}
					return
				}
				st.requests++
				st.lat = append(st.lat, lat)
				if status == http.StatusOK {
					st.ok++
					st.bytes += int64(len(t.patch.b))
					accepted.Add(batch)
					continue
				}
				if opts.Events > 0 {
					claimed.Add(-batch)
				}
				if err != nil {
					fail("transport", err.Error())
				} else {
					fail(strconv.Itoa(status), strings.TrimSpace(fmt.Sprintf("HTTP %d %s", status, answer)))
				}
				// Do not spin on a failing server.
				sleep(runCtx, 10*time.Millisecond)
			}
		}(&stats[i], t)
	}

	done := make(chan struct{})
	if opts.Progress != nil {
		go func() {
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			for {
				select {
				case <-done:
					return
				case now := <-tick.C:
					el := now.Sub(start).Round(time.Second)
					if opts.Duration > 0 {
						fmt.Fprintf(opts.Progress, "phase %s: %s/%s, %s events accepted\n", opts.Phase, el, opts.Duration, group(float64(accepted.Load())))
					} else {
						fmt.Fprintf(opts.Progress, "phase %s: %s, %s/%s events accepted\n", opts.Phase, el, group(float64(accepted.Load())), group(float64(opts.Events)))
					}
				}
			}
		}()
	}
	wg.Wait()
	close(done)
	res := &loadResult{Elapsed: time.Since(start), Errors: map[string]int64{}}
	for _, st := range stats {
		res.Requests += st.requests
		res.OK += st.ok
		res.Bytes += st.bytes
		res.Latencies = append(res.Latencies, st.lat...)
		for k, v := range st.errors {
			res.Errors[k] += v
		}
		if res.FirstError == "" {
			res.FirstError = st.firstErr
		}
	}
	res.Events = res.OK * batch
	slices.Sort(res.Latencies)
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	return res, nil
}

// percentile returns the nearest-rank p-th percentile (0 < p ≤ 100) of
// sorted; 0 when it is empty.
func percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	rank := int(math.Ceil(float64(n)*p/100 - 1e-9))
	rank = max(1, min(n, rank))
	return sorted[rank-1]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
