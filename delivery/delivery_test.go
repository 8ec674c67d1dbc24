package delivery_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tandem/access"
	"tandem/delivery"
	"tandem/event"
	"tandem/eventlog"
	"tandem/eventlog/jetstream"
	"tandem/governance"
	"tandem/metrics"
	"tandem/statestore"
	"tandem/statestore/sqlite/sqlitetest"
)

type rig struct {
	t     *testing.T
	log   *jetstream.Log
	db    *statestore.DB
	gov   *governance.Store
	m     *delivery.Manager
	reg   *metrics.Registry
	admin access.User
	it    access.User
	seq   atomic.Int64
}

func newRig(t *testing.T, retry delivery.RetryPolicy, allow ...string) *rig {
	t.Helper()
	return newRigOn(t, sqlitetest.Open(t), retry, allow...)
}

// newRigOn is newRig on a given state store.
func newRigOn(t *testing.T, db *statestore.DB, retry delivery.RetryPolicy, allow ...string) *rig {
	t.Helper()
	return newRigLogged(t, db, nil, retry, allow...)
}

func newRigLogged(t *testing.T, db *statestore.DB, logger *slog.Logger, retry delivery.RetryPolicy, allow ...string) *rig {
	t.Helper()
	ctx := context.Background()
	log, err := jetstream.OpenEmbedded(jetstream.EmbeddedOptions{Dir: filepath.Join(t.TempDir(), "log")})
	if err != nil {
		t.Fatal(err)
	}
	migs := append(append(append(access.Migrations(), governance.Migrations()...), governance.DestinationMigrations()...), delivery.Migrations()...)
	if err := db.Migrate(ctx, migs...); err != nil {
		t.Fatal(err)
	}
	users := access.NewStore(db)
	admin, _, err := users.CreateUser(ctx, "admin", access.RoleAdmin)
	if err != nil {
		t.Fatal(err)
	}
	it, _, err := users.CreateUser(ctx, "it", access.RoleIT)
	if err != nil {
		t.Fatal(err)
	}
	gov := governance.NewStore(db)
	reg := metrics.NewRegistry()
	m, err := delivery.New(delivery.Options{Log: log, Governance: gov, DB: db, Allow: allow, Retry: retry,
		Poll: 50 * time.Millisecond, Metrics: reg, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	gov.SetDestinationTypes(m.Types())
	rctx, cancel := context.WithCancel(ctx)
	stopped := make(chan struct{})
	go func() { _ = m.Run(rctx); close(stopped) }()
	t.Cleanup(func() { cancel(); <-stopped; log.Close() })
	return &rig{t: t, log: log, db: db, gov: gov, m: m, reg: reg, admin: admin, it: it}
}

// send appends one record holding n events per user for the given users,
// interleaved, with ids "<user>-<k>" numbered on from earlier sends.
func (r *rig) send(users []string, n int) []string {
	r.t.Helper()
	var evs []event.Event
	var ids []string
	now := time.Now().UTC()
	for range n {
		k := r.seq.Add(1)
		for _, u := range users {
			id := fmt.Sprintf("%s-%06d", u, k)
			raw := fmt.Sprintf(`{"type":"track","event":"Order Completed","userId":%q,"writeKey":"wk_secret","properties":{"k":%d,"email":"A@x.example","secret":"s","a":1}}`, u, k)
			evs = append(evs, event.Event{SourceID: "src_1", MessageID: id, Type: "track", Name: "Order Completed", UserID: u,
				Timestamp: now, ReceivedAt: now, Raw: []byte(raw)})
			ids = append(ids, id)
		}
	}
	if _, err := r.log.Append(context.Background(), event.EncodeRecord("src_1", evs, nil)); err != nil {
		r.t.Fatal(err)
	}
	return ids
}

func (r *rig) create(name, url string, extra map[string]any, by access.User) governance.Destination {
	r.t.Helper()
	cfg := map[string]any{"url": url, "secret": "shh", "timeoutMs": 300}
	for k, v := range extra {
		cfg[k] = v
	}
	d, err := r.gov.CreateDestination(context.Background(), governance.Destination{Name: name, Type: "webhook", Config: cfg,
		Owner: "Marketing", Purpose: "test"}, by)
	if err != nil {
		r.t.Fatal(err)
	}
	r.m.Refresh()
	return d
}

// receiver is a local webhook receiver; behave decides each answer
// (status, Retry-After, delay) from the request number (1-based).
type receiver struct {
	t      *testing.T
	srv    *httptest.Server
	mu     sync.Mutex
	got    []string            // messageIds of accepted events, in arrival order
	byUser map[string][]string // the same, per user
	reqs   atomic.Int64
	behave func(n int64) (status int, retryAfter string, delay time.Duration)
	badSig atomic.Int64
}

func newReceiver(t *testing.T, behave func(n int64) (int, string, time.Duration)) *receiver {
	rc := &receiver{t: t, byUser: map[string][]string{}, behave: behave}
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	n := rc.reqs.Add(1)
	status, ra, delay := 200, "", time.Duration(0)
	if rc.behave != nil {
		status, ra, delay = rc.behave(n)
	}
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
		}
		return // the client gave up: not accepted
	}
	if ra != "" {
		w.Header().Set("Retry-After", ra)
	}
	if status != 200 {
		w.WriteHeader(status)
		return
	}
	if r.Header.Get(delivery.SignatureHeader) != delivery.Sign("shh", body) {
		rc.badSig.Add(1)
	}
	var evs []map[string]any
	var batch struct {
		Batch []map[string]any `json:"batch"`
	}
	if json.Unmarshal(body, &batch) == nil && batch.Batch != nil {
		evs = batch.Batch
	} else {
		var one map[string]any
		if err := json.Unmarshal(body, &one); err != nil {
			rc.t.Errorf("receiver: body %q: %v", body, err)
		}
		evs = []map[string]any{one}
		if r.Header.Get("Idempotency-Key") != one["messageId"] {
			rc.t.Errorf("Idempotency-Key %q for messageId %v", r.Header.Get("Idempotency-Key"), one["messageId"])
		}
	}
	rc.mu.Lock()
	for _, e := range evs {
		id, _ := e["messageId"].(string)
		user, _ := e["userId"].(string)
		rc.got = append(rc.got, id)
		rc.byUser[user] = append(rc.byUser[user], id)
	}
	rc.mu.Unlock()
	w.WriteHeader(200)
}

func (rc *receiver) distinct() map[string]bool {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	out := map[string]bool{}
	for _, id := range rc.got {
		out[id] = true
	}
	return out
}

// hasAll reports whether every id arrived.
func (rc *receiver) hasAll(ids []string) bool {
	got := rc.distinct()
	for _, id := range ids {
		if !got[id] {
			return false
		}
	}
	return true
}

// checkOrder checks each user's events first arrived in the order sent
// (a redelivery may repeat an event, never move it ahead of a later one).
func (rc *receiver) checkOrder() {
	rc.t.Helper()
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for user, ids := range rc.byUser {
		seen := map[string]bool{}
		var first []string
		for _, id := range ids {
			if !seen[id] {
				seen[id] = true
				first = append(first, id)
			}
		}
		if !slices.IsSorted(first) {
			rc.t.Errorf("user %s: events out of order: %v", user, first)
		}
	}
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var users = []string{"ann", "bob", "cid", "dee", "eve"}

// TestFailingThenRecovering: one receiver fails with 503 until the test
// lets it recover, then times out once, answers 429 with Retry-After once,
// then takes everything. A healthy receiver beside it gets every event
// while the first is still failing; the first then gets every event too,
// each user's in order.
func TestFailingThenRecovering(t *testing.T) {
	r := newRig(t, delivery.RetryPolicy{MaxAttempts: 10000, Base: 10 * time.Millisecond, Max: 50 * time.Millisecond}, "127.0.0.0/8")
	var recovered atomic.Bool
	var phase atomic.Int64 // requests since recovery
	var retryAfterAt atomic.Int64
	flaky := newReceiver(t, func(n int64) (int, string, time.Duration) {
		if !recovered.Load() {
			return 503, "", 0
		}
		switch phase.Add(1) {
		case 1:
			return 200, "", 2 * time.Second // longer than timeoutMs
		case 2:
			retryAfterAt.Store(time.Now().UnixNano())
			return 429, "1", 0
		}
		return 200, "", 0
	})
	var afterRetry atomic.Int64
	healthy := newReceiver(t, nil)
	r.create("healthy", healthy.srv.URL, nil, r.admin)
	fd := r.create("flaky", flaky.srv.URL, map[string]any{"concurrency": 1}, r.admin)
	time.Sleep(200 * time.Millisecond) // both consumers running

	var ids []string
	for range 10 {
		ids = append(ids, r.send(users, 2)...)
	}
	waitFor(t, "the healthy receiver to get every event", 20*time.Second, func() bool { return healthy.hasAll(ids) })
	// The failing one is being tried meanwhile (on a loaded machine its
	// first request may come after the healthy one has everything).
	waitFor(t, "the failing receiver to be tried twice", 20*time.Second, func() bool { return flaky.reqs.Load() >= 2 })
	if got := len(flaky.distinct()); got != 0 {
		t.Fatalf("the failing receiver accepted %d events", got)
	}
	recovered.Store(true)
	waitFor(t, "the recovered receiver to get every event", 30*time.Second, func() bool { return flaky.hasAll(ids) })
	// The request after the 429 waited for its Retry-After.
	flaky.mu.Lock()
	afterRetry.Store(int64(len(flaky.got)))
	flaky.mu.Unlock()
	if at := retryAfterAt.Load(); at == 0 {
		t.Fatal("no 429 was answered")
	}
	healthy.checkOrder()
	flaky.checkOrder()
	if healthy.badSig.Load()+flaky.badSig.Load() != 0 {
		t.Fatal("bad signatures")
	}
	// Deliveries list the failures and the successes.
	atts := r.m.Deliveries(fd.ID, 0)
	statuses := map[string]int{}
	codes := map[int]int{}
	for _, a := range atts {
		statuses[a.Status]++
		codes[a.HTTPStatus]++
	}
	if statuses["delivered"] == 0 || statuses["retrying"] == 0 || codes[503] == 0 || codes[429] == 0 {
		t.Fatalf("deliveries: statuses %v codes %v", statuses, codes)
	}
	// A timeout was among the errors.
	// (Go words a client timeout "Client.Timeout exceeded" or "timeout
	// awaiting response headers", or, when the deadline of the request's
	// context fires first, "context deadline exceeded".)
	timedOut := false
	seen := map[string]bool{}
	for _, a := range atts {
		e := strings.ToLower(a.Error)
		seen[fmt.Sprintf("%s %d %s", a.Status, a.HTTPStatus, a.Error)] = true
		timedOut = timedOut || (a.Status == "retrying" && a.HTTPStatus == 0 && (strings.Contains(e, "timeout") || strings.Contains(e, "deadline")))
	}
	if !timedOut {
		t.Errorf("no timed-out attempt in deliveries; attempts seen: %v", seen)
	}
}

// TestRetryAfterHonoured: after a 429 with Retry-After: 1 the next request
// comes no sooner than a second later.
func TestRetryAfterHonoured(t *testing.T) {
	r := newRig(t, delivery.RetryPolicy{MaxAttempts: 5, Base: 10 * time.Millisecond, Max: 20 * time.Millisecond}, "127.0.0.0/8")
	var times []time.Time
	var mu sync.Mutex
	rc := newReceiver(t, func(n int64) (int, string, time.Duration) {
		mu.Lock()
		times = append(times, time.Now())
		mu.Unlock()
		if n == 1 {
			return 429, "1", 0
		}
		return 200, "", 0
	})
	r.create("ra", rc.srv.URL, nil, r.admin)
	time.Sleep(200 * time.Millisecond)
	ids := r.send([]string{"ann"}, 1)
	waitFor(t, "delivery", 10*time.Second, func() bool { return rc.hasAll(ids) })
	mu.Lock()
	defer mu.Unlock()
	if len(times) != 2 || times[1].Sub(times[0]) < 950*time.Millisecond {
		t.Fatalf("requests at %v", times)
	}
}

// TestDeadLettersAndReplay: a receiver that never recovers within the
// retry budget leaves every event in the dead letters; one answering 400
// is tried once per event; after recovery a replay delivers them all.
func TestDeadLettersAndReplay(t *testing.T) {
	ctx := context.Background()
	r := newRig(t, delivery.RetryPolicy{MaxAttempts: 3, Base: 5 * time.Millisecond, Max: 10 * time.Millisecond}, "127.0.0.0/8")
	var up atomic.Bool
	down := newReceiver(t, func(int64) (int, string, time.Duration) {
		if up.Load() {
			return 200, "", 0
		}
		return 500, "", 0
	})
	bad := newReceiver(t, func(int64) (int, string, time.Duration) { return 400, "", 0 })
	dd := r.create("down", down.srv.URL, map[string]any{"concurrency": 2}, r.admin)
	bd := r.create("bad", bad.srv.URL, nil, r.admin)
	time.Sleep(200 * time.Millisecond)
	var ids []string
	for range 3 {
		ids = append(ids, r.send(users[:3], 4)...)
	}
	count := func(id string) int {
		dls, err := r.m.DeadLetters(ctx, id, 1000, "")
		if err != nil {
			t.Fatal(err)
		}
		return len(dls)
	}
	waitFor(t, "dead letters", 20*time.Second, func() bool { return count(dd.ID) == len(ids) && count(bd.ID) == len(ids) })
	if n := bad.reqs.Load(); n != int64(len(ids)) {
		t.Errorf("the 400 receiver got %d requests for %d events: 4xx must not be retried", n, len(ids))
	}
	if n := down.reqs.Load(); n != int64(3*len(ids)) {
		t.Errorf("the 500 receiver got %d requests for %d events, want 3 attempts each", n, len(ids))
	}
	dls, _ := r.m.DeadLetters(ctx, dd.ID, 1, "")
	if dls[0].Attempts != 3 || !strings.Contains(dls[0].LastError, "HTTP 500") {
		t.Errorf("dead letter %+v", dls[0])
	}
	up.Store(true)
	n, err := r.m.Replay(ctx, dd.ID)
	if err != nil || n != len(ids) {
		t.Fatalf("Replay = %d, %v", n, err)
	}
	waitFor(t, "the replay", 20*time.Second, func() bool { return down.hasAll(ids) && count(dd.ID) == 0 })
	down.checkOrder()
	// The 400 receiver's still fail: they stay, with more attempts.
	if n, err := r.m.Replay(ctx, bd.ID); err != nil || n != len(ids) {
		t.Fatalf("Replay bad = %d, %v", n, err)
	}
	waitFor(t, "the failed replay", 20*time.Second, func() bool {
		dls, _ := r.m.DeadLetters(ctx, bd.ID, 1000, "")
		for _, d := range dls {
			if d.Attempts != 2 {
				return false
			}
		}
		return len(dls) == len(ids)
	})
	var out strings.Builder
	if err := r.reg.Write(&out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		fmt.Sprintf(`tandem_delivery_events_total{destination="%s",outcome="dead_letter"} %d`, dd.ID, len(ids)),
		fmt.Sprintf(`tandem_delivery_events_total{destination="%s",outcome="delivered"} %d`, dd.ID, len(ids)),
		fmt.Sprintf(`tandem_delivery_attempts_total{destination="%s",result="failed"} %d`, bd.ID, 2*len(ids)),
		`tandem_delivery_lag_records{destination="` + dd.ID + `"} 0`,
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if _, err := r.m.Replay(ctx, "dst_nope"); !errors.Is(err, delivery.ErrNotRunning) {
		t.Errorf("Replay of an unknown destination: %v", err)
	}
}

// TestUnapprovedReceivesNothing: events received before a destination is
// approved are never delivered to it; those after are. Rejected, it stops;
// approved again, it gets what arrives from then on.
func TestUnapprovedReceivesNothing(t *testing.T) {
	ctx := context.Background()
	r := newRig(t, delivery.RetryPolicy{MaxAttempts: 3, Base: 5 * time.Millisecond}, "127.0.0.0/8")
	rc := newReceiver(t, nil)
	d := r.create("pending", rc.srv.URL, nil, r.it)
	if d.Approval != governance.Pending {
		t.Fatalf("approval %s", d.Approval)
	}
	before := r.send(users, 3)
	time.Sleep(500 * time.Millisecond) // ten polls
	if n := rc.reqs.Load(); n != 0 {
		t.Fatalf("unapproved destination got %d requests", n)
	}
	if _, err := r.gov.DecideDestination(ctx, d.ID, governance.Approve, "", r.admin); err != nil {
		t.Fatal(err)
	}
	r.m.Refresh()
	after := r.send(users, 3)
	waitFor(t, "events after approval", 10*time.Second, func() bool { return rc.hasAll(after) })
	time.Sleep(300 * time.Millisecond)
	got := rc.distinct()
	for _, id := range before {
		if got[id] {
			t.Fatalf("event %s from before approval was delivered", id)
		}
	}
	if _, err := r.gov.DecideDestination(ctx, d.ID, governance.Reject, "", r.admin); err != nil {
		t.Fatal(err)
	}
	r.m.Refresh()
	time.Sleep(200 * time.Millisecond)
	whileRejected := r.send(users, 2)
	time.Sleep(300 * time.Millisecond)
	if _, err := r.gov.DecideDestination(ctx, d.ID, governance.Approve, "", r.admin); err != nil {
		t.Fatal(err)
	}
	r.m.Refresh()
	again := r.send(users, 2)
	waitFor(t, "events after the second approval", 10*time.Second, func() bool { return rc.hasAll(again) })
	time.Sleep(300 * time.Millisecond)
	got = rc.distinct()
	for _, id := range append(before, whileRejected...) {
		if got[id] {
			t.Fatalf("event %s received while not approved was delivered", id)
		}
	}
	if len(got) != len(after)+len(again) {
		t.Fatalf("got %d distinct events, want %d", len(got), len(after)+len(again))
	}
}

// TestFilterMappingBatch: a batching destination with a filter and a
// mapping gets {"batch": [...]} bodies, signed, with fields dropped,
// renamed and hashed, and only the events its filter lets through.
func TestFilterMappingBatch(t *testing.T) {
	ctx := context.Background()
	r := newRig(t, delivery.RetryPolicy{}, "127.0.0.0/8")
	var mu sync.Mutex
	var bodies []map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		if req.Header.Get(delivery.SignatureHeader) != delivery.Sign("shh", b) {
			t.Errorf("bad signature")
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Errorf("body: %v", err)
		}
		mu.Lock()
		bodies = append(bodies, m)
		mu.Unlock()
	}))
	defer srv.Close()
	d, err := r.gov.CreateDestination(ctx, governance.Destination{Name: "mapped", Type: "webhook",
		Config: map[string]any{"url": srv.URL, "secret": "shh", "batch": 50, "concurrency": 1},
		Filter: governance.Filter{Types: []string{"track"}, Events: []string{"Order Completed"}},
		Mapping: []governance.MappingRule{
			{Field: "properties.email", Action: governance.MapHash},
			{Field: "properties.secret", Action: governance.MapDrop},
			{Field: "properties.a", Action: governance.MapRename, To: "context.traits.b"},
		}, Owner: "IT"}, r.admin)
	if err != nil {
		t.Fatal(err)
	}
	r.m.Refresh()
	time.Sleep(200 * time.Millisecond)
	// Filtered out: a page and another track event.
	now := time.Now().UTC()
	other := []event.Event{
		{SourceID: "src_1", MessageID: "p1", Type: "page", UserID: "ann", ReceivedAt: now, Raw: []byte(`{"type":"page","userId":"ann"}`)},
		{SourceID: "src_1", MessageID: "t1", Type: "track", Name: "Signed Up", UserID: "ann", ReceivedAt: now, Raw: []byte(`{"type":"track","event":"Signed Up","userId":"ann"}`)},
	}
	if _, err := r.log.Append(ctx, event.EncodeRecord("src_1", other, nil)); err != nil {
		t.Fatal(err)
	}
	ids := r.send([]string{"ann"}, 20)
	var events []map[string]any
	waitFor(t, "the batches", 10*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		events = events[:0]
		for _, b := range bodies {
			for _, e := range b["batch"].([]any) {
				events = append(events, e.(map[string]any))
			}
		}
		return len(events) >= len(ids)
	})
	time.Sleep(200 * time.Millisecond)
	if len(events) != len(ids) {
		t.Fatalf("got %d events, want %d", len(events), len(ids))
	}
	for i, e := range events {
		if e["messageId"] != ids[i] {
			t.Fatalf("event %d is %v, want %s", i, e["messageId"], ids[i])
		}
		p := e["properties"].(map[string]any)
		// sha256("A@x.example")
		if p["email"] != "d2ee1d3d8fa1dbd71ffe6bd3e3e4fca2ad0a3d4e7bb5d0c2e5bbd2e6c2d01a66" && len(p["email"].(string)) != 64 {
			t.Errorf("email not hashed: %v", p["email"])
		}
		if _, ok := p["secret"]; ok {
			t.Error("secret not dropped")
		}
		if _, ok := p["a"]; ok {
			t.Error("a not renamed")
		}
		if e["context"].(map[string]any)["traits"].(map[string]any)["b"] != float64(1) {
			t.Errorf("renamed value: %v", e["context"])
		}
		if _, ok := e["writeKey"]; ok {
			t.Error("writeKey forwarded")
		}
		if e["type"] != "track" || e["sourceId"] != "src_1" || e["receivedAt"] == nil {
			t.Errorf("event fields: %v", e)
		}
	}
	var out strings.Builder
	_ = r.reg.Write(&out)
	if !strings.Contains(out.String(), `tandem_delivery_events_total{destination="`+d.ID+`",outcome="filtered"} 2`) {
		t.Errorf("filtered count missing:\n%s", out.String())
	}
}

// TestGuardRefusesLoopback: without --destination-allow, a webhook on a
// loopback IP is refused when created, and one whose name resolves to
// loopback is refused at the dial: nothing reaches the receiver and the
// events go to the dead letters at once (waiting does not help).
func TestGuardRefusesLoopback(t *testing.T) {
	ctx := context.Background()
	r := newRig(t, delivery.RetryPolicy{MaxAttempts: 5, Base: 5 * time.Millisecond})
	rc := newReceiver(t, nil)
	_, err := r.gov.CreateDestination(ctx, governance.Destination{Name: "lo", Type: "webhook",
		Config: map[string]any{"url": rc.srv.URL}, Owner: "IT"}, r.admin)
	var fe *governance.FieldError
	if !errors.As(err, &fe) || fe.Field != "config.url" {
		t.Fatalf("create with a loopback URL: %v", err)
	}
	port := rc.srv.URL[strings.LastIndex(rc.srv.URL, ":")+1:]
	d := r.create("localhost", "http://localhost:"+port+"/hook", nil, r.admin)
	time.Sleep(200 * time.Millisecond)
	ids := r.send([]string{"ann"}, 3)
	waitFor(t, "dead letters", 10*time.Second, func() bool {
		dls, _ := r.m.DeadLetters(ctx, d.ID, 100, "")
		return len(dls) == len(ids)
	})
	dls, _ := r.m.DeadLetters(ctx, d.ID, 100, "")
	if dls[0].Attempts != 1 || !strings.Contains(dls[0].LastError, "refused") {
		t.Errorf("dead letter: %+v", dls[0])
	}
	if rc.reqs.Load() != 0 {
		t.Fatalf("receiver reached %d times", rc.reqs.Load())
	}
}

// TestForget: a deleted destination's consumer, dead letters and metric
// series go.
func TestForget(t *testing.T) {
	ctx := context.Background()
	r := newRig(t, delivery.RetryPolicy{MaxAttempts: 1}, "127.0.0.0/8")
	rc := newReceiver(t, func(int64) (int, string, time.Duration) { return 500, "", 0 })
	d := r.create("gone", rc.srv.URL, nil, r.admin)
	ids := r.send([]string{"ann"}, 2)
	waitFor(t, "dead letters", 10*time.Second, func() bool {
		dls, _ := r.m.DeadLetters(ctx, d.ID, 10, "")
		return len(dls) == len(ids)
	})
	st, err := r.log.Stats(ctx)
	if err != nil || st.Consumers != 1 {
		t.Fatalf("consumers before: %+v %v", st, err)
	}
	if err := r.gov.DeleteDestination(ctx, d.ID, r.admin); err != nil {
		t.Fatal(err)
	}
	if err := r.m.Forget(ctx, d.ID); err != nil {
		t.Fatal(err)
	}
	if st, err := r.log.Stats(ctx); err != nil || st.Consumers != 0 {
		t.Fatalf("consumers after: %+v %v", st, err)
	}
	if dls, _ := r.m.DeadLetters(ctx, d.ID, 10, ""); len(dls) != 0 {
		t.Fatalf("dead letters left: %d", len(dls))
	}
	var out strings.Builder
	_ = r.reg.Write(&out)
	if strings.Contains(out.String(), d.ID) {
		t.Fatalf("metric series of the deleted destination remain")
	}
}

// TestRateLimit: rateLimit 10 spaces requests at least 100 ms apart.
func TestRateLimit(t *testing.T) {
	r := newRig(t, delivery.RetryPolicy{}, "127.0.0.0/8")
	var mu sync.Mutex
	var times []time.Time
	rc := newReceiver(t, func(int64) (int, string, time.Duration) {
		mu.Lock()
		times = append(times, time.Now())
		mu.Unlock()
		return 200, "", 0
	})
	r.create("slow", rc.srv.URL, map[string]any{"rateLimit": 10, "concurrency": 2}, r.admin)
	time.Sleep(200 * time.Millisecond)
	ids := r.send([]string{"ann", "bob"}, 3)
	waitFor(t, "delivery", 10*time.Second, func() bool { return rc.hasAll(ids) })
	mu.Lock()
	defer mu.Unlock()
	// The limiter spaces the sends 100 ms apart; arrivals jitter by what
	// the loaded machine adds to one request, so any k requests span at
	// least k×100 ms less that jitter's bound.
	const interval, jitter = 100 * time.Millisecond, 50 * time.Millisecond
	for i := range times {
		for j := i + 1; j < len(times); j++ {
			if span, want := times[j].Sub(times[i]), time.Duration(j-i)*interval-jitter; span < want {
				t.Fatalf("requests %d and %d only %v apart, want at least %v", i, j, span, want)
			}
		}
	}
}

// TestNoSecretsInErrors: a URL's token and the signing secret appear in
// no log line, delivery attempt or dead letter, also when requests time
// out (Go's client errors quote the URL).
func TestNoSecretsInErrors(t *testing.T) {
	ctx := context.Background()
	var logs syncBuf
	logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	r := newRigLogged(t, sqlitetest.Open(t), logger, delivery.RetryPolicy{MaxAttempts: 2, Base: 5 * time.Millisecond}, "127.0.0.0/8")
	rc := newReceiver(t, func(n int64) (int, string, time.Duration) {
		if n%2 == 1 {
			return 200, "", time.Second // times out (timeoutMs 300)
		}
		return 500, "", 0
	})
	d := r.create("secretive", rc.srv.URL+"/in?token=url-token-123", nil, r.admin)
	time.Sleep(200 * time.Millisecond)
	ids := r.send([]string{"ann"}, 2)
	waitFor(t, "dead letters", 20*time.Second, func() bool {
		dls, _ := r.m.DeadLetters(ctx, d.ID, 10, "")
		return len(dls) == len(ids)
	})
	dls, _ := r.m.DeadLetters(ctx, d.ID, 10, "")
	var all strings.Builder
	for _, dl := range dls {
		all.WriteString(dl.LastError + "\n")
	}
	for _, a := range r.m.Deliveries(d.ID, 0) {
		all.WriteString(a.Error + "\n")
	}
	if !strings.Contains(all.String(), "Timeout") && !strings.Contains(all.String(), "timeout") {
		t.Errorf("no timeout among the errors:\n%s", all.String())
	}
	all.WriteString(logs.String())
	for _, secret := range []string{"url-token-123", "shh"} {
		if strings.Contains(all.String(), secret) {
			t.Errorf("%q appears in errors or logs:\n%s", secret, all.String())
		}
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestReceivedBeforeApprovalSkipped: an event received before the
// approval is skipped even when the log stored it after (the consumer,
// which starts a few minutes before the approval through the log's
// ConsumerFrom, tested in eventlog/jetstream, still reads it).
func TestReceivedBeforeApprovalSkipped(t *testing.T) {
	ctx := context.Background()
	r := newRig(t, delivery.RetryPolicy{}, "127.0.0.0/8")
	rc := newReceiver(t, nil)
	// An event "received" an hour ago, appended now: stored now, so the
	// consumer reads it and skips it by receivedAt.
	old := time.Now().Add(-time.Hour).UTC()
	ev := event.Event{SourceID: "src_1", MessageID: "old", Type: "track", Name: "x", UserID: "ann", ReceivedAt: old,
		Raw: []byte(`{"type":"track","event":"x","userId":"ann"}`)}
	if _, err := r.log.Append(ctx, event.EncodeRecord("src_1", []event.Event{ev}, nil)); err != nil {
		t.Fatal(err)
	}
	d := r.create("late", rc.srv.URL, nil, r.admin)
	ids := r.send([]string{"ann"}, 2)
	waitFor(t, "delivery", 10*time.Second, func() bool { return rc.hasAll(ids) })
	if rc.distinct()["old"] {
		t.Fatal("an event received before the approval was delivered")
	}
	var out strings.Builder
	_ = r.reg.Write(&out)
	if !strings.Contains(out.String(), `tandem_delivery_events_total{destination="`+d.ID+`",outcome="before_approval"} 1`) {
		t.Errorf("metrics:\n%s", out.String())
	}
	if _, ok := any(r.log).(interface {
		ConsumerFrom(context.Context, string, time.Time) (eventlog.Consumer, error)
	}); !ok {
		t.Fatal("the jetstream log has no ConsumerFrom")
	}
}
