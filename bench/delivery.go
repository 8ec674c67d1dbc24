package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

const deliveryUsage = `Usage: tandem bench delivery [flags]

Starts a fresh "tandem serve" (a child process, --destination-allow
127.0.0.0/8) and local webhook receivers in this process, sends events to
the collection API at --rate events/s for --duration, and measures, per
destination, the time from the collection API's 200 to the receiver
getting each event (an event delivered before the client read its 200
counts as 0).

Phase "two healthy": two destinations whose receivers answer at once.
Phase "one slow": the same healthy destination beside one whose receiver
answers after --slow-delay and fails --slow-fail of the time (503), so that
the healthy one's figures can be compared with the first phase.
Phase "audience" (skipped with --audience-rate 0): a fresh server with a
computed trait (count of "Order Completed" in 30 days) and an audience
(orders_30d >= 1) whose one destination is a third receiver; for
--audience-duration, --audience-rate new profiles/s each send one
"Order Completed", and the bench measures, per profile, the time from that
event's 200 to the receiver getting the profile's "Audience Entered".

Flags:
`

func deliveryMain(args []string, stdout, stderr io.Writer) int {
	const cmd = "tandem bench delivery"
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	rate := fs.Int("rate", 10000, "events per second offered to the collection API")
	duration := fs.Duration("duration", 20*time.Second, "how long each phase sends")
	batch := fs.Int("batch", 100, "events per collection request")
	destBatch := fs.Int("dest-batch", 100, "events per webhook request (the destinations' batch)")
	lanes := fs.Int("concurrency", 8, "the healthy destinations' ordered lanes")
	slowDelay := fs.Duration("slow-delay", 2*time.Second, "the slow receiver's answer time")
	slowFail := fs.Float64("slow-fail", 0.3, "the share of the slow receiver's answers that are 503")
	audRate := fs.Int("audience-rate", 200, "new profiles per second in the audience phase (0 skips it)")
	audDuration := fs.Duration("audience-duration", 20*time.Second, "how long the audience phase sends")
	keep := fs.Bool("keep", false, "keep the temporary directory (server logs)")
	if code, ok := parseFlags(fs, args, deliveryUsage, stdout, stderr); !ok {
		return code
	}
	switch {
	case *rate < 1:
		return usageErr(stderr, cmd, "--rate", "must be positive")
	case *duration <= 0:
		return usageErr(stderr, cmd, "--duration", "must be positive")
	case *batch < 1 || *batch > 2500:
		return usageErr(stderr, cmd, "--batch", "must be from 1 to 2500")
	case *destBatch < 1 || *destBatch > 500:
		return usageErr(stderr, cmd, "--dest-batch", "must be from 1 to 500")
	case *lanes < 1 || *lanes > 64:
		return usageErr(stderr, cmd, "--concurrency", "must be from 1 to 64")
	case *slowFail < 0 || *slowFail >= 1:
		return usageErr(stderr, cmd, "--slow-fail", "must be from 0 to below 1")
	case *audRate < 0 || *audRate > 10000:
		return usageErr(stderr, cmd, "--audience-rate", "must be from 0 to 10000")
	case *audRate > 0 && *audDuration <= 0:
		return usageErr(stderr, cmd, "--audience-duration", "must be positive")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	dir, err := tempDir("delivery")
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", cmd, err)
		return 1
	}
	if *keep {
		fmt.Fprintf(stderr, "keeping %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	o := deliveryOpts{rate: *rate, duration: *duration, batch: *batch, destBatch: *destBatch, lanes: *lanes,
		slowDelay: *slowDelay, slowFail: *slowFail}
	var rows []deliveryRow
	for _, phase := range []string{"two healthy", "one slow"} {
		r, err := deliveryPhase(ctx, filepath.Join(dir, strings.ReplaceAll(phase, " ", "-")), phase, o, stderr)
		if err != nil {
			fmt.Fprintf(stderr, "%s: %s: %v\n", cmd, phase, err)
			return 1
		}
		rows = append(rows, r...)
	}
	var aud *audienceRow
	if *audRate > 0 {
		a, err := audiencePhase(ctx, filepath.Join(dir, "audience"), *audRate, *audDuration, o.destBatch, stderr)
		if err != nil {
			fmt.Fprintf(stderr, "%s: audience: %v\n", cmd, err)
			return 1
		}
		aud = &a
	}
	fmt.Fprintf(stdout, "%-11s | %-8s | %13s | %9s | %9s | %8s | %8s | %8s | %12s | %s\n",
		"phase", "receiver", "accepted ev/s", "delivered", "missing", "p50 ms", "p99 ms", "max ms", "p99 sent ms", "server CPU")
	for _, r := range rows {
		fmt.Fprintf(stdout, "%-11s | %-8s | %13.0f | %9d | %9d | %8.1f | %8.1f | %8.1f | %12.1f | %4.2f cores\n",
			r.phase, r.receiver, r.acceptedRate, r.delivered, r.missing, ms(r.p50), ms(r.p99), ms(r.max), ms(r.p99Sent), r.cores)
	}
	fmt.Fprintln(stdout, `p50/p99/max: from the collection API's 200 to the receiver's first copy of the event (0 when the event arrived`)
	fmt.Fprintln(stdout, `before the client read its 200); "p99 sent": from the start of the collection request instead. "missing":`)
	fmt.Fprintln(stdout, `accepted events not delivered when the phase ended (the slow receiver's backlog is expected to be large).`)
	if aud != nil {
		fmt.Fprintln(stdout)
		printAudienceRow(stdout, *aud)
	}
	return 0
}

type deliveryOpts struct {
	rate, batch, destBatch, lanes int
	duration, slowDelay           time.Duration
	slowFail                      float64
}

type deliveryRow struct {
	phase, receiver    string
	acceptedRate       float64
	delivered, missing int
	p50, p99, max      time.Duration
	p99Sent            time.Duration
	cores              float64
}

// receiver is a local webhook endpoint that notes when each event first
// arrived.
type benchReceiver struct {
	name  string
	delay time.Duration
	fail  float64
	srv   *http.Server
	url   string
	mu    sync.Mutex
	first map[string]time.Time
	// entered: when each userId's first "Audience Entered" arrived.
	entered map[string]time.Time
}

func startReceiver(name string, delay time.Duration, fail float64) (*benchReceiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &benchReceiver{name: name, delay: delay, fail: fail, first: map[string]time.Time{}, entered: map[string]time.Time{}, url: "http://" + ln.Addr().String() + "/hook"}
	r.srv = &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second}
	go r.srv.Serve(ln)
	return r, nil
}

func (r *benchReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	now := time.Now()
	if err != nil {
		w.WriteHeader(400)
		return
	}
	if r.delay > 0 {
		time.Sleep(r.delay)
	}
	if r.fail > 0 && rand.Float64() < r.fail {
		w.WriteHeader(503)
		return
	}
	var b struct {
		Batch []struct {
			MessageID string `json:"messageId"`
			Event     string `json:"event"`
			UserID    string `json:"userId"`
		} `json:"batch"`
	}
	if json.Unmarshal(body, &b) != nil {
		w.WriteHeader(400)
		return
	}
	r.mu.Lock()
	for _, e := range b.Batch {
		if _, ok := r.first[e.MessageID]; !ok {
			r.first[e.MessageID] = now.Add(r.delay) // when it was taken
		}
		if e.Event == "Audience Entered" && e.UserID != "" {
			if _, ok := r.entered[e.UserID]; !ok {
				r.entered[e.UserID] = now.Add(r.delay)
			}
		}
	}
	r.mu.Unlock()
}

func (r *benchReceiver) close() { _ = r.srv.Close() }

func deliveryPhase(ctx context.Context, dir, phase string, o deliveryOpts, stderr io.Writer) ([]deliveryRow, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	fmt.Fprintf(stderr, "phase %q: starting server\n", phase)
	srv, err := startServer(ctx, "tandem", filepath.Join(dir, "data"), filepath.Join(dir, "serve.log"), newToken(),
		"--destination-allow", "127.0.0.0/8")
	if err != nil {
		return nil, err
	}
	defer srv.proc.stop(30 * time.Second)
	if err := srv.createSource(ctx); err != nil {
		return nil, err
	}
	healthy, err := startReceiver("healthy", 0, 0)
	if err != nil {
		return nil, err
	}
	defer healthy.close()
	second, err := startReceiver("healthy2", 0, 0)
	if phase == "one slow" {
		second, err = startReceiver("slow", o.slowDelay, o.slowFail)
	}
	if err != nil {
		return nil, err
	}
	defer second.close()
	for _, r := range []*benchReceiver{healthy, second} {
		lanes := o.lanes
		if r.delay > 0 {
			lanes = 64
		}
		body, _ := json.Marshal(map[string]any{"name": r.name, "type": "webhook", "owner": "bench",
			"config": map[string]any{"url": r.url, "batch": o.destBatch, "concurrency": lanes}})
		if err := srv.api(ctx, "POST", "/api/v1/destinations", body); err != nil {
			return nil, err
		}
	}
	time.Sleep(time.Second) // the destinations' consumers start

	cpu0, _ := srv.proc.cpu()
	t0 := time.Now()
	acked, sent, elapsed, err := sendPaced(ctx, srv, o)
	if err != nil {
		return nil, err
	}
	// Let the healthy receivers catch up (bounded).
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if healthy.missing(acked) == 0 && (second.delay > 0 || second.missing(acked) == 0) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	cpu1, _ := srv.proc.cpu()
	cores := (cpu1 - cpu0).Seconds() / time.Since(t0).Seconds()
	var rows []deliveryRow
	for _, r := range []*benchReceiver{healthy, second} {
		row := deliveryRow{phase: phase, receiver: r.name, acceptedRate: float64(len(acked)) / elapsed.Seconds(), cores: cores}
		var lat, latSent []time.Duration
		r.mu.Lock()
		for id, at := range acked {
			got, ok := r.first[id]
			if !ok {
				row.missing++
				continue
			}
			row.delivered++
			lat = append(lat, max(0, got.Sub(at)))
			latSent = append(latSent, got.Sub(sent[id]))
		}
		r.mu.Unlock()
		slices.Sort(lat)
		slices.Sort(latSent)
		if len(lat) > 0 {
			row.p50, row.p99, row.max = percentile(lat, 0.50), percentile(lat, 0.99), lat[len(lat)-1]
			row.p99Sent = percentile(latSent, 0.99)
		}
		rows = append(rows, row)
	}
	return rows, nil
}

func (r *benchReceiver) missing(acked map[string]time.Time) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for id := range acked {
		if _, ok := r.first[id]; !ok {
			n++
		}
	}
	return n
}

// api sends one management API request and wants a 2xx.
func (s *server) api(ctx context.Context, method, path string, body []byte) error {
	_, err := s.apiBody(ctx, method, path, body)
	return err
}

// apiBody is api that also returns the answer's body.
func (s *server) apiBody(ctx context.Context, method, path string, body []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, s.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+s.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(b))
	}
	return b, nil
}

// sendPaced posts batches so that o.rate events/s are offered for
// o.duration, from enough clients that a slow answer does not lower the
// rate; it returns when each accepted event's 200 arrived.
func sendPaced(ctx context.Context, srv *server, o deliveryOpts) (acked, sent map[string]time.Time, _ time.Duration, _ error) {
	reqPerSec := float64(o.rate) / float64(o.batch)
	clients := max(1, min(64, int(reqPerSec/20)+1))
	interval := time.Duration(float64(time.Second) * float64(clients) / reqPerSec)
	hc := newHTTPClient(clients)
	acked, sent = map[string]time.Time{}, map[string]time.Time{}
	var mu sync.Mutex
	var firstErr error
	start := time.Now()
	end := start.Add(o.duration)
	var wg sync.WaitGroup
	users := 1000
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			next := start.Add(interval * time.Duration(c) / time.Duration(clients))
			for n := 0; ctx.Err() == nil; n++ {
				if next.After(end) {
					return
				}
				time.Sleep(time.Until(next))
				next = next.Add(interval)
				ids := make([]string, o.batch)
				var b strings.Builder
				b.WriteString(`{"batch":[`)
				for i := range ids {
					ids[i] = fmt.Sprintf("d-%d-%d-%d", c, n, i)
					if i > 0 {
						b.WriteByte(',')
					}
					fmt.Fprintf(&b, `{"type":"track","event":"Bench","userId":"u%d","messageId":%q,"properties":{"n":%d}}`, (c*o.batch+i)%users, ids[i], n)
				}
				b.WriteString(`]}`)
				began := time.Now()
				status, err := postEvents(ctx, hc, srv.base, srv.writeKey, b.String())
				now := time.Now()
				mu.Lock()
				if err == nil && status == 200 {
					for _, id := range ids {
						acked[id] = now
						sent[id] = began
					}
				} else if firstErr == nil {
					firstErr = fmt.Errorf("collection answered %d: %v", status, err)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if len(acked) == 0 {
		if firstErr == nil {
			firstErr = errors.New("no request was accepted")
		}
		return nil, nil, 0, firstErr
	}
	return acked, sent, elapsed, nil
}

func postEvents(ctx context.Context, hc *http.Client, base, key, body string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/batch", strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.SetBasicAuth(key, "")
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}
