package bench

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// markerEvent is the event name of the e2e markers.
const markerEvent = "E2E Marker"

// pollEvery is how often the marker tracker asks the node.
const pollEvery = 100 * time.Millisecond

// funnelAtLeastEvery is how often the tracker runs the funnel while a
// marker is pending even if the node's stored counter did not move.
const funnelAtLeastEvery = 5 * time.Second

// lookupsPerPoll caps the profile lookups of one poll (oldest markers
// first), so that polling stays a small load next to the events.
const lookupsPerPoll = 8

// marker is one marker event: acknowledged at Acked, found in a profile
// lookup at Profile and in a funnel at Funnel (zero: not yet).
type marker struct {
	Key     string // the marker property's value
	UserID  string
	Acked   time.Time
	Profile time.Time
	Funnel  time.Time
}

func (m *marker) visible() bool { return !m.Profile.IsZero() && !m.Funnel.IsZero() }

// delay is from the 200 to the later of the two sightings.
func (m *marker) delay() time.Duration {
	t := m.Profile
	if m.Funnel.After(t) {
		t = m.Funnel
	}
	return t.Sub(m.Acked)
}

// markerTracker sends marker events through /v1/batch and polls the
// management API until each shows up in a profile and in a funnel.
type markerTracker struct {
	srv   *server
	runID string
	step  int
	from  time.Time // the funnel's range starts here

	mu       sync.Mutex
	markers  []*marker
	sendErrs int
	lastErr  string

	stopSend chan struct{}
	stopPoll chan struct{}
	sendDone chan struct{}
	pollDone chan struct{}
	once     sync.Once
}

// startMarkers starts sending a marker every interval and polling for
// them; from is before the first marker's timestamp.
func startMarkers(ctx context.Context, srv *server, runID string, step int, interval time.Duration, from time.Time) *markerTracker {
	mt := &markerTracker{srv: srv, runID: runID, step: step, from: from.Add(-time.Minute),
		stopSend: make(chan struct{}), stopPoll: make(chan struct{}), sendDone: make(chan struct{}), pollDone: make(chan struct{})}
	hc := &http.Client{Timeout: 30 * time.Second}
	go mt.send(ctx, hc, interval)
	go mt.poll(ctx, hc)
	return mt
}

func (mt *markerTracker) fail(msg string) {
	mt.mu.Lock()
	defer mt.mu.Unlock()
	mt.lastErr = msg
}

func (mt *markerTracker) send(ctx context.Context, hc *http.Client, interval time.Duration) {
	defer close(mt.sendDone)
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(mt.srv.writeKey+":"))
	t := time.NewTicker(interval)
	defer t.Stop()
	for i := 0; ; i++ {
		key := fmt.Sprintf("s%d-%d", mt.step, i)
		m := &marker{Key: key, UserID: fmt.Sprintf("marker-%s-%s", mt.runID, key)}
		body := fmt.Sprintf(`{"batch":[{"type":"track","event":%q,"userId":%q,"messageId":"marker-%s-%s","timestamp":%q,"properties":{"marker":%q}}]}`,
			markerEvent, m.UserID, mt.runID, key, time.Now().UTC().Format(time.RFC3339Nano), key)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, mt.srv.base+"/v1/batch", strings.NewReader(body))
		if err != nil {
			return
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", auth)
		resp, err := hc.Do(req)
		if err == nil {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				m.Acked = time.Now()
				mt.mu.Lock()
				mt.markers = append(mt.markers, m)
				mt.mu.Unlock()
			} else {
				err = fmt.Errorf("marker: HTTP %d %s", resp.StatusCode, bytes.TrimSpace(b))
			}
		}
		if err != nil && ctx.Err() == nil {
			mt.mu.Lock()
			mt.sendErrs++
			mt.lastErr = err.Error()
			mt.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-mt.stopSend:
			return
		case <-t.C:
		}
	}
}

// pending returns the markers not yet seen in a profile and those not yet
// seen in a funnel, oldest first.
func (mt *markerTracker) pending() (profile, funnel []*marker) {
	mt.mu.Lock()
	defer mt.mu.Unlock()
	for _, m := range mt.markers {
		if m.Profile.IsZero() {
			profile = append(profile, m)
		}
		if m.Funnel.IsZero() {
			funnel = append(funnel, m)
		}
	}
	return profile, funnel
}

// poll looks for the pending markers every pollEvery: each in a profile
// lookup, and all at once in a funnel. An event can show in a funnel only
// once the event store has committed it, and the node counts its events
// stored (tandem_pipeline_events_stored_total) right after each commit:
// so the funnel, which scans the stored events and their profile links
// and costs the node far more than the counter, runs only when the
// counter moved since the last funnel (or funnelAtLeastEvery passed).
// A marker is still seen at the first poll after its commit.
func (mt *markerTracker) poll(ctx context.Context, hc *http.Client) {
	defer close(mt.pollDone)
	t := time.NewTicker(pollEvery)
	defer t.Stop()
	lastStored := -1.0
	var lastFunnel time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-mt.stopPoll:
			return
		case <-t.C:
		}
		profile, funnel := mt.pending()
		if len(funnel) > 0 {
			stored, err := mt.stored(ctx, hc)
			if err == nil && stored == lastStored && time.Since(lastFunnel) < funnelAtLeastEvery {
				funnel = nil // nothing committed since the last funnel
			}
			lastStored = stored
		}
		if len(funnel) > 0 {
			lastFunnel = time.Now()
			seen, err := mt.funnelKeys(ctx, hc)
			now := time.Now()
			if err != nil {
				mt.fail(err.Error())
			}
			mt.mu.Lock()
			for _, m := range funnel {
				if seen[m.Key] {
					m.Funnel = now
				}
			}
			mt.mu.Unlock()
		}
		for i, m := range profile {
			if i == lookupsPerPoll {
				break
			}
			ok, err := mt.lookup(ctx, hc, m.UserID)
			now := time.Now()
			if err != nil {
				mt.fail(err.Error())
				break
			}
			if ok {
				mt.mu.Lock()
				m.Profile = now
				mt.mu.Unlock()
			}
		}
	}
}

// stored reads the node's count of events stored; -1 and the error when
// it cannot.
func (mt *markerTracker) stored(ctx context.Context, hc *http.Client) (float64, error) {
	m, err := mt.srv.metrics(ctx, hc)
	if err != nil {
		return -1, err
	}
	v, ok := promSum(m, metricStored)
	if !ok {
		return -1, fmt.Errorf("/metrics has no %s", metricStored)
	}
	return v, nil
}

// lookup asks GET /api/v1/profiles/lookup for a user id: true on 200,
// false on 404.
func (mt *markerTracker) lookup(ctx context.Context, hc *http.Client, userID string) (bool, error) {
	u := mt.srv.base + "/api/v1/profiles/lookup?identifier=" + url.QueryEscape("user_id:"+userID)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return false, err
	}
	req.Header.Set("Authorization", "Bearer "+mt.srv.token)
	resp, err := hc.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	switch resp.StatusCode {
	case http.StatusOK:
		return true, nil
	case http.StatusNotFound:
		return false, nil
	default:
		return false, fmt.Errorf("profile lookup: HTTP %d %s", resp.StatusCode, bytes.TrimSpace(b))
	}
}

// funnelKeys runs a one-step funnel on the marker event broken down by the
// marker property, and returns the markers it counts.
func (mt *markerTracker) funnelKeys(ctx context.Context, hc *http.Client) (map[string]bool, error) {
	q := map[string]any{
		"steps":     []map[string]any{{"event": markerEvent}},
		"window":    "1d",
		"from":      mt.from.UTC().Format(time.RFC3339Nano),
		"to":        mt.from.Add(24 * time.Hour).UTC().Format(time.RFC3339Nano),
		"breakdown": map[string]string{"property": "marker"},
	}
	body, _ := json.Marshal(q)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, mt.srv.base+"/api/v1/analytics/funnel", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+mt.srv.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("funnel: HTTP %d %s", resp.StatusCode, bytes.TrimSpace(b))
	}
	var out struct {
		Breakdown []struct {
			Value *string `json:"value"`
			Steps []struct {
				Profiles int64 `json:"profiles"`
			} `json:"steps"`
		} `json:"breakdown"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("funnel: bad answer: %w", err)
	}
	seen := map[string]bool{}
	for _, g := range out.Breakdown {
		if g.Value != nil && len(g.Steps) > 0 && g.Steps[0].Profiles > 0 {
			seen[strings.Trim(*g.Value, `"`)] = true
		}
	}
	return seen, nil
}

// counts returns the markers acknowledged and those visible in both.
func (mt *markerTracker) counts() (sent, visible int) {
	mt.mu.Lock()
	defer mt.mu.Unlock()
	for _, m := range mt.markers {
		if m.visible() {
			visible++
		}
	}
	return len(mt.markers), visible
}

// stopSending ends the sender and waits for it.
func (mt *markerTracker) stopSending() {
	mt.once.Do(func() { close(mt.stopSend) })
	<-mt.sendDone
}

// wait polls on until every marker is visible or timeout passes.
func (mt *markerTracker) wait(ctx context.Context, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if sent, visible := mt.counts(); visible == sent {
			return
		}
		sleep(ctx, pollEvery)
	}
}

// stop ends sending and polling.
func (mt *markerTracker) stop() {
	mt.stopSending()
	select {
	case <-mt.stopPoll:
	default:
		close(mt.stopPoll)
	}
	<-mt.pollDone
}

// fill puts the marker figures into the step.
func (mt *markerTracker) fill(st *E2EStep) {
	mt.mu.Lock()
	defer mt.mu.Unlock()
	var d []time.Duration
	for _, m := range mt.markers {
		if m.visible() {
			d = append(d, m.delay())
		}
	}
	slices.Sort(d)
	st.Markers, st.MarkersVisible = len(mt.markers), len(d)
	if len(d) > 0 {
		st.DelayP50Ms = ptr(ms(percentile(d, 50)))
		st.DelayP99Ms = ptr(ms(percentile(d, 99)))
		st.DelayMaxMs = ptr(ms(d[len(d)-1]))
	}
	switch {
	case mt.sendErrs > 0:
		st.MarkerError = fmt.Sprintf("%d markers not accepted; last error: %s", mt.sendErrs, mt.lastErr)
	case len(d) < len(mt.markers) && mt.lastErr != "":
		st.MarkerError = "last poll error: " + mt.lastErr
	}
}
