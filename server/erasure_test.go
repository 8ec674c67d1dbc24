package server

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"tandem/access"
	"tandem/config"
	"tandem/statestore/postgres"
	"tandem/testserver"
)

// The subject of TestErasureLeavesNoTrace, as sent and as tandem keeps
// their identifiers (e-mail lower-cased, phone in E.164), and their name
// in UTF-8 and JSON-escaped (events keep their bytes as sent).
const (
	zoeUser     = "u-zoe-5d1c"
	zoeAnon     = "a-zoe-77e0"
	zoeEmail    = "Zoe.Quixote-4b2@Example.com"
	zoeEmailLow = "zoe.quixote-4b2@example.com"
	zoePhone    = "+1 (415) 555-0134"
	zoePhoneSTD = "+14155550134"
	zoeName     = "Zoë Quixotë-Marsh"
	zoeNameJSON = `Zo\u00eb Quixot\u00eb-Marsh`
)

var zoeNeedles = []string{zoeUser, zoeAnon, zoeEmail, zoeEmailLow, zoePhone, zoePhoneSTD, zoeName, zoeNameJSON}

// grepDirs is grepDir over several directories, the files named by
// their full path.
func grepDirs(t *testing.T, dirs []string, needles []string) map[string][]string {
	t.Helper()
	found := map[string][]string{}
	for _, d := range dirs {
		for n, files := range grepDir(t, d, needles) {
			for _, f := range files {
				found[n] = append(found[n], filepath.Join(d, f))
			}
		}
	}
	return found
}

// grepDir returns, for each needle found, the files under dir (relative)
// that hold its bytes.
func grepDir(t *testing.T, dir string, needles []string) map[string][]string {
	t.Helper()
	found := map[string][]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) {
				return nil // removed while walking (a compaction's file)
			}
			return err
		}
		if d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(path)
		if os.IsNotExist(err) {
			return nil
		}
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		for _, n := range needles {
			if bytes.Contains(b, []byte(n)) {
				found[n] = append(found[n], rel)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// TestErasureLeavesNoTrace is issue 17's proof of an erasure on the
// embedded node: a person's events (e-mail, phone, name; an anonymous
// visit, a login, purchases, a refused event) reach the event log, the
// event store, the identity graph, the quarantine, a webhook receiver and
// the dead letters of a second one that refuses them; an access request
// of theirs is answered. After their erasure request completes, a byte
// search of every file under the data directory (the log's message blocks
// and indexes, SQLite and its -wal and -shm, DuckDB and its .wal) finds
// none of their values in any encoding tandem stores, nor does any API
// answer; the receiver got the erasure notice and the request records
// it. Another person's data is intact and still flows; the person's later
// events are suppressed until a privacy officer lifts the suppression.
func TestErasureLeavesNoTrace(t *testing.T) {
	n := startNode(t, "", func(c *config.Config) { c.DestinationAllow = []string{"127.0.0.0/8"} })
	checkErasure(t, n, nil, nil, n.dir)
}

// TestErasureLeavesNoTraceOnPostgres is TestErasureLeavesNoTrace with the
// state store on PostgreSQL: its data directory (tables, indexes, TOAST,
// the WAL in pg_wal) is searched too.
func TestErasureLeavesNoTraceOnPostgres(t *testing.T) {
	pg := testserver.PostgresInstance(t)
	stateURL := pg.NewDatabase(t)
	n := startNode(t, "", func(c *config.Config) {
		c.DestinationAllow = []string{"127.0.0.0/8"}
		c.State = stateURL
	})
	// Before the erasure, a checkpoint writes the rows into the tables'
	// files, so that the search shows they leave those too, not only
	// the WAL.
	checkpoint := func() {
		db, err := postgres.Open(context.Background(), stateURL)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if _, err := db.Exec(context.Background(), "CHECKPOINT"); err != nil {
			t.Fatal(err)
		}
		found := grepDir(t, filepath.Join(pg.DataDir(), "base"), []string{zoeEmail, zoeEmailLow})
		if len(found[zoeEmail]) == 0 || len(found[zoeEmailLow]) == 0 {
			t.Fatalf("after a checkpoint, the tables' files do not hold the values: %v", found)
		}
	}
	checkErasure(t, n, checkpoint, nil, n.dir, pg.DataDir())
}

// TestErasureLeavesNoTraceOnServers is TestErasureLeavesNoTrace with
// every store on a server backend: the log on a three-node NATS cluster
// (the stream replicated three times), the state store on PostgreSQL and
// the event store on ClickHouse. The search covers every server's
// directory too: each NATS node's JetStream store (the stream's blocks,
// its Raft log and snapshots), PostgreSQL's data directory (tables and
// pg_wal) and ClickHouse's (parts, mutation files, logs).
func TestErasureLeavesNoTraceOnServers(t *testing.T) {
	nc := testserver.StartNATSCluster(t, 3)
	pg := testserver.PostgresInstance(t)
	stateURL := pg.NewDatabase(t)
	chs := testserver.StartClickHouse(t)
	eventsURL := chs.NewDatabase(t)
	n := startNode(t, "", func(c *config.Config) {
		c.DestinationAllow = []string{"127.0.0.0/8"}
		c.Log = nc.URL()
		c.State = stateURL
		c.Events = eventsURL
	})
	dirs := []string{n.dir, pg.DataDir(), chs.Dir()}
	for i := range nc.Size() {
		dirs = append(dirs, nc.Dir(i))
	}
	// Each server's directory holds values of hers before the erasure
	// (ClickHouse's compressed parts keep the ids as literals), so that
	// its search can fail.
	beforeErase := func() {
		for _, d := range dirs[1:] {
			if found := grepDir(t, d, []string{zoeUser, zoeAnon}); len(found) == 0 {
				t.Fatalf("before the erasure, no file under %s holds her ids", d)
			}
		}
	}
	checkErasure(t, n, beforeErase, func(erasedAt time.Time) {
		// Each replica's Raft log of the stream (under $SYS/_js_) still
		// holds the appends of the erased records until JetStream
		// snapshots the stream's state and compacts the log, which each
		// replica does on a timer of two to three minutes when the stream
		// changed (no client can ask for it): the search waits that bound
		// out, and fails after.
		raft := dirs[3:]
		deadline := erasedAt.Add(raftCompactBound + 15*time.Second)
		for {
			left := grepDirs(t, raft, zoeNeedles)
			if len(left) == 0 {
				t.Logf("the replicas' Raft logs were compacted %s after the erasure", time.Since(erasedAt).Round(time.Second))
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s after the erasure, the replicas' Raft logs still hold: %v", time.Since(erasedAt).Round(time.Second), left)
			}
			time.Sleep(2 * time.Second)
		}
	}, dirs...)
}

// raftCompactBound is how long after a change each replica of a
// clustered JetStream stream snapshots it and compacts its Raft log: a
// ticker of two minutes plus up to one (nats-server's monitorStream).
const raftCompactBound = 3 * time.Minute

// checkErasure runs the erasure scenario on node n and searches the files
// under dirs; beforeErase, if not nil, runs just before the erasure.
// Files under a _js_ directory (a JetStream replica's Raft log) are left
// to raftSearch, which is called, when not nil, after the search with the
// time the erasure completed (and before the person's data comes back).
func checkErasure(t *testing.T, n *node, beforeErase func(), raftSearch func(erasedAt time.Time), dirs ...string) {
	// Two real receivers on loopback: crm takes everything; archive
	// refuses events (400: dead letters at once) but takes notices.
	type receiver struct {
		mu  sync.Mutex
		got []string
		srv *httptest.Server
	}
	newReceiver := func(refuseEvents bool) *receiver {
		rc := &receiver{}
		rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			rc.mu.Lock()
			rc.got = append(rc.got, string(b))
			rc.mu.Unlock()
			if refuseEvents && !strings.Contains(string(b), `"type":"erasure"`) {
				w.WriteHeader(400)
			}
		}))
		t.Cleanup(rc.srv.Close)
		return rc
	}
	has := func(rc *receiver, s string) bool {
		rc.mu.Lock()
		defer rc.mu.Unlock()
		for _, b := range rc.got {
			if strings.Contains(b, s) {
				return true
			}
		}
		return false
	}
	crm, archive := newReceiver(false), newReceiver(true)
	dest := func(name, url string) string {
		r := n.admin("POST", "/api/v1/destinations", map[string]any{"name": name, "type": "webhook",
			"config": map[string]any{"url": url}, "owner": "Sales", "purpose": "contacts",
			"dataCategories": []string{"contact"}, "consentPurposes": []string{}, "monthlyCost": 1})
		if r.status != 201 {
			t.Fatalf("create destination: %d %s", r.status, r.body)
		}
		id := r.json(t)["id"].(string)
		if r.json(t)["approval"] != "approved" {
			if a := n.admin("POST", "/api/v1/destinations/"+id+"/approvals", map[string]any{"decision": "approve"}); a.status != 200 {
				t.Fatalf("approve: %d %s", a.status, a.body)
			}
		}
		return id
	}
	crmID, archiveID := dest("crm", crm.srv.URL), dest("archive", archive.srv.URL)

	send := func(path, body string) {
		t.Helper()
		if r := n.do("POST", path, "basic:"+n.writeKey, []byte(body), nil); r.status != 200 {
			t.Fatalf("%s: %d %s", path, r.status, r.body)
		}
	}
	// One batch mixes both people, so that the log holds records with
	// both: erasing one rewrites the record and keeps the other's.
	send("/v1/batch", `{"batch":[
		{"type":"page","anonymousId":"`+zoeAnon+`","messageId":"m-zoe-visit","name":"Home"},
		{"type":"page","anonymousId":"a-bob","messageId":"m-bob-visit","name":"Home"},
		{"type":"identify","anonymousId":"`+zoeAnon+`","userId":"`+zoeUser+`","messageId":"m-zoe-login",
		 "traits":{"email":"`+zoeEmail+`","phone":"`+zoePhone+`","name":"`+zoeNameJSON+`","plan":"gold"}},
		{"type":"identify","anonymousId":"a-bob","userId":"u-bob","messageId":"m-bob-login",
		 "traits":{"email":"bob.marley-9@example.org","phone":"+44 20 7946 0958","name":"Bob Marley","plan":"silver"}}]}`)
	send("/v1/track", `{"userId":"`+zoeUser+`","messageId":"m-zoe-buy","event":"Order Completed",
		"properties":{"total":12,"shipTo":"`+zoeName+`"},"context":{"traits":{"email":"`+zoeEmail+`"}}}`)
	send("/v1/track", `{"userId":"u-bob","messageId":"m-bob-buy","event":"Order Completed","properties":{"total":7}}`)
	// Refused by validation (no event name): held in the quarantine.
	n.do("POST", "/v1/track", "basic:"+n.writeKey, []byte(`{"userId":"`+zoeUser+`","messageId":"m-zoe-bad","properties":{"phone":"`+zoePhone+`"}}`), nil)
	n.do("POST", "/v1/track", "basic:"+n.writeKey, []byte(`{"userId":"u-bob","messageId":"m-bob-bad"}`), nil)
	n.drain()
	waitFor(t, "both receivers got zoe's and bob's purchases", func() bool {
		return has(crm, "m-zoe-buy") && has(crm, "m-bob-buy") && has(archive, "m-zoe-buy") && has(archive, "m-bob-buy")
	})
	deadLetters := func() string {
		return string(n.admin("GET", "/api/v1/destinations/"+archiveID+"/dead-letters?limit=1000", nil).body)
	}
	waitFor(t, "zoe's and bob's dead letters", func() bool {
		dl := deadLetters()
		return strings.Contains(dl, "m-zoe-buy") && strings.Contains(dl, "m-bob-buy")
	})
	// An access request of hers, answered: its record names her.
	accessReq, _ := n.fileRequest(n.token, "access", "email", zoeEmail)
	if r := n.admin("GET", "/api/v1/privacy/requests/"+accessReq+"/export", nil); r.status != 200 || !strings.Contains(string(r.body), "m-zoe-buy") {
		t.Fatalf("export: %d %s", r.status, r.body)
	}

	// The search can fail: before the erasure every value is on disk,
	// in the log at least.
	before := grepDirs(t, dirs, zoeNeedles)
	for _, s := range zoeNeedles {
		if len(before[s]) == 0 {
			t.Fatalf("%q is in no file before the erasure: the search proves nothing (%v)", s, before)
		}
	}
	t.Logf("before the erasure: %v", before)

	if beforeErase != nil {
		beforeErase()
	}
	id, status := n.fileRequest(n.token, "erasure", "email", zoeEmail)
	req := n.getRequest(id)
	if status != "completed" || req.CompletedAt == nil {
		t.Fatalf("erasure: %s %+v", status, req)
	}
	steps := map[string]string{}
	for _, s := range req.Steps {
		steps[s.Store+s.Destination] = s.Status + ": " + s.Detail
	}
	for _, s := range []string{"suppression", "events", "consent", "audiences", "quarantine", "identity", "dead_letters", "log", "requests", "state", crmID, archiveID} {
		if !strings.HasPrefix(steps[s], "completed") {
			t.Errorf("step %s: %q", s, steps[s])
		}
	}
	t.Logf("steps: %v", steps)
	if n.srv.cfg.Log != "" && !strings.Contains(steps["log"], "Raft log") {
		t.Errorf("the log step does not say what the replicas' Raft logs keep: %q", steps["log"])
	}
	// Forwarded (Art. 19): the notice reached the receiver, and the
	// request records it.
	if !has(crm, `"type":"erasure"`) || !has(crm, `"requestId":"`+id+`"`) {
		t.Errorf("crm got no erasure notice: %v", crm.got)
	}

	erasedAt := time.Now()
	// Not one byte left under the data directory.
	after := grepDirs(t, dirs, zoeNeedles)
	for s, files := range after {
		files = slices.DeleteFunc(files, func(f string) bool { return strings.Contains(f, "/_js_/") })
		if len(files) == 0 {
			delete(after, s)
		} else {
			after[s] = files
		}
	}
	if len(after) > 0 {
		t.Errorf("after the erasure, found on disk: %v", after)
		if d := os.Getenv("TANDEM_ERASURE_KEEP"); d != "" {
			_ = os.CopyFS(d, os.DirFS(n.dir))
		}
	}
	if raftSearch != nil {
		raftSearch(erasedAt)
	}

	// Nor in any API answer.
	var answers []string
	get := func(path string) {
		r := n.admin("GET", path, nil)
		answers = append(answers, path+" "+string(r.body))
	}
	for _, ident := range []string{"email:" + zoeEmailLow, "phone:" + zoePhoneSTD, "user_id:" + zoeUser, "anonymous_id:" + zoeAnon} {
		checkError(t, n.admin("GET", "/api/v1/profiles/lookup?identifier="+ident, nil), 404, "not_found", "")
	}
	for _, m := range []string{"m-zoe-visit", "m-zoe-login", "m-zoe-buy"} {
		checkError(t, n.admin("GET", "/api/v1/events/"+m, nil), 404, "not_found", "")
	}
	get("/api/v1/events?limit=1000")
	get("/api/v1/quarantine?limit=1000")
	get("/api/v1/audit?limit=1000")
	get("/api/v1/privacy/requests?limit=1000")
	get("/api/v1/privacy/requests/" + accessReq)
	get("/api/v1/privacy/requests/" + id)
	get("/api/v1/privacy/requests/" + accessReq + "/export")
	get("/api/v1/destinations/" + archiveID + "/dead-letters?limit=1000")
	get("/api/v1/destinations/" + crmID + "/deliveries?limit=1000")
	get("/api/v1/destinations/" + archiveID + "/deliveries?limit=1000")
	// A new access request names her again (it is filed with her
	// address), but finds nothing of her.
	again, _ := n.fileRequest(n.token, "access", "email", zoeEmail)
	r := n.admin("GET", "/api/v1/privacy/requests/"+again+"/export", nil)
	if !strings.Contains(string(r.body), `"profile":null`) {
		t.Errorf("export after the erasure: %s", r.body)
	}
	for _, a := range answers {
		for _, s := range zoeNeedles {
			if strings.Contains(a, s) {
				t.Errorf("an API answer holds %q: %.300s", s, a)
			}
		}
	}
	// The request proves what was done without the identifier.
	if req.Identity.Value != "" {
		t.Errorf("the erasure request keeps the identifier: %+v", req.Identity)
	}
	var withHash struct {
		Identity struct{ Type, Value, Hash string }
	}
	_ = json.Unmarshal(n.admin("GET", "/api/v1/privacy/requests/"+accessReq, nil).body, &withHash)
	if withHash.Identity.Type != "email" || withHash.Identity.Value != "" || len(withHash.Identity.Hash) != 64 {
		t.Errorf("the earlier access request's identity: %+v", withHash.Identity)
	}

	// Bob is intact: profile, traits, events, dead letters, and new
	// events still flow.
	bob := n.admin("GET", "/api/v1/profiles/lookup?identifier=email:bob.marley-9@example.org", nil)
	if bob.status != 200 || bob.json(t)["traits"].(map[string]any)["plan"] != "silver" {
		t.Fatalf("bob after: %d %s", bob.status, bob.body)
	}
	if evs := n.events("profile=" + bob.json(t)["id"].(string)); len(evs) != 3 {
		t.Errorf("bob's events: %d", len(evs))
	}
	if dl := deadLetters(); !strings.Contains(dl, "m-bob-buy") {
		t.Errorf("bob's dead letters: %s", dl)
	}
	if q := n.quarantine(); len(q) != 1 || !strings.Contains(fmt_(q), "m-bob-bad") {
		t.Errorf("quarantine after: %v", q)
	}

	// The log's copy of the record that held both people's events is not
	// delivered again to the receivers that had it.
	count := func(rc *receiver, s string) int {
		rc.mu.Lock()
		defer rc.mu.Unlock()
		n := 0
		for _, b := range rc.got {
			n += strings.Count(b, s)
		}
		return n
	}
	time.Sleep(500 * time.Millisecond) // a fetch interval or two
	if c := count(crm, `"m-bob-login"`); c != 1 {
		t.Errorf("crm got bob's login %d times", c)
	}

	// Later events of hers are suppressed; bob's are not.
	send("/v1/track", `{"userId":"`+zoeUser+`","messageId":"m-zoe-late","event":"Order Completed"}`)
	send("/v1/identify", `{"anonymousId":"a-zoe-new-device","messageId":"m-zoe-late-2","traits":{"email":"`+zoeEmail+`"}}`)
	send("/v1/track", `{"userId":"u-bob","messageId":"m-bob-late","event":"Order Completed"}`)
	n.drain()
	waitFor(t, "bob's late event delivered", func() bool { return has(crm, "m-bob-late") })
	if has(crm, "m-zoe-late") {
		t.Error("a suppressed event reached a destination")
	}
	for _, m := range []string{"m-zoe-late", "m-zoe-late-2"} {
		checkError(t, n.admin("GET", "/api/v1/events/"+m, nil), 404, "not_found", "")
	}
	if m := string(n.do("GET", "/metrics", "", nil, nil).body); !strings.Contains(m, "tandem_pipeline_events_suppressed_total 2") {
		t.Errorf("suppressed events not counted: %s", grepLines(m, "suppressed"))
	}

	// Lifting the suppression of her e-mail (she signed up again): privacy
	// only, named by the field at fault, then her new events count.
	checkError(t, n.do("DELETE", "/api/v1/privacy/suppressions", "bearer:"+n.roleTokens()[access.RoleMarketing], []byte(`{}`), nil), 403, "forbidden", "")
	checkError(t, n.admin("DELETE", "/api/v1/privacy/suppressions", map[string]any{"identity": map[string]string{"type": "email"}}), 400, "", "identity.value")
	lift := n.admin("DELETE", "/api/v1/privacy/suppressions", map[string]any{"identity": map[string]string{"type": "email", "value": zoeEmail}})
	if lift.status != 200 || lift.json(t)["removed"] != true {
		t.Fatalf("lift: %d %s", lift.status, lift.body)
	}
	send("/v1/identify", `{"anonymousId":"a-zoe-again","messageId":"m-zoe-again","traits":{"email":"`+zoeEmail+`"}}`)
	n.drain()
	if r := n.admin("GET", "/api/v1/profiles/lookup?identifier=email:"+zoeEmailLow, nil); r.status != 200 {
		t.Errorf("after lifting the suppression: %d %s", r.status, r.body)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
