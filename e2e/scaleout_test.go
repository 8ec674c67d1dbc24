package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"

	"tandem/testserver"
)

// scaleOut is the deployment the scale-out test runs: a three-node NATS
// cluster for the event log, one PostgreSQL database for the state, one
// ClickHouse database for the events, and two tandem nodes (real binaries)
// on them, both sending with the write key of one shared source.
type scaleOut struct {
	nats  *testserver.NATSCluster
	pg    *testserver.PostgresServer
	b     backends
	dirs  []string
	nodes []*server
	extra []string // flags every node gets
}

// startScaleOut starts the servers and n tandem nodes on them, each with
// the extra flags.
func startScaleOut(t *testing.T, n int, extra ...string) *scaleOut {
	t.Helper()
	started := time.Now()
	nc := testserver.StartNATSCluster(t, 3)
	pg := testserver.PostgresInstance(t)
	so := &scaleOut{nats: nc, pg: pg, extra: extra,
		b: backends{Log: nc.URL(), State: pg.NewDatabase(t), Events: testserver.ClickHouse(t)}}
	for range n {
		so.dirs = append(so.dirs, t.TempDir())
	}

	// The first node bootstraps the shared state store (the admin of
	// TANDEM_ADMIN_TOKEN and its own "default" source, whose key only
	// its data dir has); a source made through the API serves both.
	a := startClusterNode(t, so.dirs[0], so.b, extra...)
	status, body := a.admin("POST", "/api/v1/sources", map[string]any{"name": "scale-out", "kind": "server",
		"owner": "it", "purpose": "scale-out test load"})
	var src struct {
		WriteKey string `json:"writeKey"`
		Approval string `json:"approval"`
	}
	if err := json.Unmarshal(body, &src); status != 201 && status != 200 || err != nil || src.WriteKey == "" {
		t.Fatalf("POST /api/v1/sources: %d %v %s", status, err, body)
	}
	if src.Approval != "approved" {
		t.Fatalf("a source an admin creates is %q, want approved", src.Approval)
	}
	so.b.Key = src.WriteKey
	a.writeKey = src.WriteKey
	so.nodes = []*server{a}
	for _, dir := range so.dirs[1:] {
		so.nodes = append(so.nodes, startClusterNode(t, dir, so.b, extra...))
	}
	t.Logf("set-up: 3 NATS nodes, PostgreSQL, ClickHouse and %d tandem nodes in %s", n, time.Since(started).Round(time.Millisecond))
	return so
}

// restart starts node i again on its data dir, after a kill.
func (so *scaleOut) restart(t *testing.T, i int) {
	t.Helper()
	so.nodes[i] = startClusterNode(t, so.dirs[i], so.b, so.extra...)
}

// TestScaleOut runs tandem as it is scaled out: three NATS servers,
// PostgreSQL, ClickHouse and two tandem nodes, with several clients
// sending to both nodes and retrying as Segment's SDKs do. It takes the
// deployment through the failures the design must survive, one after the
// other on the same deployment:
//
//  1. the NATS server leading the event log's stream is killed with
//     SIGKILL under load (and later restarted): collection keeps
//     answering;
//  2. a tandem node is killed with SIGKILL while it holds records it
//     fetched and has not acknowledged: the other node processes them
//     after the log's ack wait;
//  3. PostgreSQL is stopped under load: both nodes turn not ready, and
//     ready again by themselves once it is back;
//  4. both nodes take, at the same moments, events that merge the same
//     identifiers: every identifier ends in one profile per group, the
//     same whichever node is asked.
//
// At the end every acknowledged event is in the one ClickHouse store
// exactly once, read through the API and counted in the table itself, and
// nothing went to the quarantine.
func TestScaleOut(t *testing.T) {
	testStart := time.Now()
	so := startScaleOut(t, 2)
	nc := so.nats
	var loads []*retryLoad

	// 1. Kill the stream leader under load.
	phase := time.Now()
	rl := startRetryLoad(t, "scale1", so.nodes[0], so.nodes[1])
	loads = append(loads, rl)
	rl.waitAckedMore(t, 20, 20*time.Second)
	leader := streamInfo(t, nc.URL()).Cluster.Leader
	victim := nc.NodeIndex(leader)
	if victim < 0 {
		t.Fatalf("stream leader %q is not a node of the cluster", leader)
	}
	for i := 0; rl.st.inflight.Load() == 0 && i < 1000; i++ {
		time.Sleep(time.Millisecond)
	}
	inflight := rl.st.inflight.Load()
	nc.Kill(victim)
	killed := time.Now()
	t.Logf("1. killed NATS node %s (the stream leader) with %d requests in flight, %d acknowledged so far",
		leader, inflight, rl.acked())
	rl.waitAckedMore(t, 30, 30*time.Second)
	t.Logf("1. 30 more requests acknowledged %s after the kill; new stream leader %s",
		time.Since(killed).Round(time.Millisecond), streamInfo(t, nc.URL()).Cluster.Leader)
	// Back to three replicas for what follows.
	nc.Restart(victim)
	rl.waitAckedMore(t, 10, 20*time.Second)
	t.Logf("1. done in %s", time.Since(phase).Round(time.Millisecond))

	// 2. Kill a tandem node that holds unacknowledged records. Both
	// must have done part of the work first.
	phase = time.Now()
	for i, s := range so.nodes {
		n, err := s.metric("tandem_pipeline_records_total")
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("2. node %d has processed %v log records", i, n)
		if n == 0 {
			t.Errorf("node %d's pipeline has done nothing: the work is not shared", i)
		}
	}
	killHolding(t, nc.URL(), so.nodes[0], rl)
	rl.finish()
	so.restart(t, 0)
	t.Logf("2. done in %s (node 0 restarted)", time.Since(phase).Round(time.Millisecond))

	// 3. Stop PostgreSQL under load, then start it again.
	phase = time.Now()
	rl = startRetryLoad(t, "scale3", so.nodes[0], so.nodes[1])
	loads = append(loads, rl)
	rl.waitAckedMore(t, 20, 20*time.Second)
	if err := so.pg.Stop(); err != nil {
		t.Fatalf("stop PostgreSQL: %v", err)
	}
	stopped := time.Now()
	for i, s := range so.nodes {
		d := waitReadyz(t, s, 503, 15*time.Second)
		t.Logf("3. node %d not ready %s after PostgreSQL stopped", i, d.Round(time.Millisecond))
	}
	time.Sleep(3 * time.Second) // let the pipelines meet the outage
	if err := so.pg.Start(); err != nil {
		t.Fatalf("start PostgreSQL: %v", err)
	}
	t.Logf("3. PostgreSQL was down for %s", time.Since(stopped).Round(time.Millisecond))
	for i, s := range so.nodes {
		d := waitReadyz(t, s, 200, 30*time.Second)
		t.Logf("3. node %d ready again %s after PostgreSQL started", i, d.Round(time.Millisecond))
	}
	rl.waitAckedMore(t, 20, 30*time.Second)
	rl.finish()
	for i, s := range so.nodes {
		t.Logf("3. node %d: %d pipeline batches failed and were retried", i, strings.Count(s.stderr.String(), "pipeline batch failed"))
	}
	t.Logf("3. done in %s", time.Since(phase).Round(time.Millisecond))

	// 4. Concurrent identity merges.
	phase = time.Now()
	var before [2]float64
	for i, s := range so.nodes {
		before[i], _ = s.metric("tandem_pipeline_records_total")
	}
	groups := sendMergeGroups(t, so.nodes, "grp", 60)
	waitConsumerDone(t, nc.URL(), clusterAckWait+30*time.Second)
	for i, s := range so.nodes {
		n, _ := s.metric("tandem_pipeline_records_total")
		t.Logf("4. node %d's pipeline processed %v of the merge events' log records", i, n-before[i])
	}
	checkMergeGroups(t, so.nodes, groups)
	t.Logf("4. done in %s", time.Since(phase).Round(time.Millisecond))

	// Every acknowledged event exactly once in the shared store.
	phase = time.Now()
	for i, rl := range loads {
		t.Logf("load %d: %s", i+1, rl.summary())
		rl.check(t)
	}
	st := mergedStats(loads...)
	waitConsumerDone(t, nc.URL(), clusterAckWait+30*time.Second)
	checkExactlyOnce(t, st, so.b.Events, so.nodes[1], "scale")
	t.Logf("verified in %s; whole test %s", time.Since(phase).Round(time.Millisecond), time.Since(testStart).Round(time.Millisecond))
}

// waitReadyz polls GET /readyz until it answers want, and returns how long
// that took.
func waitReadyz(t *testing.T, s *server, want int, d time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	c := &http.Client{Timeout: 3 * time.Second}
	last := "no answer"
	for time.Since(start) < d {
		resp, err := c.Get(s.url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == want {
				if want == 503 && resp.Header.Get("Retry-After") == "" {
					t.Errorf("/readyz 503 without Retry-After")
				}
				return time.Since(start)
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("/readyz of %s not %d within %s (last: %s)", s.url, want, d, last)
	return 0
}

// waitConsumerDone waits until the pipeline's durable consumer has nothing
// pending and nothing unacknowledged: every node's pipeline has finished
// every record in the log.
func waitConsumerDone(t *testing.T, natsURL string, d time.Duration) {
	t.Helper()
	js, obs := jsClient(t, natsURL)
	defer obs.Close()
	start := time.Now()
	for {
		ci := pipelineConsumer(t, js)
		if ci.NumPending == 0 && ci.NumAckPending == 0 {
			return
		}
		if time.Since(start) > d {
			t.Fatalf("the pipeline did not finish the log within %s: %d records pending, %d unacknowledged", d, ci.NumPending, ci.NumAckPending)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// mergedStats joins what several load runs sent and had acknowledged.
func mergedStats(loads ...*retryLoad) *loadStats {
	all := newLoadStats()
	for _, rl := range loads {
		st := rl.st
		st.mu.Lock()
		for id := range st.sent {
			all.sent[id] = true
		}
		for id := range st.acked {
			all.acked[id] = true
		}
		if all.firstErr == "" {
			all.firstErr = st.firstErr
		}
		st.mu.Unlock()
	}
	return all
}

// checkExactlyOnce checks the one shared event store twice over: through
// the events API of node s (what users read) and in ClickHouse's tables
// themselves (what is stored). Of the events whose messageId starts with
// prefix, every acknowledged one must be there exactly once, and nothing
// may be there that was never sent; nothing may be in the quarantine.
func checkExactlyOnce(t *testing.T, st *loadStats, chURL string, s *server, prefix string) {
	t.Helper()
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.firstErr != "" {
		t.Errorf("load: %s", st.firstErr)
	}
	if len(st.acked) == 0 {
		t.Fatal("no event was acknowledged")
	}
	started := time.Now()
	api := map[string]int{}
	for _, e := range s.events() {
		if id := str(e, "messageId"); strings.HasPrefix(id, prefix) {
			api[id]++
		}
	}
	t.Logf("events API: %d events read in %s", len(api), time.Since(started).Round(time.Millisecond))
	checkCounts(t, "events API", st, api)

	raw := clickHouseCounts(t, chURL, prefix)
	checkCounts(t, "ClickHouse events table", st, raw)

	status, body := s.admin("GET", "/api/v1/quarantine?limit=10", nil)
	var q struct {
		Items []json.RawMessage `json:"items"`
	}
	if err := json.Unmarshal(body, &q); status != 200 || err != nil {
		t.Errorf("GET /api/v1/quarantine: %d %v %.200s", status, err, body)
	} else if len(q.Items) > 0 {
		t.Errorf("events reached the quarantine (%d+ entries), first: %.400s", len(q.Items), q.Items[0])
	}
}

// checkCounts compares the stored copies of each messageId (counts) with
// what was sent and acknowledged: none of the acknowledged missing, none
// stored twice, none stored that was never sent. Events sent without an
// answer may be stored or not, but once at most.
func checkCounts(t testing.TB, where string, st *loadStats, counts map[string]int) {
	t.Helper()
	var missing, dups, unsent []string
	total := 0
	for id, n := range counts {
		total += n
		if n > 1 {
			dups = append(dups, fmt.Sprintf("%s x%d", id, n))
		}
		if !st.sent[id] {
			unsent = append(unsent, id)
		}
	}
	for id := range st.acked {
		if counts[id] == 0 {
			missing = append(missing, id)
		}
	}
	sort.Strings(missing)
	sort.Strings(dups)
	sort.Strings(unsent)
	t.Logf("%s: %d acknowledged events, %d stored rows, %d distinct messageIds (%d sent without an answer and stored)",
		where, len(st.acked), total, len(counts), len(counts)-len(st.acked)+len(missing))
	if len(missing) > 0 {
		t.Errorf("LOST: %s lacks %d acknowledged events, e.g. %v", where, len(missing), head(missing, 10))
	}
	if len(dups) > 0 {
		t.Errorf("DUPLICATED: %s holds %d messageIds more than once, e.g. %v", where, len(dups), head(dups, 10))
	}
	if len(unsent) > 0 {
		t.Errorf("%s holds %d messageIds never sent, e.g. %v", where, len(unsent), head(unsent, 10))
	}
}

// clickHouseCounts counts the rows of each messageId starting with prefix
// in the events table of the ClickHouse database at chURL, bypassing
// tandem's reads (which show the first copy only, should there be more).
func clickHouseCounts(t *testing.T, chURL, prefix string) map[string]int {
	t.Helper()
	opts, err := ch.ParseDSN(chURL)
	if err != nil {
		t.Fatalf("ClickHouse URL: %v", err)
	}
	conn, err := ch.Open(opts)
	if err != nil {
		t.Fatalf("ClickHouse: %v", err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	// Only letters, digits and '-' in prefix: nothing to escape.
	if strings.Trim(prefix, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" {
		t.Fatalf("prefix %q needs quoting", prefix)
	}
	rows, err := conn.Query(ctx, "SELECT message_id, count() FROM events WHERE startsWith(message_id, '"+prefix+"') GROUP BY message_id")
	if err != nil {
		t.Fatalf("ClickHouse query: %v", err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var id string
		var n uint64
		if err := rows.Scan(&id, &n); err != nil {
			t.Fatalf("ClickHouse scan: %v", err)
		}
		out[id] = int(n)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("ClickHouse rows: %v", err)
	}
	return out
}

// mergeGroup is one person seen through four identifiers, which the
// events of sendMergeGroups link only together: two anonymous devices, a
// user id and an e-mail address.
type mergeGroup struct {
	idents []string // "type:value", as lookups take them
	msgs   []string // the messageIds of the group's events
}

// sendMergeGroups sends, for n groups, events that merge each group's
// identifiers, spread over both nodes so that both nodes' pipelines
// resolve the same components at the same moments: for each group, at
// once, node 0 gets identify{anonymousId a1, userId u} and a track from a
// second device a2 carrying the e-mail, node 1 gets a track from a1 with
// the e-mail and identify{userId u, traits.email}. Any one of the four
// joins the group only with the others; together they make one profile.
func sendMergeGroups(t *testing.T, nodes []*server, prefix string, n int) []mergeGroup {
	t.Helper()
	base := time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)
	groups := make([]mergeGroup, n)
	type req struct {
		node  int
		event map[string]any
	}
	var reqs [][]req // per group
	for g := range groups {
		a1, a2 := fmt.Sprintf("%s-%d-dev1", prefix, g), fmt.Sprintf("%s-%d-dev2", prefix, g)
		u, email := fmt.Sprintf("%s-%d-user", prefix, g), fmt.Sprintf("%s-%d@example.com", prefix, g)
		groups[g].idents = []string{"anonymous_id:" + a1, "anonymous_id:" + a2, "user_id:" + u, "email:" + email}
		at := func(k int) string {
			return base.Add(time.Duration(g)*time.Minute + time.Duration(k)*time.Second).Format(time.RFC3339)
		}
		msg := func(k int) string {
			id := fmt.Sprintf("%s-%d-m%d", prefix, g, k)
			groups[g].msgs = append(groups[g].msgs, id)
			return id
		}
		reqs = append(reqs, []req{
			{0, map[string]any{"type": "identify", "anonymousId": a1, "userId": u, "messageId": msg(0), "timestamp": at(0)}},
			{1, map[string]any{"type": "track", "event": "Viewed Plan", "anonymousId": a1, "messageId": msg(1), "timestamp": at(1),
				"context": map[string]any{"traits": map[string]any{"email": email}}}},
			{1, map[string]any{"type": "identify", "userId": u, "messageId": msg(2), "timestamp": at(2),
				"traits": map[string]any{"email": email, "plan": "pro"}}},
			{0, map[string]any{"type": "track", "event": "Opened App", "anonymousId": a2, "messageId": msg(3), "timestamp": at(3),
				"context": map[string]any{"traits": map[string]any{"email": email}}}},
		})
	}
	// A few waves: in each, every request of a slice of groups leaves at
	// the same moment (one goroutine per event, released together), so
	// the records of one group land in both nodes' logs side by side and
	// are fetched by both pipelines.
	hc := &http.Client{Timeout: 30 * time.Second}
	const waves = 4
	var mu sync.Mutex
	var failures []string
	for w := range waves {
		var wg sync.WaitGroup
		release := make(chan struct{})
		for g := w; g < n; g += waves {
			for _, r := range reqs[g] {
				wg.Add(1)
				go func() {
					defer wg.Done()
					body, _ := json.Marshal(map[string]any{"batch": []any{r.event}})
					s := nodes[r.node]
					<-release
					status, reply, err := postBatch(context.Background(), hc, s.url, s.writeKey, body)
					if err != nil || status != 200 || strings.Contains(string(reply), "quarantined") {
						mu.Lock()
						failures = append(failures, fmt.Sprintf("%s: %d %v %.200s", r.event["messageId"], status, err, reply))
						mu.Unlock()
					}
				}()
			}
		}
		close(release)
		wg.Wait()
		time.Sleep(300 * time.Millisecond)
	}
	if len(failures) > 0 {
		t.Fatalf("%d identity events not acknowledged, e.g. %v", len(failures), head(failures, 5))
	}
	return groups
}

// checkMergeGroups checks, through both nodes, that every identifier of a
// group looks up the same profile, that this profile holds exactly the
// group's identifiers and events, that the groups' profiles are distinct,
// and that each explains itself.
func checkMergeGroups(t *testing.T, nodes []*server, groups []mergeGroup) {
	t.Helper()
	seen := map[string]int{} // profile id -> group
	bad := 0
	for g, grp := range groups {
		ids := map[string]bool{}
		for _, ident := range grp.idents {
			for n, s := range nodes {
				status, body := s.admin("GET", "/api/v1/profiles/lookup?identifier="+url.QueryEscape(ident), nil)
				var p struct {
					ID string `json:"id"`
				}
				if err := json.Unmarshal(body, &p); status != 200 || err != nil || p.ID == "" {
					t.Errorf("group %d: node %d: lookup %s: %d %s", g, n, ident, status, body)
					continue
				}
				ids[p.ID] = true
			}
		}
		if len(ids) != 1 {
			bad++
			if bad <= 5 {
				t.Errorf("SPLIT: group %d's identifiers %v look up %d profiles %v", g, grp.idents, len(ids), ids)
			}
			continue
		}
		var id string
		for id = range ids {
		}
		if other, ok := seen[id]; ok {
			t.Errorf("groups %d and %d share profile %s", other, g, id)
		}
		seen[id] = g

		s := nodes[g%2]
		status, body := s.admin("GET", "/api/v1/profiles/"+id, nil)
		var p struct {
			ID          string `json:"id"`
			Identifiers []struct {
				Type, Value string
			} `json:"identifiers"`
		}
		if err := json.Unmarshal(body, &p); status != 200 || err != nil {
			t.Errorf("group %d: GET profile %s: %d %s", g, id, status, body)
			continue
		}
		var got []string
		for _, i := range p.Identifiers {
			got = append(got, i.Type+":"+i.Value)
		}
		slices.Sort(got)
		want := slices.Sorted(slices.Values(grp.idents))
		if !slices.Equal(got, want) {
			t.Errorf("group %d: profile %s has identifiers %v, want %v", g, id, got, want)
		}
		status, body = s.admin("GET", "/api/v1/profiles/"+id+"/events?limit=100", nil)
		var evs struct {
			Items []map[string]any `json:"items"`
		}
		if err := json.Unmarshal(body, &evs); status != 200 || err != nil {
			t.Errorf("group %d: profile events: %d %s", g, status, body)
		} else {
			var msgs []string
			for _, e := range evs.Items {
				msgs = append(msgs, str(e, "messageId"))
			}
			slices.Sort(msgs)
			if !slices.Equal(msgs, grp.msgs) {
				t.Errorf("group %d: profile %s's timeline %v, want %v", g, id, msgs, grp.msgs)
			}
		}
		status, body = nodes[1-g%2].admin("GET", "/api/v1/profiles/"+id+"/explain", nil)
		var x struct {
			Steps []struct {
				Kind string `json:"kind"`
			} `json:"steps"`
		}
		if err := json.Unmarshal(body, &x); status != 200 || err != nil || len(x.Steps) == 0 {
			t.Errorf("group %d: explain %s: %d %.300s", g, id, status, body)
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d groups split over several profiles", bad, len(groups))
	}
	t.Logf("4. %d groups, each one profile (same answer from both nodes), %d distinct profiles", len(groups), len(seen))
}

// errRecorder is a testing.TB that records errors instead of failing.
type errRecorder struct {
	testing.TB
	errs []string
}

func (r *errRecorder) Helper()                   {}
func (r *errRecorder) Logf(string, ...any)       {}
func (r *errRecorder) Errorf(f string, a ...any) { r.errs = append(r.errs, fmt.Sprintf(f, a...)) }

// TestScaleOutCheckCatchesLossAndDuplicates makes sure the exactly-once
// check of TestScaleOut can fail: it must see an acknowledged event that
// is missing, one stored twice and one never sent, and accept an event
// sent without an answer being stored once or not at all.
func TestScaleOutCheckCatchesLossAndDuplicates(t *testing.T) {
	st := newLoadStats()
	for _, id := range []string{"a", "b", "c", "d"} {
		st.sent[id] = true
		st.acked[id] = true
	}
	st.sent["unanswered"] = true
	st.sent["unanswered2"] = true
	for _, c := range []struct {
		name   string
		counts map[string]int
		want   []string // prefixes of the errors, in order
	}{
		{"exact", map[string]int{"a": 1, "b": 1, "c": 1, "d": 1, "unanswered": 1}, nil},
		{"lost", map[string]int{"a": 1, "b": 1, "d": 1}, []string{"LOST"}},
		{"duplicated", map[string]int{"a": 1, "b": 2, "c": 1, "d": 1}, []string{"DUPLICATED"}},
		{"unanswered twice", map[string]int{"a": 1, "b": 1, "c": 1, "d": 1, "unanswered2": 2}, []string{"DUPLICATED"}},
		{"never sent", map[string]int{"a": 1, "b": 1, "c": 1, "d": 1, "z": 1}, []string{"ClickHouse holds 1 messageIds never sent"}},
		{"all wrong", map[string]int{"a": 3, "z": 1}, []string{"LOST", "DUPLICATED", "ClickHouse holds"}},
	} {
		r := &errRecorder{TB: t}
		checkCounts(r, "ClickHouse", st, c.counts)
		ok := len(r.errs) == len(c.want)
		for i := 0; ok && i < len(c.want); i++ {
			ok = strings.HasPrefix(r.errs[i], c.want[i])
		}
		if !ok {
			t.Errorf("%s: errors %q, want ones starting %q", c.name, r.errs, c.want)
		}
	}
}
