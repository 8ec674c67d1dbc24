package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tandem/config"
	"tandem/event"
)

// importSource creates an approved source of kind import and returns its id.
func (n *node) importSource(name string) string {
	n.t.Helper()
	r := n.admin("POST", "/api/v1/sources", map[string]any{"name": name, "kind": "import", "owner": "service",
		"purpose": "offline touchpoints", "dataCategories": []string{"contact"}, "monthlyCost": 0})
	if r.status != 201 {
		n.t.Fatalf("create source: %d %s", r.status, r.body)
	}
	return r.json(n.t)["id"].(string)
}

// importStatus is the part of an import's status the tests read.
type importStatus struct {
	ID           string `json:"id"`
	Status       string `json:"status"`
	RowsImported int64  `json:"rowsImported"`
	RowsFailed   int64  `json:"rowsFailed"`
	RowsSkipped  int64  `json:"rowsSkipped"`
	Attempts     int64  `json:"attempts"`
	Resume       struct {
		Rows int64 `json:"rows"`
	} `json:"resume"`
	Error *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	Errors []struct {
		Line    int    `json:"line"`
		Column  string `json:"column"`
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"errors"`
}

func decodeStatus(t *testing.T, r response) importStatus {
	t.Helper()
	var st importStatus
	if err := json.Unmarshal(r.body, &st); err != nil || st.ID == "" {
		t.Fatalf("import status %d: %s", r.status, r.body)
	}
	return st
}

// multipartImport posts mapping and data in one multipart request.
func (n *node) multipartImport(query string, mapping, data []byte) response {
	n.t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	if mapping != nil {
		w, _ := mw.CreateFormFile("mapping", "mapping")
		w.Write(mapping)
	}
	w, _ := mw.CreateFormFile("file", "data")
	w.Write(data)
	mw.Close()
	return n.do("POST", "/api/v1/imports?"+query, "bearer:"+n.token, body.Bytes(),
		map[string]string{"Content-Type": mw.FormDataContentType()})
}

func example(t *testing.T, dir, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "examples", "import", dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestImportExamples(t *testing.T) {
	n := startNode(t, "", nil)
	src := n.importSource("offline")
	for _, tc := range []struct {
		dir, mapping, data string
		rows               int
	}{
		{"call-centre", "mapping.yaml", "contacts.csv", 5},
		{"field-service", "mapping.yaml", "jobs.csv", 5},
		{"shop", "mapping.json", "purchases.ndjson", 4},
	} {
		r := n.multipartImport("source=offline", example(t, tc.dir, tc.mapping), example(t, tc.dir, tc.data))
		st := decodeStatus(t, r)
		if r.status != 201 || st.Status != "completed" || st.RowsImported != int64(tc.rows) || st.RowsFailed != 0 {
			t.Fatalf("%s: %d %s", tc.dir, r.status, r.body)
		}
		g := n.admin("GET", "/api/v1/imports/"+st.ID, nil)
		if got := decodeStatus(t, g); g.status != 200 || got.Status != "completed" || got.RowsImported != int64(tc.rows) {
			t.Fatalf("GET import: %d %s", g.status, g.body)
		}
	}
	n.drain()
	evs := n.events("source=" + src)
	if len(evs) != 14 {
		t.Fatalf("%d events stored, want 14", len(evs))
	}
	// Imported events keep their original time and carry their channel.
	channels := map[string]int{}
	for _, e := range evs {
		channels[e["channel"].(string)]++
		if ts := e["timestamp"].(string); !strings.HasPrefix(ts, "2024-05-0") {
			t.Errorf("timestamp %s is not the event's own time", ts)
		}
	}
	if channels["call-centre"] != 5 || channels["field-service"] != 5 || channels["store"] != 4 {
		t.Errorf("channels %v", channels)
	}
	// Re-importing a sample stores nothing new.
	r := n.multipartImport("source=offline", example(t, "shop", "mapping.json"), example(t, "shop", "purchases.ndjson"))
	if r.status != 201 {
		t.Fatalf("re-import: %d %s", r.status, r.body)
	}
	n.drain()
	if got := len(n.events("source=" + src)); got != 14 {
		t.Fatalf("%d events after a re-import, want 14", got)
	}
}

func TestImportBrokenRowsThroughServer(t *testing.T) {
	n := startNode(t, "", nil)
	src := n.importSource("legacy")
	mapping := []byte("event: Legacy Visit\nkey: id\ntimestamp: {column: at, format: YYYY-MM-DD}\nidentifiers: {email: email}\n")
	var data strings.Builder
	data.WriteString("id,at,email\n")
	bad := map[int]string{} // line → code
	good := 0
	for i := 1; i <= 300; i++ {
		line := i + 1
		switch {
		case i%50 == 7:
			fmt.Fprintf(&data, "%d,2024-02-30,u%d@example.com\n", i, i)
			bad[line] = "invalid_timestamp"
		case i%50 == 21:
			fmt.Fprintf(&data, "%d,2024-02-01,\n", i)
			bad[line] = "missing_identifier"
		case i%50 == 33:
			fmt.Fprintf(&data, "%d,2024-02-01\n", i)
			bad[line] = "column_count"
		default:
			fmt.Fprintf(&data, "%d,2024-02-01,u%d@example.com\n", i, i)
			good++
		}
	}
	r := n.do("POST", "/api/v1/imports?source=legacy&mapping="+urlQueryEscape(string(mapping)), "bearer:"+n.token,
		[]byte(data.String()), map[string]string{"Content-Type": "text/csv"})
	st := decodeStatus(t, r)
	if st.Status != "completed" || st.RowsImported != int64(good) || st.RowsFailed != int64(len(bad)) {
		t.Fatalf("import: %d %s", r.status, r.body)
	}
	// Every broken row is in the error report, with its line, and nothing else.
	seen := map[int]bool{}
	cursor := ""
	for {
		r := n.admin("GET", "/api/v1/imports/"+st.ID+"/errors?limit=7&cursor="+cursor, nil)
		var page struct {
			Items []struct {
				Line int    `json:"line"`
				Code string `json:"code"`
			} `json:"items"`
			Next string `json:"next"`
		}
		if err := json.Unmarshal(r.body, &page); err != nil || r.status != 200 {
			t.Fatalf("errors: %d %s", r.status, r.body)
		}
		for _, e := range page.Items {
			if bad[e.Line] != e.Code || seen[e.Line] {
				t.Errorf("error report: line %d code %s (want %q)", e.Line, e.Code, bad[e.Line])
			}
			seen[e.Line] = true
		}
		if page.Next == "" {
			break
		}
		cursor = page.Next
	}
	if len(seen) != len(bad) {
		t.Fatalf("%d rows in the error report, want %d", len(seen), len(bad))
	}
	n.drain()
	if got := len(n.events("source=" + src)); got != good {
		t.Fatalf("%d events stored, want %d", got, good)
	}
	q := n.quarantine()
	held := 0
	for _, e := range q {
		if e["sourceId"] == src {
			held++
			if e["raw"] == "" {
				t.Errorf("quarantined row without its bytes: %v", e)
			}
		}
	}
	if held != len(bad) {
		t.Fatalf("%d rows in the quarantine, want %d", held, len(bad))
	}
}

func urlQueryEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// genRows writes n CSV rows with three identifiers each.
func genRows(w io.Writer, n int) error {
	bw := &bytes.Buffer{}
	bw.WriteString("id,at,email,phone,crm_id,amount,store\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(bw, "%d,2024-03-%02dT%02d:%02d:%02dZ,user%d@example.com,+4930%07d,CRM-%d,%d.%02d,store-%d\n",
			i, 1+i%28, i%24, i%60, (i/60)%60, i, i, i, i%500, i%100, i%40)
		if bw.Len() > 256<<10 {
			if _, err := w.Write(bw.Bytes()); err != nil {
				return err
			}
			bw.Reset()
		}
	}
	_, err := w.Write(bw.Bytes())
	return err
}

const genMapping = `event: Purchase
key: id
timestamp: at
identifiers: {email: email, phone: phone, crm_id: crm_id}
properties:
  amount: {column: amount, type: number}
  store: store
channel: store
`

// createImport makes an import through the JSON endpoint.
func (n *node) createImport(source, key string) importStatus {
	n.t.Helper()
	r := n.admin("POST", "/api/v1/imports", map[string]any{"source": source, "mapping": genMapping, "key": key})
	if r.status != 201 && r.status != 200 {
		n.t.Fatalf("create import: %d %s", r.status, r.body)
	}
	return decodeStatus(n.t, r)
}

// putData streams body to an import's data endpoint.
func (n *node) putData(id string, body io.Reader) (importStatus, error) {
	req, err := http.NewRequest("PUT", n.url+"/api/v1/imports/"+id+"/data", body)
	if err != nil {
		return importStatus{}, err
	}
	req.Header.Set("Authorization", "Bearer "+n.token)
	req.Header.Set("Content-Type", "text/csv")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return importStatus{}, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return importStatus{}, fmt.Errorf("PUT data: %s: %s", resp.Status, b)
	}
	var st importStatus
	err = json.Unmarshal(b, &st)
	return st, err
}

// cutReader passes the first n bytes of r, then fails like a dropped
// connection.
type cutReader struct {
	r io.Reader
	n int
}

var errCut = errors.New("connection dropped")

func (c *cutReader) Read(p []byte) (int, error) {
	if c.n <= 0 {
		return 0, errCut
	}
	if len(p) > c.n {
		p = p[:c.n]
	}
	k, err := c.r.Read(p)
	c.n -= k
	return k, err
}

func TestImportInterruptedAndResumed(t *testing.T) {
	n := startNode(t, "", nil)
	src := n.importSource("shop-export")
	const rows = 60000
	var data bytes.Buffer
	if err := genRows(&data, rows); err != nil {
		t.Fatal(err)
	}
	st := n.createImport("shop-export", "sha256-of-the-file")
	// The client dies half-way through the upload.
	_, err := n.putData(st.ID, &cutReader{r: bytes.NewReader(data.Bytes()), n: data.Len() / 2})
	if err == nil {
		t.Fatal("a cut upload succeeded")
	}
	deadline := time.Now().Add(20 * time.Second)
	var mid importStatus
	for {
		mid = decodeStatus(t, n.admin("GET", "/api/v1/imports/"+st.ID, nil))
		if (mid.Status != "running" && mid.Status != "waiting") || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if mid.Status != "interrupted" || mid.RowsImported == 0 || mid.RowsImported >= rows {
		t.Fatalf("after the cut: %+v", mid)
	}
	// Run again: the same key finds the same import, which resumes.
	again := n.createImport("shop-export", "sha256-of-the-file")
	if again.ID != st.ID {
		t.Fatalf("same key gave import %s, want %s", again.ID, st.ID)
	}
	done, err := n.putData(st.ID, bytes.NewReader(data.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if done.Status != "completed" || done.RowsImported != rows || done.RowsSkipped != mid.Resume.Rows || done.RowsSkipped == 0 || done.Attempts != 2 {
		t.Fatalf("resumed: %+v (interrupted at %+v)", done, mid.Resume)
	}
	n.drain()
	// Every row exactly once.
	if c, err := n.srv.Events.Count(context.Background()); err != nil || c != rows {
		t.Fatalf("event store holds %d events (%v), want %d", c, err, rows)
	}
	seen := map[string]bool{}
	for _, e := range n.events("source=" + src) {
		id := e["messageId"].(string)
		if seen[id] {
			t.Fatalf("event %s twice", id)
		}
		seen[id] = true
	}
	if len(seen) != rows {
		t.Fatalf("%d distinct events listed, want %d", len(seen), rows)
	}
}

func TestImportMillionRows(t *testing.T) {
	if testing.Short() {
		t.Skip("1M rows: skipped with -short")
	}
	// A collection-only node: the test measures and checks the import into
	// the log; the pipeline's path to the event store is the same as for
	// every other event (and TestImportInterruptedAndResumed drains it).
	n := startNode(t, "", func(c *config.Config) { c.Pipeline = false })
	n.importSource("bulk")
	const rows = 1_000_000
	st := n.createImport("bulk", "")
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(genRows(pw, rows)) }()
	start := time.Now()
	done, err := n.putData(st.ID, pr)
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if done.Status != "completed" || done.RowsImported != rows || done.RowsFailed != 0 {
		t.Fatalf("import: %+v, error %+v", done, done.Error)
	}
	t.Logf("1M rows, 3 identifiers each, durable in the log in %s: %.0f rows/s", took.Round(time.Millisecond), rows/took.Seconds())

	// The log holds each row once.
	ctx := context.Background()
	c, err := n.srv.Log.Consumer(ctx, "import-check")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	seen := make(map[string]struct{}, rows)
	// An empty fetch on a loaded machine does not mean the log is read to
	// its end: read until a minute passes without a record, and once every
	// row is seen, until an empty fetch (a further record would be extra).
	lastRecord := time.Now()
	for {
		msgs, err := c.Fetch(ctx, 4, 500*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) == 0 {
			if len(seen) >= rows || time.Since(lastRecord) > time.Minute {
				break
			}
			continue
		}
		lastRecord = time.Now()
		for _, m := range msgs {
			evs, probs, err := event.DecodeRecord(m.Data)
			if err != nil || len(probs) > 0 {
				t.Fatalf("record %d: %v, %d problems", m.Seq, err, len(probs))
			}
			for _, e := range evs {
				if _, dup := seen[e.MessageID]; dup {
					t.Fatalf("messageId %s twice in the log", e.MessageID)
				}
				seen[e.MessageID] = struct{}{}
			}
		}
		if err := c.Ack(ctx, msgs...); err != nil {
			t.Fatal(err)
		}
	}
	// The bootstrap writes nothing to the log, so every event is a row.
	if len(seen) != rows {
		t.Fatalf("%d events in the log, want %d", len(seen), rows)
	}
}

// TestImportedContactJoinsWebProfile: a call-centre contact imported with
// the caller's phone number lands on the profile of the web visitor who
// gave the same number (written differently) when they signed up, with
// the default identity rules: the shipped example's crm_id is one of
// their types.
func TestImportedContactJoinsWebProfile(t *testing.T) {
	n := startNode(t, "", nil)
	n.importSource("offline")
	web := `{"userId":"web-anna","anonymousId":"browser-1","traits":{"phone":"+49 (30) 123-4567","email":"Anna.Schmidt@example.com "},"timestamp":"2024-04-20T08:00:00Z"}`
	if r := n.do("POST", "/v1/identify", "basic:"+n.writeKey, []byte(web), nil); r.status != 200 {
		t.Fatalf("identify: %d %s", r.status, r.body)
	}
	r := n.multipartImport("source=offline", example(t, "call-centre", "mapping.yaml"), example(t, "call-centre", "contacts.csv"))
	if st := decodeStatus(t, r); r.status != 201 || st.Status != "completed" {
		t.Fatalf("import: %d %s", r.status, r.body)
	}
	n.drain()
	lookup := func(identifier string) string {
		t.Helper()
		r := n.admin("GET", "/api/v1/profiles/lookup?identifier="+url.QueryEscape(identifier), nil)
		var p struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(r.body, &p); err != nil || r.status != 200 || p.ID == "" {
			t.Fatalf("lookup %s: %d %s", identifier, r.status, r.body)
		}
		return p.ID
	}
	webProfile := lookup("user_id:web-anna")
	if got := lookup("phone:+49301234567"); got != webProfile {
		t.Fatalf("the caller's phone is on profile %s, the web visitor is %s", got, webProfile)
	}
	if got := lookup("crm_id:CRM-5521"); got != webProfile {
		t.Errorf("the contact's CRM id is on profile %s, want the web profile %s", got, webProfile)
	}
	// The timeline of the web profile holds her calls.
	r = n.admin("GET", "/api/v1/profiles/"+webProfile+"/events", nil)
	var page struct {
		Items []map[string]any `json:"items"`
	}
	if err := json.Unmarshal(r.body, &page); err != nil || r.status != 200 {
		t.Fatalf("profile events: %d %s", r.status, r.body)
	}
	var calls, identifies int
	for _, e := range page.Items {
		switch {
		case e["event"] == "Call Centre Contact" && e["channel"] == "call-centre":
			calls++
		case e["type"] == "identify":
			identifies++
		}
	}
	if calls != 2 || identifies != 1 { // Anna called twice (contacts C-1001 and C-1005)
		t.Errorf("web profile timeline has %d calls and %d identifies, want 2 and 1: %s", calls, identifies, r.body)
	}
	// Another caller (a different number) stays apart.
	if other := lookup("phone:+49897654321"); other == webProfile {
		t.Errorf("an unrelated caller joined the web profile")
	}
}
