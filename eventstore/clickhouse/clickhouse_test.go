package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"tandem/event"
	"tandem/eventstore"
	"tandem/eventstore/storetest"
	"tandem/testserver"
)

func TestMain(m *testing.M) { testserver.Main(m) }

func open(t testing.TB, url string) *Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Open(ctx, url)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) eventstore.Store { return open(t, testserver.ClickHouse(t)) })
}

// RunDurable's dir stands for the database: each dir gets one, and
// reopening means a new Store on the same database.
func TestContractDurable(t *testing.T) {
	var mu sync.Mutex
	dbs := map[string]string{}
	storetest.RunDurable(t, func(t *testing.T, dir string) eventstore.Store {
		mu.Lock()
		u, ok := dbs[dir]
		if !ok {
			u = testserver.ClickHouse(t)
			dbs[dir] = u
		}
		mu.Unlock()
		return open(t, u)
	})
}

func testEvent(src, msg string, ts time.Time) event.Event {
	return event.Event{
		SourceID: src, MessageID: msg, Type: "track", Name: "Viewed", UserID: "u1",
		Timestamp: ts, ReceivedAt: ts,
		Raw: []byte(`{"type":"track","event":"Viewed","userId":"u1"}`),
	}
}

func TestSchemaVersion(t *testing.T) {
	u := testserver.ClickHouse(t)
	s := open(t, u)
	ctx := context.Background()
	if v, err := s.schemaVersion(ctx); err != nil || v != len(migrations) {
		t.Fatalf("schema version %d (%v), want %d", v, err, len(migrations))
	}
	// Opening again applies nothing and records nothing twice.
	s2 := open(t, u)
	var rows uint64
	if err := s2.conn.QueryRow(ctx, "SELECT count() FROM "+s2.table("schema_version")).Scan(&rows); err != nil || rows != uint64(len(migrations)) {
		t.Fatalf("schema_version has %d rows (%v), want %d", rows, err, len(migrations))
	}
	s2.Close()
	if err := s.conn.Exec(ctx, fmt.Sprintf("INSERT INTO %s (version) SELECT toUInt32(%d)", s.table("schema_version"), len(migrations)+1)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err := Open(ctx, u); err == nil {
		s.Close()
		t.Fatal("Open of a database with a newer schema succeeded")
	} else if !strings.Contains(err.Error(), "newer") {
		t.Fatalf("Open: %v", err)
	}
}

// Open creates the database when it does not exist.
func TestOpenCreatesDatabase(t *testing.T) {
	u := testserver.ClickHouse(t)
	nu := u + "_new"
	s := open(t, nu)
	defer func() {
		s.conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+s.db)
		s.Close()
	}()
	if n, err := s.Count(context.Background()); err != nil || n != 0 {
		t.Fatalf("Count = %d, %v", n, err)
	}
}

func TestOpenBadURL(t *testing.T) {
	ctx := context.Background()
	for _, u := range []string{"postgres://x/y", "clickhouse://", "::::", "clickhouse://u:hunter2@/db"} {
		s, err := Open(ctx, u)
		if err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded", u)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("Open(%q) error shows the password: %v", u, err)
		}
	}
}

// No error shows the password: not a failed login, not an unreachable
// server, not a failure after the store is open.
func TestErrorsRedactPassword(t *testing.T) {
	u, err := url.Parse(testserver.ClickHouse(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const secret = "pa$$w0rd/with?odd@chars"

	wrong := *u
	wrong.User = url.UserPassword(testserver.ClickHouseUser, secret)
	_, err = Open(ctx, wrong.String())
	if err == nil {
		t.Fatal("Open with a wrong password succeeded")
	}
	checkRedacted(t, err, secret)
	if !strings.Contains(err.Error(), wrong.Redacted()) {
		t.Errorf("error does not name the redacted URL %s: %v", wrong.Redacted(), err)
	}

	closed := wrong
	closed.Host = "127.0.0.1:1"
	_, err = Open(ctx, closed.String())
	if err == nil {
		t.Fatal("Open of a closed port succeeded")
	}
	checkRedacted(t, err, secret)

	// The right password works; later errors do not show it either.
	good := *u
	good.User = url.UserPassword(testserver.ClickHouseUser, testserver.ClickHousePassword)
	s := open(t, good.String())
	defer s.Close()
	if _, err := s.Count(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.conn.Exec(ctx, "SELECT "+quote(testserver.ClickHousePassword)+" FROM no_such_table"); err == nil {
		t.Fatal("query of a missing table succeeded")
	} else {
		err = s.wrap("probe", err)
		checkRedacted(t, err, testserver.ClickHousePassword)
	}
}

func checkRedacted(t *testing.T, err error, secret string) {
	t.Helper()
	for _, form := range []string{secret, url.QueryEscape(secret), url.PathEscape(secret)} {
		if strings.Contains(err.Error(), form) {
			t.Errorf("error shows the password (%q): %v", form, err)
		}
	}
}

// Two Stores on one database (as two handles of one process) appending the
// same events concurrently end with one copy of each.
func TestTwoHandlesConcurrentAppend(t *testing.T) {
	u := testserver.ClickHouse(t)
	a, b := open(t, u), open(t, u)
	defer a.Close()
	defer b.Close()
	ctx := context.Background()
	base := time.Date(2025, 5, 1, 0, 0, 0, 0, time.UTC)
	const batches, size = 10, 200
	mk := func(i int) []event.Event {
		evs := make([]event.Event, size)
		for j := range evs {
			evs[j] = testEvent("src", fmt.Sprintf("m-%d-%d", i, j), base.Add(time.Duration(i*size+j)*time.Second))
		}
		return evs
	}
	var wg sync.WaitGroup
	totals := make([]int, 2)
	for h, s := range []*Store{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range batches {
				n, err := s.Append(ctx, mk(i))
				if err != nil {
					t.Errorf("handle %d: Append: %v", h, err)
					return
				}
				totals[h] += n
			}
		}()
	}
	wg.Wait()
	if got := totals[0] + totals[1]; got != batches*size {
		t.Errorf("Appends returned %d new in total, want %d", got, batches*size)
	}
	if n, err := a.Count(ctx); err != nil || n != batches*size {
		t.Errorf("Count = %d, %v; want %d", n, err, batches*size)
	}
	var dups uint64
	if err := a.conn.QueryRow(ctx, "SELECT count() FROM (SELECT source_id, message_id FROM "+a.table("events")+
		" GROUP BY source_id, message_id HAVING count() > 1)").Scan(&dups); err != nil || dups != 0 {
		t.Errorf("%d keys stored more than once (%v)", dups, err)
	}
}

// A batch spanning months is one part per month; each month's rows are
// stored whole and the batch's dedup works across them.
func TestBatchAcrossPartitions(t *testing.T) {
	s := open(t, testserver.ClickHouse(t))
	defer s.Close()
	ctx := context.Background()
	var evs []event.Event
	for m := range 3 {
		for i := range 100 {
			evs = append(evs, testEvent("src", fmt.Sprintf("m%d-%d", m, i), time.Date(2025, time.Month(1+m), 10, 0, 0, i, 0, time.UTC)))
		}
	}
	if n, err := s.Append(ctx, evs); err != nil || n != len(evs) {
		t.Fatalf("Append = %d, %v", n, err)
	}
	var parts uint64
	if err := s.conn.QueryRow(ctx, "SELECT count() FROM system.parts WHERE active AND database = "+quote(strings.Trim(s.db, "`"))+" AND table = 'events'").Scan(&parts); err != nil || parts != 3 {
		t.Errorf("%d parts (%v), want 3 (one per month)", parts, err)
	}
	if n, err := s.Append(ctx, evs); err != nil || n != 0 {
		t.Fatalf("second Append = %d, %v", n, err)
	}
}

// A partially stored batch (as a crash between months would leave it) is
// completed exactly once by the retry.
func TestRetryAfterPartialBatch(t *testing.T) {
	s := open(t, testserver.ClickHouse(t))
	defer s.Close()
	ctx := context.Background()
	var evs []event.Event
	for m := range 2 {
		for i := range 50 {
			evs = append(evs, testEvent("src", fmt.Sprintf("m%d-%d", m, i), time.Date(2024, time.Month(11+m), 3, 0, 0, i, 0, time.UTC)))
		}
	}
	// Simulate the crash: keys of the whole batch, events of one month.
	batch := prepare(evs)
	if err := s.insertKeys(ctx, batch); err != nil {
		t.Fatal(err)
	}
	if err := s.insertEvents(batch[:50]); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Append(ctx, evs); err != nil || n != 50 {
		t.Fatalf("retry Append = %d, %v; want 50 new", n, err)
	}
	if n, err := s.Count(ctx); err != nil || n != 100 {
		t.Fatalf("Count = %d, %v; want 100", n, err)
	}
}

// Byte strings that are not UTF-8, and NULs, are stored exactly.
func TestBinaryStrings(t *testing.T) {
	s := open(t, testserver.ClickHouse(t))
	defer s.Close()
	ctx := context.Background()
	e := testEvent("s\x00rc", "m\xff'\\1?", time.Now())
	e.Name = "bad\xfe\n"
	e.Raw = []byte("{\"type\":\"track\",\"event\":\"bad\xfe\"}")
	if n, err := s.Append(ctx, []event.Event{e}); err != nil || n != 1 {
		t.Fatalf("Append = %d, %v", n, err)
	}
	got, err := s.Get(ctx, e.SourceID, e.MessageID)
	if err != nil {
		t.Fatal(err)
	}
	if got[0].SourceID != e.SourceID || got[0].MessageID != e.MessageID || got[0].Name != e.Name || string(got[0].Raw) != string(e.Raw) {
		t.Fatalf("got %q %q %q %q", got[0].SourceID, got[0].MessageID, got[0].Name, got[0].Raw)
	}
	p, err := s.List(ctx, eventstore.Query{SourceID: e.SourceID, Name: e.Name})
	if err != nil || len(p.Events) != 1 {
		t.Fatalf("List = %d events, %v", len(p.Events), err)
	}
	if n, err := s.Append(ctx, []event.Event{e}); err != nil || n != 0 {
		t.Fatalf("second Append = %d, %v", n, err)
	}
}

// A key row without its event (an INSERT of events that failed after the
// keys were written) does not make the event a duplicate.
func TestOrphanKeyIsNotADuplicate(t *testing.T) {
	s := open(t, testserver.ClickHouse(t))
	defer s.Close()
	ctx := context.Background()
	e := testEvent("src", "m1", time.Now())
	if err := s.insertKeys(ctx, prepare([]event.Event{e})); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Append(ctx, []event.Event{e}); err != nil || n != 1 {
		t.Fatalf("Append = %d, %v; want 1 new", n, err)
	}
	if n, err := s.Append(ctx, []event.Event{e}); err != nil || n != 0 {
		t.Fatalf("second Append = %d, %v; want 0", n, err)
	}
}

// Two copies of an event (two processes racing, see Append) read as one,
// the first stored.
func TestCopiesReadAsFirst(t *testing.T) {
	s := open(t, testserver.ClickHouse(t))
	defer s.Close()
	ctx := context.Background()
	first := testEvent("src", "m1", time.Date(2025, 2, 1, 0, 0, 0, 0, time.UTC))
	second := first
	second.Name = "Second"
	for i, e := range []event.Event{first, second} {
		b := prepare([]event.Event{e})
		if err := s.insertKeys(ctx, b); err != nil {
			t.Fatal(err)
		}
		if err := s.insertEvents(b); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			time.Sleep(2 * time.Millisecond) // a later stored_at
		}
	}
	got, err := s.Get(ctx, "src", "m1")
	if err != nil || len(got) != 1 || got[0].Name != "Viewed" {
		t.Fatalf("Get = %v, %v; want the first copy only", got, err)
	}
	p, err := s.List(ctx, eventstore.Query{})
	if err != nil || len(p.Events) != 1 || p.Events[0].Name != "Viewed" {
		t.Fatalf("List = %v, %v; want the first copy only", p.Events, err)
	}
}

func TestClosed(t *testing.T) {
	s := open(t, testserver.ClickHouse(t))
	storetest.RunClosed(t, s, ErrClosed)
	if err := s.Ping(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Ping after Close: %v", err)
	}
}

// A server that goes away fails calls with errors (no hang), and the same
// Store works again once it is back.
func TestServerRestart(t *testing.T) {
	srv := testserver.StartClickHouse(t)
	s := open(t, srv.NewDatabase(t))
	defer s.Close()
	ctx := context.Background()
	base := time.Date(2025, 7, 1, 0, 0, 0, 0, time.UTC)
	if n, err := s.Append(ctx, []event.Event{testEvent("src", "before", base)}); err != nil || n != 1 {
		t.Fatalf("Append = %d, %v", n, err)
	}
	srv.Stop()
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	if _, err := s.Append(cctx, []event.Event{testEvent("src", "during", base)}); err == nil {
		t.Error("Append with the server stopped succeeded")
	}
	if err := s.Ping(cctx); err == nil {
		t.Error("Ping with the server stopped succeeded")
	}
	cancel()
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		n, err := s.Append(ctx, []event.Event{testEvent("src", "during", base), testEvent("src", "before", base)})
		if err == nil {
			if n != 1 {
				t.Fatalf("Append after restart = %d new, want 1", n)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Append after restart: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if n, err := s.Count(ctx); err != nil || n != 2 {
		t.Fatalf("Count = %d, %v; want 2", n, err)
	}
}

func TestQuote(t *testing.T) {
	for in, want := range map[string]string{
		"":           `''`,
		"abc":        `'abc'`,
		`it's`:       `'it\'s'`,
		`a\b`:        `'a\\b'`,
		"\x00\n\xff": `'\x00\x0a\xff'`,
		"é":          `'\xc3\xa9'`,
	} {
		if got := quote(in); got != want {
			t.Errorf("quote(%q) = %s, want %s", in, got, want)
		}
	}
}

// The store's cursors carry its own tag: a DuckDB cursor (or any other
// store's) is refused.
func TestCursorTag(t *testing.T) {
	s := open(t, testserver.ClickHouse(t))
	defer s.Close()
	other := eventstore.Cursor{Micros: 1, Source: "s", MessageID: "m"}.Encode(cursorTag + 1)
	if _, err := s.List(context.Background(), eventstore.Query{Cursor: other}); !errors.Is(err, eventstore.ErrBadCursor) {
		t.Fatalf("List with another store's cursor: %v, want ErrBadCursor", err)
	}
}
