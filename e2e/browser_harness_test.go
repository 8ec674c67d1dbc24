package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"tandem/testserver"
)

// The browser tests drive Debian's Chromium (never a downloaded one) with
// chromedp. Each run gets a fresh profile, resolves no host name but
// 127.0.0.1 (so a request meant for a vendor's host fails instead of
// leaving the machine), and records every request twice: through the
// DevTools network events of the tab, and in Chromium's own network log,
// which also sees what the tab's events miss, such as the beacon a page
// sends while it is being unloaded.

// browserTimeZone and browserLanguage are not the machine's defaults, so
// that a stored context.timezone or context.locale can only have come
// from the browser.
const (
	browserTimeZone = "Europe/Berlin"
	browserLanguage = "de-DE"
)

// chromiumPath returns the Chromium binary, or ends the test: a skip that
// says what to install, or a failure under TANDEM_TEST_SERVERS=require.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	testserver.Unavailable(t, "Chromium", "no chromium binary in PATH; install it with `apt-get install -y chromium` (Debian/Ubuntu)")
	return ""
}

// seenRequest is one request of the tab as the DevTools events showed it.
type seenRequest struct {
	id     network.RequestID
	method string
	url    string
	kind   network.ResourceType
	body   []byte
	status int64 // 0 until a response came
}

// browser is one Chromium process with one tab.
type browser struct {
	t      *testing.T
	ctx    context.Context // the tab's chromedp context
	netlog string
	closed bool

	mu       sync.Mutex
	requests []*seenRequest
	byID     map[network.RequestID]*seenRequest
	problems []string // failed requests, console errors, exceptions
	console  []string // every console line, for failure reports
}

// startBrowser launches Chromium with a fresh profile and opens a tab with
// the browser's time zone set to browserTimeZone. The browser is closed in
// t.Cleanup if the test does not close it first.
func startBrowser(t *testing.T, exe string) *browser {
	t.Helper()
	dir := t.TempDir()
	b := &browser{t: t, netlog: filepath.Join(dir, "netlog.json"), byID: map[network.RequestID]*seenRequest{}}
	opts := append(slices.Clone(chromedp.DefaultExecAllocatorOptions[:]),
		chromedp.ExecPath(exe),
		chromedp.NoSandbox,
		chromedp.UserDataDir(filepath.Join(dir, "profile")),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"),
		chromedp.Flag("log-net-log", b.netlog),
		chromedp.Flag("accept-lang", browserLanguage), // navigator.language in headless mode
		// The defaults plus Chromium's autofill server: a page with a
		// password field (the dashboard's sign-in) makes the browser ask
		// a vendor's host about the form, in the page's name.
		chromedp.Flag("disable-features", "Translate,BlinkGenPropertyTrees,AutofillServerCommunication"),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	b.ctx = ctx
	t.Cleanup(func() {
		b.close()
		cancelTab()
		cancelAlloc()
	})
	// Listen starts the browser and the tab.
	if err := chromedp.Listen(ctx, b.record); err != nil {
		t.Fatalf("start Chromium (%s): %v", exe, err)
	}
	if _, err := chromedp.Call(ctx, emulation.SetTimezoneOverride, emulation.SetTimezoneOverrideParams{TimezoneID: browserTimeZone}); err != nil {
		t.Fatalf("set the time zone: %v", err)
	}
	return b
}

// record is the tab's event listener; it runs on chromedp's reader
// goroutine and only stores.
func (b *browser) record(ev any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch e := ev.(type) {
	case *network.EventRequestWillBeSent:
		r := &seenRequest{id: e.RequestID, method: e.Request.Method, url: e.Request.URL, kind: e.Type}
		for _, p := range e.Request.PostDataEntries {
			r.body = append(r.body, p.Bytes...)
		}
		b.requests = append(b.requests, r)
		b.byID[e.RequestID] = r
	case *network.EventResponseReceived:
		if r := b.byID[e.RequestID]; r != nil {
			r.status = e.Response.Status
		}
	case *network.EventLoadingFailed:
		what := string(e.RequestID)
		if r := b.byID[e.RequestID]; r != nil {
			what = r.method + " " + r.url
		}
		msg := fmt.Sprintf("request failed: %s: %s", what, e.ErrorText)
		if e.BlockedReason != "" {
			msg += " (blocked: " + string(e.BlockedReason) + ")"
		}
		if e.CorsErrorStatus != nil {
			msg += fmt.Sprintf(" (CORS: %s %s)", e.CorsErrorStatus.CorsError, e.CorsErrorStatus.FailedParameter)
		}
		b.problems = append(b.problems, msg)
	case *runtime.EventConsoleAPICalled:
		var parts []string
		for _, a := range e.Args {
			if len(a.Value) > 0 {
				parts = append(parts, string(a.Value))
			} else {
				parts = append(parts, a.Description)
			}
		}
		line := fmt.Sprintf("console.%s: %s", e.Type, strings.Join(parts, " "))
		b.console = append(b.console, line)
		if e.Type == runtime.ConsoleAPICalledTypeError || e.Type == runtime.ConsoleAPICalledTypeAssert {
			b.problems = append(b.problems, line)
		}
	case *runtime.EventExceptionThrown:
		d := e.ExceptionDetails
		msg := d.Text
		if d.Exception != nil {
			msg += " " + d.Exception.Description
		}
		b.problems = append(b.problems, fmt.Sprintf("uncaught exception at %s:%d: %s", d.URL, d.LineNumber, msg))
	case *cdplog.EventEntryAdded:
		line := fmt.Sprintf("log %s/%s: %s %s", e.Entry.Source, e.Entry.Level, e.Entry.Text, e.Entry.URL)
		b.console = append(b.console, line)
		if e.Entry.Level == cdplog.EntryLevelError {
			b.problems = append(b.problems, line)
		}
	}
}

// do runs actions on the tab with a time limit.
func (b *browser) do(d time.Duration, actions ...chromedp.Action[chromedp.Void]) error {
	ctx, cancel := context.WithTimeout(b.ctx, d)
	defer cancel()
	return chromedp.Do(ctx, actions...)
}

// eval evaluates a JavaScript expression on the tab and decodes its value.
func evalIn[T any](b *browser, d time.Duration, expr string) (T, error) {
	ctx, cancel := context.WithTimeout(b.ctx, d)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[T](expr))
}

// waitFor polls a JavaScript expression until it is truthy and returns its
// value.
func waitFor[T any](b *browser, d time.Duration, expr string) (T, error) {
	ctx, cancel := context.WithTimeout(b.ctx, d+5*time.Second)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Poll[T](expr, chromedp.WithPollingTimeout(d), chromedp.WithPollingInterval(50*time.Millisecond)))
}

// close shuts Chromium down gracefully, which completes its network log.
func (b *browser) close() {
	if b.closed {
		return
	}
	b.closed = true
	ctx, cancel := context.WithTimeout(b.ctx, 15*time.Second)
	defer cancel()
	if err := chromedp.Cancel(ctx); err != nil && ctx.Err() == nil {
		b.t.Logf("close Chromium: %v", err)
	}
}

// snapshot returns copies of what the tab recorded.
func (b *browser) snapshot() (reqs []seenRequest, problems, console []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, r := range b.requests {
		reqs = append(reqs, *r)
	}
	return reqs, slices.Clone(b.problems), slices.Clone(b.console)
}

// netRequest is one request from Chromium's network log.
type netRequest struct {
	Method string
	URL    string
	// Site is the network isolation key: the top-level site the request
	// was made for ("http://127.0.0.1 http://127.0.0.1" for the test's
	// pages), which tells the page's requests from the browser's own
	// background ones.
	Site string
}

// netRequests reads the requests the network log recorded (every
// URL_REQUEST_START_JOB: one per request sent or tried). The log is one
// event per line; a line that does not parse (the constants, a line cut
// short) is skipped.
func (b *browser) netRequests() []netRequest {
	b.t.Helper()
	f, err := os.Open(b.netlog)
	if err != nil {
		b.t.Fatalf("Chromium's network log: %v", err)
	}
	defer f.Close()
	var out []netRequest
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		line := strings.TrimSuffix(strings.TrimSpace(sc.Text()), ",")
		if !strings.Contains(line, `"network_isolation_key"`) {
			continue
		}
		var ev struct {
			Params struct {
				Method string `json:"method"`
				URL    string `json:"url"`
				NIK    string `json:"network_isolation_key"`
			} `json:"params"`
		}
		if json.Unmarshal([]byte(line), &ev) != nil || ev.Params.URL == "" {
			continue
		}
		out = append(out, netRequest{Method: ev.Params.Method, URL: ev.Params.URL, Site: ev.Params.NIK})
	}
	if err := sc.Err(); err != nil {
		b.t.Fatalf("read Chromium's network log: %v", err)
	}
	return out
}

// checkRequests fails the test for every recorded problem (a failed
// request, CORS included; an error answer; a console error; an uncaught
// exception) and for every request of the page to a host other than
// allowed (host:port). It returns the tab's requests and the network
// log's requests of the test's pages. The browser must be closed.
func (b *browser) checkRequests(allowed ...string) ([]seenRequest, []netRequest) {
	b.t.Helper()
	if !b.closed {
		b.t.Fatal("checkRequests before close")
	}
	reqs, problems, console := b.snapshot()
	ok := func(raw string) bool {
		u, err := url.Parse(raw)
		if err != nil {
			return false
		}
		if u.Scheme == "data" || u.Scheme == "blob" || u.Scheme == "about" {
			return true
		}
		return (u.Scheme == "http" || u.Scheme == "https") && slices.Contains(allowed, u.Host)
	}
	for _, r := range reqs {
		if !ok(r.url) {
			b.t.Errorf("the page requested %s %s: not the page's host nor tandem's (%v)", r.method, r.url, allowed)
		}
		if r.status >= 400 {
			b.t.Errorf("%s %s answered %d", r.method, r.url, r.status)
		}
	}
	for _, p := range problems {
		b.t.Errorf("in the browser: %s", p)
	}
	var page []netRequest
	for _, r := range b.netRequests() {
		if !strings.Contains(r.Site, "http://127.0.0.1") {
			continue // the browser's own background requests (all refused by the resolver rules)
		}
		page = append(page, r)
		if !ok(r.URL) {
			b.t.Errorf("network log: the page requested %s %s: not the page's host nor tandem's (%v)", r.Method, r.URL, allowed)
		}
	}
	if len(page) == 0 {
		b.t.Errorf("Chromium's network log has no request of the page; is the log read right?")
	}
	if b.t.Failed() {
		for _, r := range reqs {
			b.t.Logf("tab request: %s %s (%s) → %d", r.method, r.url, r.kind, r.status)
		}
		for _, l := range console {
			b.t.Logf("%s", l)
		}
	}
	return reqs, page
}
