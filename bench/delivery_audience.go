package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// audienceRow is the audience phase's outcome: per profile, the time from
// the collection API's 200 for its qualifying event to the receiver
// getting its "Audience Entered".
type audienceRow struct {
	rate               int
	acceptedRate       float64
	expected, received int
	p50, p99, max      time.Duration
	cores              float64
}

func printAudienceRow(w io.Writer, r audienceRow) {
	fmt.Fprintf(w, "%-11s | %-8s | %13s | %9s | %9s | %8s | %8s | %8s | %s\n",
		"phase", "receiver", "profiles/s", "expected", "entered", "p50 ms", "p99 ms", "max ms", "server CPU")
	fmt.Fprintf(w, "%-11s | %-8s | %13.0f | %9d | %9d | %8.1f | %8.1f | %8.1f | %4.2f cores\n",
		"audience", "audience", r.acceptedRate, r.expected, r.received, ms(r.p50), ms(r.p99), ms(r.max), r.cores)
	fmt.Fprintln(w, `audience: per new profile, from the collection API's 200 for its one "Order Completed" to the receiver's`)
	fmt.Fprintln(w, `first "Audience Entered" for that userId (rule computed.orders_30d >= 1); "expected": profiles whose event was`)
	fmt.Fprintln(w, `accepted, "entered": those whose "Audience Entered" arrived before the phase ended.`)
}

// audiencePhase starts a fresh server with one computed trait and one
// audience routed to a local receiver, sends one qualifying event per new
// profile at rate profiles/s for d, and measures when each profile's
// "Audience Entered" reaches the receiver.
func audiencePhase(ctx context.Context, dir string, rate int, d time.Duration, destBatch int, stderr io.Writer) (audienceRow, error) {
	var row audienceRow
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return row, err
	}
	fmt.Fprintf(stderr, "phase %q: starting server\n", "audience")
	srv, err := startServer(ctx, "tandem", filepath.Join(dir, "data"), filepath.Join(dir, "serve.log"), newToken(),
		"--destination-allow", "127.0.0.0/8")
	if err != nil {
		return row, err
	}
	defer srv.proc.stop(30 * time.Second)
	if err := srv.createSource(ctx); err != nil {
		return row, err
	}
	recv, err := startReceiver("audience", 0, 0)
	if err != nil {
		return row, err
	}
	defer recv.close()
	body, _ := json.Marshal(map[string]any{"name": recv.name, "type": "webhook", "owner": "bench",
		"config": map[string]any{"url": recv.url, "batch": destBatch, "concurrency": 8}})
	b, err := srv.apiBody(ctx, "POST", "/api/v1/destinations", body)
	if err != nil {
		return row, err
	}
	var dst struct {
		ID string `json:"id"`
	}
	if json.Unmarshal(b, &dst) != nil || dst.ID == "" {
		return row, fmt.Errorf("create destination: no id in %s", b)
	}
	if err := srv.api(ctx, "POST", "/api/v1/computed-traits",
		[]byte(`{"name":"orders_30d","kind":"count","event":"Order Completed","window":"30d"}`)); err != nil {
		return row, err
	}
	body, _ = json.Marshal(map[string]any{"name": "buyers", "rule": "computed.orders_30d >= 1", "destinations": []string{dst.ID}})
	if err := srv.api(ctx, "POST", "/api/v1/audiences", body); err != nil {
		return row, err
	}
	time.Sleep(time.Second) // the destination's consumer starts

	cpu0, _ := srv.proc.cpu()
	t0 := time.Now()
	acked, elapsed, err := sendProfiles(ctx, srv, rate, d)
	if err != nil {
		return row, err
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil && recv.notEntered(acked) > 0 {
		time.Sleep(100 * time.Millisecond)
	}
	cpu1, _ := srv.proc.cpu()
	row = audienceRow{rate: rate, acceptedRate: float64(len(acked)) / elapsed.Seconds(), expected: len(acked),
		cores: (cpu1 - cpu0).Seconds() / time.Since(t0).Seconds()}
	row.received, row.p50, row.p99, row.max = recv.enteredLatency(acked)
	return row, nil
}

// enteredLatency matches acked userIds with their "Audience Entered"
// arrivals: how many arrived, and p50, p99 and max of arrival minus the
// 200 (at least 0).
func (r *benchReceiver) enteredLatency(acked map[string]time.Time) (n int, p50, p99, mx time.Duration) {
	var lat []time.Duration
	r.mu.Lock()
	for user, at := range acked {
		if got, ok := r.entered[user]; ok {
			lat = append(lat, max(0, got.Sub(at)))
		}
	}
	r.mu.Unlock()
	if len(lat) == 0 {
		return 0, 0, 0, 0
	}
	slices.Sort(lat)
	return len(lat), percentile(lat, 0.50), percentile(lat, 0.99), lat[len(lat)-1]
}

func (r *benchReceiver) notEntered(acked map[string]time.Time) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for user := range acked {
		if _, ok := r.entered[user]; !ok {
			n++
		}
	}
	return n
}

// sendProfiles sends, at rate requests/s for d, one "Order Completed" per
// new userId, each in its own request, and returns when each accepted
// userId's 200 arrived.
func sendProfiles(ctx context.Context, srv *server, rate int, d time.Duration) (map[string]time.Time, time.Duration, error) {
	clients := max(1, min(64, rate/50+1))
	interval := time.Duration(float64(time.Second) * float64(clients) / float64(rate))
	hc := newHTTPClient(clients)
	acked := map[string]time.Time{}
	var mu sync.Mutex
	var firstErr error
	run := time.Now().UnixNano()
	start := time.Now()
	end := start.Add(d)
	var wg sync.WaitGroup
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
				user := fmt.Sprintf("aud-%x-%d-%d", run, c, n)
				ev := fmt.Sprintf(`{"batch":[{"type":"track","event":"Order Completed","userId":%q,"messageId":"%s-o","timestamp":%q,"properties":{"total":10}}]}`,
					user, user, time.Now().UTC().Format(time.RFC3339Nano))
				status, err := postEvents(ctx, hc, srv.base, srv.writeKey, ev)
				now := time.Now()
				mu.Lock()
				if err == nil && status == 200 {
					acked[user] = now
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
		return nil, 0, firstErr
	}
	return acked, elapsed, nil
}
