package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tandem/event"
	"tandem/metrics"
)

type wireBody struct {
	Batch []struct {
		Type      string `json:"type"`
		Event     string `json:"event"`
		UserID    string `json:"userId"`
		MessageID string `json:"messageId"`
	} `json:"batch"`
	SentAt string `json:"sentAt"`
}

func decodeBody(t *testing.T, b []byte) wireBody {
	t.Helper()
	if !json.Valid(b) {
		t.Fatalf("body is not valid JSON: %.200s", b)
	}
	var wb wireBody
	if err := json.Unmarshal(b, &wb); err != nil {
		t.Fatal(err)
	}
	return wb
}

func TestTemplateMessageIDsUnique(t *testing.T) {
	const clients, batch, requests = 3, 7, 25
	g := newGenerator("abcd1234", clients, batch, time.Now())
	seen := map[string]bool{}
	for r := 0; r < requests; r++ {
		for c, tpl := range g.templates {
			size := len(tpl.patch.b)
			body := tpl.next()
			if len(body) != size {
				t.Fatalf("patching changed the body length: %d → %d", size, len(body))
			}
			wb := decodeBody(t, body)
			if len(wb.Batch) != batch {
				t.Fatalf("client %d: %d events, want %d", c, len(wb.Batch), batch)
			}
			for _, e := range wb.Batch {
				if e.Type != "track" || e.Event == "" || e.UserID == "" {
					t.Fatalf("bad event %+v", e)
				}
				if seen[e.MessageID] {
					t.Fatalf("messageId %q repeated", e.MessageID)
				}
				seen[e.MessageID] = true
			}
		}
	}
	if len(seen) != clients*batch*requests {
		t.Fatalf("%d distinct messageIds, want %d", len(seen), clients*batch*requests)
	}
	// The collection API's parser takes the body whole.
	req, err := event.ParseBatch(g.templates[0].patch.b, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(req.Events) != batch || len(req.Problems) != 0 {
		t.Fatalf("parsed %d events, %d problems; want %d, 0", len(req.Events), len(req.Problems), batch)
	}
}

func TestTemplateCounterWidth(t *testing.T) {
	g := newGenerator("00000000", 1, 2, time.Now())
	tpl := g.templates[0]
	tpl.counter = 999_999_999_998
	wb := decodeBody(t, tpl.next())
	want := "bench-00000000-0000-999999999999-0001"
	if got := wb.Batch[1].MessageID; got != want {
		t.Fatalf("messageId %q, want %q", got, want)
	}
}

func TestEncodedChunkPatching(t *testing.T) {
	g := newGenerator("feedf00d", 2, 4, time.Now())
	tpl := g.templates[1]
	chunk, err := encodeChunk(tpl.patch.b, idPrefix(g.runID, 1), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(chunk.offs) != 2*4 {
		t.Fatalf("%d counter fields in the chunk, want 8 (messageId and raw event per event)", len(chunk.offs))
	}
	for _, n := range []uint64{1, 42} {
		tpl.counter = n - 1
		want := decodeBody(t, tpl.next())
		chunk.set(n)
		rec := append(append([]byte(nil), event.RecordHeader...), chunk.b...)
		events, problems, err := event.DecodeRecord(rec)
		if err != nil || len(problems) != 0 {
			t.Fatalf("decode: %v, %d problems", err, len(problems))
		}
		for i, e := range events {
			if e.MessageID != want.Batch[i].MessageID {
				t.Fatalf("event %d: messageId %q, want %q", i, e.MessageID, want.Batch[i].MessageID)
			}
			if !bytes.Contains(e.Raw, []byte(e.MessageID)) || !json.Valid(e.Raw) {
				t.Fatalf("event %d: raw %s does not carry %s", i, e.Raw, e.MessageID)
			}
			if e.SourceID != logSourceID {
				t.Fatalf("source %q", e.SourceID)
			}
		}
	}
}

func TestPercentile(t *testing.T) {
	seq := func(n int) []time.Duration {
		d := make([]time.Duration, n)
		for i := range d {
			d[i] = time.Duration(i+1) * time.Millisecond
		}
		return d
	}
	for _, tc := range []struct {
		n    int
		p    float64
		want time.Duration
	}{
		{0, 50, 0},
		{1, 50, 1 * time.Millisecond},
		{1, 99, 1 * time.Millisecond},
		{2, 50, 1 * time.Millisecond},
		{4, 50, 2 * time.Millisecond},
		{10, 50, 5 * time.Millisecond},
		{10, 99, 10 * time.Millisecond},
		{100, 50, 50 * time.Millisecond},
		{100, 99, 99 * time.Millisecond},
		{1000, 99, 990 * time.Millisecond},
		{1000, 100, 1000 * time.Millisecond},
		{101, 50, 51 * time.Millisecond},
	} {
		if got := percentile(seq(tc.n), tc.p); got != tc.want {
			t.Errorf("p%g of 1..%d ms = %v, want %v", tc.p, tc.n, got, tc.want)
		}
	}
}

func TestParseProm(t *testing.T) {
	text := `# HELP tandem_pipeline_events_stored_total Events written to the event store.
# TYPE tandem_pipeline_events_stored_total counter
tandem_pipeline_events_stored_total 123456
# HELP tandem_pipeline_lag_records Event log records not yet processed.
# TYPE tandem_pipeline_lag_records gauge
tandem_pipeline_lag_records -1

tandem_pipeline_events_stored_totalx 5
tandem_collect_requests_total{endpoint="batch",status="200"} 10
tandem_collect_requests_total{endpoint="batch",status="503"} 2 1700000000000
odd_labels{path="/a b}c",q="say \"hi\" }"} 7
tandem_pipeline_batch_seconds_bucket{le="+Inf"} 4
tandem_pipeline_batch_seconds_sum 1.5e-3
weird NaN
big +Inf
# TYPE append_seconds histogram
append_seconds_bucket{le="0.001"} 3
append_seconds_bucket{le="+Inf"} 5
append_seconds_sum 0.25
append_seconds_count 5
escaped{v="back\\slash \"q\" line\nbreak"} 9
`
	m, err := parseProm(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	check := func(name string, want float64) {
		t.Helper()
		got, ok := promSum(m, name)
		if !ok || got != want {
			t.Errorf("%s = %v (found %v), want %v", name, got, ok, want)
		}
	}
	check(metricStored, 123456)
	check(metricLag, -1)
	check("tandem_collect_requests_total", 12)
	check(`tandem_collect_requests_total{endpoint="batch",status="503"}`, 2)
	check(`odd_labels{path="/a b}c",q="say \"hi\" }"}`, 7)
	check("tandem_pipeline_batch_seconds_sum", 0.0015)
	check(`append_seconds_bucket{le="0.001"}`, 3)
	check(`append_seconds_bucket{le="+Inf"}`, 5)
	check("append_seconds_count", 5)
	check("append_seconds_sum", 0.25)
	check(`escaped{v="back\\slash \"q\" line\nbreak"}`, 9)
	if _, ok := promSum(m, "missing_total"); ok {
		t.Error("found a metric that is not there")
	}
	if v := m["weird"]; v == v {
		t.Errorf("weird = %v, want NaN", v)
	}

	for _, bad := range []string{
		"no_value\n",
		"x{a=\"1\" 3\n",
		"x abc\n",
		"x 1 2 3\n",
		"{a=\"1\"} 3\n",
		"x{a=\"tab\\there\"} 3\n", // \t is no escape the format knows
		"# TYPE h histogram\nh_bucket{le=\"x\"} 1\n",
	} {
		if _, err := parseProm(strings.NewReader(bad)); err == nil {
			t.Errorf("parseProm(%q) succeeded", bad)
		}
	}
}

// TestParsePromReadsTandem reads what tandem's own registry writes, the
// runtime collectors included, as the bench does from a child server.
func TestParsePromReadsTandem(t *testing.T) {
	r := metrics.NewRegistry()
	r.AddRuntime()
	r.NewCounter(metricStored, "Stored.").Add(1_234_567)
	r.NewGaugeFunc(metricLag, "Lag.", func() float64 { return 42 })
	r.NewCounterVec("tandem_things_total", "Things.", "v").Add(2, "odd \"value\"\n\\")
	r.NewHistogram("tandem_x_seconds", "X.", []float64{0.5}).Observe(0.1)
	var b bytes.Buffer
	if err := r.Write(&b); err != nil {
		t.Fatal(err)
	}
	m, err := parseProm(&b)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]float64{
		metricStored: 1_234_567,
		metricLag:    42,
		`tandem_things_total{v="odd \"value\"\n\\"}`: 2,
		`tandem_x_seconds_bucket{le="0.5"}`:          1,
		"tandem_x_seconds_count":                     1,
	} {
		if got, ok := promSum(m, name); !ok || got != want {
			t.Errorf("%s = %v (found %v), want %v", name, got, ok, want)
		}
	}
	if _, ok := promSum(m, "go_goroutines"); !ok {
		t.Error("no go_goroutines")
	}
}

func TestParseProcStat(t *testing.T) {
	// pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime …
	line := "4242 (tan dem) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 1000 0 0\n"
	got, err := parseProcStat([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if got != 3*time.Second {
		t.Fatalf("cpu %v, want 3s (300 ticks)", got)
	}
	if _, err := parseProcStat([]byte("4242 (x) S 1 2")); err == nil {
		t.Fatal("short stat accepted")
	}
}

// startTestSink serves a sink over a file in a temp dir.
func startTestSink(t *testing.T, syncFn func(f *os.File) error) (*sink, *httptest.Server, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sink.out")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	var fn func() error
	if syncFn != nil {
		fn = func() error { return syncFn(f) }
	}
	s := newSink(f, fn)
	ts := httptest.NewServer(s)
	t.Cleanup(func() {
		ts.Close()
		s.Close()
		f.Close()
	})
	return s, ts, path
}

func post(url string, body string) (int, error) {
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

func TestSinkGroupCommit(t *testing.T) {
	var syncs atomic.Int64
	_, ts, path := startTestSink(t, func(f *os.File) error {
		syncs.Add(1)
		time.Sleep(10 * time.Millisecond) // a slow disk: posts pile up behind each fsync
		return f.Sync()
	})
	const posters, each = 40, 10
	var wg sync.WaitGroup
	errs := make(chan error, posters*each)
	for p := 0; p < posters; p++ {
		wg.Add(1)
		go func(p int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				body := fmt.Sprintf(`{"poster":%d,"i":%d,"batch":[{"type":"track"}]}`, p, i)
				code, err := post(ts.URL+"/v1/batch", body)
				if err == nil && code != 200 {
					err = fmt.Errorf("status %d", code)
				}
				if err != nil {
					errs <- err
				}
			}
		}(p)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	// Invalid JSON is refused and not stored.
	if code, err := post(ts.URL+"/v1/batch", `{"batch":[`); err != nil || code != 400 {
		t.Fatalf("invalid JSON: status %d, %v; want 400", code, err)
	}
	if code, err := post(ts.URL+"/v1/batch", ``); err != nil || code != 400 {
		t.Fatalf("empty body: status %d, %v; want 400", code, err)
	}

	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) != posters*each {
		t.Fatalf("%d lines in the file, want %d", len(lines), posters*each)
	}
	count := map[string]int{}
	for _, l := range lines {
		count[l]++
	}
	for p := 0; p < posters; p++ {
		for i := 0; i < each; i++ {
			body := fmt.Sprintf(`{"poster":%d,"i":%d,"batch":[{"type":"track"}]}`, p, i)
			if count[body] != 1 {
				t.Fatalf("body %s is in the file %d times", body, count[body])
			}
		}
	}
	n := syncs.Load()
	t.Logf("%d posts, %d fsyncs", posters*each, n)
	if n >= posters*each/2 {
		t.Fatalf("%d fsyncs for %d concurrent posts: no group commit", n, posters*each)
	}
}

// A handler answers only after the fsync that covered its bytes.
func TestSinkRepliesAfterSync(t *testing.T) {
	entered := make(chan int64, 1)
	gate := make(chan struct{})
	var first sync.Once
	_, ts, _ := startTestSink(t, func(f *os.File) error {
		st, err := f.Stat()
		if err != nil {
			return err
		}
		first.Do(func() {
			entered <- st.Size()
			<-gate
		})
		return f.Sync()
	})
	const body = `{"batch":[{"type":"track","event":"x"}]}`
	done := make(chan int, 1)
	go func() {
		code, _ := post(ts.URL+"/v1/batch", body)
		done <- code
	}()
	size := <-entered
	if size != int64(len(body)+1) {
		t.Fatalf("file holds %d bytes at fsync, want the body and a newline (%d)", size, len(body)+1)
	}
	select {
	case code := <-done:
		t.Fatalf("answered %d before the fsync returned", code)
	case <-time.After(50 * time.Millisecond):
	}
	close(gate)
	if code := <-done; code != 200 {
		t.Fatalf("status %d, want 200", code)
	}
}

func TestSinkReadyAndMethod(t *testing.T) {
	_, ts, _ := startTestSink(t, nil)
	resp, err := http.Get(ts.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/readyz: %d", resp.StatusCode)
	}
	resp, err = http.Get(ts.URL + "/v1/batch")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET /v1/batch: %d, want 405", resp.StatusCode)
	}
}

// runLoad against an in-process stand-in for the collection API: auth,
// counting, error accounting and the stop-after-N-events mode.
func TestRunLoad(t *testing.T) {
	var mu sync.Mutex
	ids := map[string]int{}
	var n atomic.Int64
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if user, _, ok := r.BasicAuth(); !ok || user != "wk" {
			http.Error(w, "bad auth", 401)
			return
		}
		b, _ := io.ReadAll(r.Body)
		var wb wireBody
		if err := json.Unmarshal(b, &wb); err != nil {
			http.Error(w, "bad json", 400)
			return
		}
		if n.Add(1)%5 == 0 {
			http.Error(w, "busy", 503)
			return
		}
		mu.Lock()
		for _, e := range wb.Batch {
			ids[e.MessageID]++
		}
		mu.Unlock()
		io.WriteString(w, `{"success":true}`)
	}))
	defer ts.Close()

	g := newGenerator("0badcafe", 4, 10, time.Now())
	hc := newHTTPClient(4)
	res, err := runLoad(context.Background(), hc, g, loadOptions{URL: ts.URL + "/v1/batch", WriteKey: "wk", Events: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if res.Events != 1000 {
		t.Fatalf("%d events accepted, want exactly 1000", res.Events)
	}
	if res.Errors["503"] == 0 || res.Requests != res.OK+res.Errors["503"] {
		t.Fatalf("errors %v, requests %d, ok %d", res.Errors, res.Requests, res.OK)
	}
	if int64(len(res.Latencies)) != res.Requests {
		t.Fatalf("%d latencies for %d requests", len(res.Latencies), res.Requests)
	}
	if len(ids) != 1000 {
		t.Fatalf("%d distinct messageIds stored, want 1000", len(ids))
	}

	// A timed run carries on the counters: no messageId comes back.
	res, err = runLoad(context.Background(), hc, g, loadOptions{URL: ts.URL + "/v1/batch", WriteKey: "wk", Duration: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.Events == 0 || res.Elapsed < 200*time.Millisecond {
		t.Fatalf("timed run: %d events in %v", res.Events, res.Elapsed)
	}
	for id, c := range ids {
		if c != 1 {
			t.Fatalf("messageId %s stored %d times", id, c)
		}
	}

	// A wrong key is counted as errors, not accepted events.
	res, err = runLoad(context.Background(), hc, g, loadOptions{URL: ts.URL + "/v1/batch", WriteKey: "nope", Duration: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.Events != 0 || res.Errors["401"] == 0 {
		t.Fatalf("wrong key: %d events, errors %v", res.Events, res.Errors)
	}
}

func TestMainUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		out  string // in stdout
		err  string // in stderr
	}{
		{nil, 2, "", "Usage"},
		{[]string{"funnel", "--runs", "0"}, 2, "", "--runs"},
		{[]string{"funnel", "--gap", "-1s"}, 2, "", "--gap"},
		{[]string{"identity", "--help"}, 0, "-person-every", ""},
		{[]string{"identity", "--events", "0"}, 2, "", "--events"},
		{[]string{"identity", "--person-every", "0"}, 2, "", "--person-every"},
		{[]string{"identity", "--events", "3000", "--batch", "500", "--json"}, 0, `"resolvedPerSec"`, ""},
		{[]string{"delivery", "--help"}, 0, "-slow-delay", ""},
		{[]string{"delivery", "--rate", "0"}, 2, "", "--rate"},
		{[]string{"delivery", "--slow-fail", "1"}, 2, "", "--slow-fail"},
		{[]string{"delivery", "--help"}, 0, "-audience-rate", ""},
		{[]string{"delivery", "--audience-rate", "-1"}, 2, "", "--audience-rate"},
		{[]string{"delivery", "--audience-duration", "0s"}, 2, "", "--audience-duration"},
		{[]string{"nope"}, 2, "", "unknown command"},
		{[]string{"ingest", "--help"}, 0, "-clients", ""},
		{[]string{"sink", "--help"}, 0, "-file", ""},
		{[]string{"ingest", "--clients", "0"}, 2, "", "--clients"},
		{[]string{"ingest", "--clients", "x"}, 2, "", "-clients"},
		{[]string{"ingest", "--batch", "3000"}, 2, "", "--batch"},
		{[]string{"ingest", "--duration", "0s"}, 2, "", "--duration"},
		{[]string{"ingest", "--backlog", "0"}, 2, "", "--backlog"},
		{[]string{"ingest", "--target", "http://x:1"}, 2, "", "--write-key"},
		{[]string{"ingest", "--write-key", "k"}, 2, "", "--target"},
		{[]string{"ingest", "--target", "localhost:8080", "--write-key", "k"}, 2, "", "--target"},
		{[]string{"ingest", "--bogus"}, 2, "", "-bogus"},
		{[]string{"sink", "--file", "f"}, 2, "", "--addr"},
		{[]string{"e2e", "--help"}, 0, "-events-per-profile", ""},
		{[]string{"e2e", "--identifiers", "4"}, 2, "", "--identifiers"},
		{[]string{"e2e", "--events-per-profile", "0"}, 2, "", "--events-per-profile"},
		{[]string{"e2e", "--duration", "500ms"}, 2, "", "--duration"},
		{[]string{"e2e", "--min-rate", "5000", "--max-rate", "100"}, 2, "", "--max-rate"},
		{[]string{"e2e", "--skip-baselines"}, 2, "", "--max-rate"},
		{[]string{"e2e", "--batch", "2501"}, 2, "", "--batch"},
	} {
		var out, errb bytes.Buffer
		code := Main(tc.args, &out, &errb)
		if code != tc.code || !strings.Contains(out.String(), tc.out) || !strings.Contains(errb.String(), tc.err) {
			t.Errorf("Main(%q) = %d\nstdout: %s\nstderr: %s", tc.args, code, out.String(), errb.String())
		}
	}
}

func TestGroup(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 7: "7", 12.34: "12.3", 100: "100", 1234: "1,234", 1234567.6: "1,234,568", -4500: "-4,500"} {
		if got := group(v); got != want {
			t.Errorf("group(%v) = %q, want %q", v, got, want)
		}
	}
}

func TestWriteReport(t *testing.T) {
	rep := &Report{
		Command: "tandem bench ingest", RunID: "r", GOMAXPROCS: 2, NumCPU: 2,
		Flags: reportFlags{options: options{Clients: 16, Batch: 100, Duration: 10 * time.Second}, Duration: "10s", Command: "--clients 16"},
		Phases: []*PhaseResult{
			{Name: "tandem", EventsPerSec: 50000, ServerCPUCores: ptr(1.5), LoadgenCPUCores: ptr(0.3), Errors: map[string]int64{"503": 2}},
			{Name: "collect-only", EventsPerSec: 100000, ServerCPUCores: ptr(0.5)},
			{Name: "sink", EventsPerSec: 200000, ServerCPUCores: ptr(0.4)},
			{Name: "log", EventsPerSec: 400000, InProcess: true, ServerCPUCores: ptr(1.9)},
		},
		Pipeline: &PipelineResult{Samples: 11, StoredPerSec: 45000, LagStart: 0, LagEnd: 3, LagMax: 5, Growing: true},
		Drain:    &DrainResult{Events: 1000000, Seconds: 20, EventsPerSec: 50000},
	}
	rep.Ratios = ratios(rep.Phases)
	var out bytes.Buffer
	writeText(&out, rep)
	for _, want := range []string{"tandem ÷ sink:         0.25×", "tandem ÷ log baseline: 0.12×", "503×2", "growing", "1,000,000 events in 20.00 s = 50,000 events/s", "(in-process)",
		" 5.00 |", " 2.00 |", "collect-only ÷ sink:   0.40× by server CPU per event"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if err := writeJSON(&out, rep); err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(out.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if back["ratios"].(map[string]any)["tandemOverSink"].(float64) != 0.25 {
		t.Errorf("json: %s", out.String())
	}
}

func TestBenchFunnelSmall(t *testing.T) {
	var out, errb bytes.Buffer
	code := Main([]string{"funnel", "--events", "30000", "--profiles", "3000", "--runs", "1", "--json"}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var rep FunnelReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Stored != 30000 || !rep.SameAnswer || len(rep.Funnel) != 4 || rep.Funnel[0].Profiles == 0 || rep.Ratio == nil || len(rep.Queries) != 4 {
		t.Errorf("report: %s", out.Bytes())
	}
}

// With --funnel-only only the funnel and its baseline are timed; the
// appender appends while they run (a batch at least every 100 ms, apart
// by --gap).
func TestBenchFunnelOnlyWhileIngesting(t *testing.T) {
	var out, errb bytes.Buffer
	code := Main([]string{"funnel", "--events", "30000", "--profiles", "3000", "--runs", "2", "--ingest-rate", "2000", "--gap", "200ms", "--funnel-only", "--json"}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var rep FunnelReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	if !rep.SameAnswer || len(rep.Queries) != 2 || rep.Queries[0].Name != "funnel" || rep.Queries[1].Name != "plain-sql" {
		t.Errorf("report: %s", out.Bytes())
	}
	if rep.Ingest == nil || rep.Ingest.Events == 0 || rep.Ingest.Error != "" {
		t.Errorf("ingest while querying: %+v", rep.Ingest)
	}
}

func TestBenchAttributionSmall(t *testing.T) {
	var out, errb bytes.Buffer
	code := Main([]string{"attribution", "--events", "40000", "--profiles", "2000", "--runs", "1", "--json"}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var rep AttributionReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Stored != 40000 || rep.Links == 0 || rep.Conversions == 0 || rep.ScanRows == 0 || len(rep.Queries) != 9 || len(rep.Credits) < 8 {
		t.Errorf("report: %s", out.Bytes())
	}
	channels := map[string]bool{}
	for _, c := range rep.Credits {
		channels[c.Key] = true
	}
	for _, ch := range []string{"paid-search", "e-mail", "display", "social", "affiliate", "organic-search", "referral", "direct", "call-centre"} {
		if !channels[ch] {
			t.Errorf("no credit for %s: %v", ch, rep.Credits)
		}
	}
}
