package imports

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"tandem/access"
	"tandem/event"
	"tandem/eventlog"
	"tandem/governance"
	"tandem/quarantine"
	"tandem/statestore"
	"tandem/statestore/sqlite/sqlitetest"
)

func fieldOf(err error) string {
	var fe *statestore.FieldError
	if errors.As(err, &fe) {
		return fe.Field
	}
	return ""
}

// memLog is an event log in memory; failAfter > 0 makes appends fail
// once that many succeeded.
type memLog struct {
	mu        sync.Mutex
	events    []event.Event
	appends   int
	failAfter int
	// overloaded appends are refused with ErrOverloaded first, as a
	// committer whose queue is full refuses them.
	overloaded int
}

var errLogDown = errors.New("memlog: down")

func (l *memLog) Append(ctx context.Context, entries []byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failAfter > 0 && l.appends >= l.failAfter {
		return errLogDown
	}
	if l.overloaded > 0 {
		l.overloaded--
		return fmt.Errorf("%w: queue full", eventlog.ErrOverloaded)
	}
	l.appends++
	evs, probs, err := event.DecodeRecord(append(append([]byte(nil), event.RecordHeader...), entries...))
	if err != nil {
		return err
	}
	if len(probs) > 0 {
		return fmt.Errorf("memlog: %d problems in an import chunk", len(probs))
	}
	l.events = append(l.events, evs...)
	return nil
}

// byID returns the distinct events by messageId, as the event store keeps
// them (first wins), and how many appends repeated one.
func (l *memLog) byID() (map[string]event.Event, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]event.Event{}
	dups := 0
	for _, e := range l.events {
		if _, ok := out[e.MessageID]; ok {
			dups++
			continue
		}
		out[e.MessageID] = e
	}
	return out, dups
}

type fixture struct {
	svc    *Service
	log    *memLog
	quar   *quarantine.Store
	source governance.Source
	admin  access.User
}

func newFixture(t *testing.T, opts Options) *fixture {
	t.Helper()
	db := sqlitetest.Open(t)
	ctx := context.Background()
	migs := append(governance.Migrations(), quarantine.Migrations()...)
	migs = append(migs, Migrations()...)
	if err := db.Migrate(ctx, migs...); err != nil {
		t.Fatal(err)
	}
	gov := governance.NewStore(db)
	admin := access.User{ID: "usr_admin", Name: "admin", Role: access.RoleAdmin}
	src, _, err := gov.CreateSource(ctx, governance.Source{Name: "Call Centre", Kind: "import", Owner: "service"}, admin)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{log: &memLog{}, quar: quarantine.NewStore(db), source: src, admin: admin}
	opts.DB, opts.Log, opts.Quarantine, opts.Sources = db, f.log, f.quar, gov
	opts.RetryBackoff = time.Millisecond
	f.svc = NewService(opts)
	return f
}

// importData creates an import and runs data through it.
func (f *fixture) importData(t *testing.T, spec Spec, data string) Status {
	t.Helper()
	ctx := context.Background()
	if spec.Source == "" {
		spec.Source = f.source.ID
	}
	st, _, err := f.svc.Create(ctx, spec, f.admin)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	st, err = f.svc.Run(ctx, st.ID, strings.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return st
}

func readExample(t *testing.T, dir, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "examples", "import", dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func raw(t *testing.T, e event.Event) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(e.Raw, &m); err != nil {
		t.Fatalf("event JSON: %v: %s", err, e.Raw)
	}
	return m
}

func path(m map[string]any, keys ...string) any {
	var v any = m
	for _, k := range keys {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = mm[k]
	}
	return v
}

func TestExamples(t *testing.T) {
	for _, tc := range []struct {
		dir, mapping, data string
		rows               int
		check              func(t *testing.T, evs []event.Event)
	}{
		{"call-centre", "mapping.yaml", "contacts.csv", 5, func(t *testing.T, evs []event.Event) {
			e := evs[0]
			m := raw(t, e)
			if e.Type != "track" || e.Name != "Call Centre Contact" || e.AnonymousID != "phone:+49301234567" || e.UserID != "" {
				t.Errorf("first contact: %+v", e)
			}
			// 02.05.2024 09:14 in Berlin (CEST, +02:00).
			if want := time.Date(2024, 5, 2, 7, 14, 0, 0, time.UTC); !e.Timestamp.Equal(want) {
				t.Errorf("timestamp %v, want %v", e.Timestamp, want)
			}
			if path(m, "context", "traits", "email") != "anna.schmidt@example.com" || path(m, "context", "traits", "crm_id") != "CRM-5521" ||
				path(m, "context", "traits", "phone") != "+49301234567" || path(m, "context", "traits", "name") != "Anna Schmidt" {
				t.Errorf("traits: %v", path(m, "context", "traits"))
			}
			if path(m, "properties", "outcome") != "gelöst" || path(m, "properties", "duration_minutes") != 5.2 {
				t.Errorf("Latin-1 or decimal comma: %v", m["properties"])
			}
			if m["channel"] != "call-centre" || path(m, "context", "department") != "service" {
				t.Errorf("channel %v, department %v", m["channel"], path(m, "context", "department"))
			}
			if evs[1].AnonymousID != "phone:+49897654321" || evs[3].AnonymousID != "email:lars.berg@example.se" {
				t.Errorf("anonymousIds %q, %q", evs[1].AnonymousID, evs[3].AnonymousID)
			}
		}},
		{"field-service", "mapping.yaml", "jobs.csv", 5, func(t *testing.T, evs []event.Event) {
			if evs[0].Name != "Service Job Scheduled" || evs[1].Name != "Service Job Completed" || evs[4].Name != "Service Job Cancelled" {
				t.Errorf("names from a column: %q %q %q", evs[0].Name, evs[1].Name, evs[4].Name)
			}
			m := raw(t, evs[1])
			if path(m, "properties", "parts_cost") != 129.9 || path(m, "properties", "first_time_fix") != true {
				t.Errorf("typed properties: %v", m["properties"])
			}
			if _, ok := path(m, "properties").(map[string]any)["technician"]; !ok {
				t.Errorf("technician missing: %v", m["properties"])
			}
			if _, ok := raw(t, evs[4])["properties"].(map[string]any)["technician"]; ok {
				t.Errorf("an empty cell must be left out")
			}
			if evs[2].AnonymousID != "crm_id:CRM-7730" {
				t.Errorf("anonymousId %q", evs[2].AnonymousID)
			}
		}},
		{"shop", "mapping.json", "purchases.ndjson", 4, func(t *testing.T, evs []event.Event) {
			if evs[0].UserID != "user-42" || evs[1].UserID != "" || evs[1].AnonymousID != "loyalty_card:LC-004417" {
				t.Errorf("ids: %q %q %q", evs[0].UserID, evs[1].UserID, evs[1].AnonymousID)
			}
			m := raw(t, evs[0])
			if path(m, "context", "traits", "email") != "anna.schmidt@example.com" || path(m, "properties", "revenue") != 49.9 ||
				path(m, "properties", "items") != 3.0 || m["channel"] != "store" {
				t.Errorf("event: %s", evs[0].Raw)
			}
		}},
	} {
		t.Run(tc.dir, func(t *testing.T) {
			f := newFixture(t, Options{})
			st := f.importData(t, Spec{Mapping: readExample(t, tc.dir, tc.mapping)}, string(readExample(t, tc.dir, tc.data)))
			if st.Status != Completed || st.RowsImported != int64(tc.rows) || st.RowsFailed != 0 {
				t.Fatalf("status %+v", st)
			}
			if len(f.log.events) != tc.rows {
				t.Fatalf("%d events in the log, want %d", len(f.log.events), tc.rows)
			}
			for _, e := range f.log.events {
				// Every event is one collection would accept as it is.
				got, p := event.ParseEvent("", e.Raw, e.ReceivedAt, "")
				if p != nil {
					t.Fatalf("event not valid Segment: %s: %s", p.Message, e.Raw)
				}
				if got.MessageID != e.MessageID || got.UserID != e.UserID || got.AnonymousID != e.AnonymousID ||
					got.Name != e.Name || !got.Timestamp.Equal(e.Timestamp) || e.SourceID != f.source.ID {
					t.Fatalf("event fields differ from its JSON: %+v vs %+v", e, got)
				}
				if !strings.HasPrefix(e.MessageID, "imp-") {
					t.Fatalf("messageId %q", e.MessageID)
				}
			}
			tc.check(t, f.log.events)

			// The same file again stores nothing new: same messageIds.
			before, _ := f.log.byID()
			f.importData(t, Spec{Mapping: readExample(t, tc.dir, tc.mapping)}, string(readExample(t, tc.dir, tc.data)))
			after, dups := f.log.byID()
			if len(after) != len(before) || dups != tc.rows {
				t.Fatalf("re-import: %d distinct events (had %d), %d repeats", len(after), len(before), dups)
			}
		})
	}
}

const brokenMapping = `
event: Visit
key: id
timestamp: {column: at, format: YYYY-MM-DD}
identifiers: {email: email, phone: phone}
properties: {amount: {column: amount, type: number}}
`

func TestBrokenRows(t *testing.T) {
	f := newFixture(t, Options{ChunkRows: 3})
	data := "id,at,email,phone,amount\n" +
		"1,2024-01-01,a@example.com,,1\n" + // line 2 ok
		"2,2024-13-45,b@example.com,,2\n" + // line 3 bad date
		"3,2024-01-03,,,3\n" + // line 4 no identifier
		"4,2024-01-04,d@example.com\n" + // line 5 wrong column count
		"5,2024-01-05,e@example.com,,\"multi\nline\"\n" + // line 6-7: bad number, quoted newline
		"6,2024-01-06,f@example.com,,6\n" + // line 8 ok
		"7,2024-01-07,not-an-email,,7\n" + // line 9 bad identifier
		"8,2024-01-08,h@example.com,,8 \"x\n" + // line 10 bare quote
		"9,2024-01-09,,+49 (30) 555-0101,9\n" // line 11 ok
	st := f.importData(t, Spec{Mapping: []byte(brokenMapping), Key: "k1"}, data)
	if st.Status != Completed || st.RowsImported != 3 || st.RowsFailed != 6 {
		t.Fatalf("status: %+v", st)
	}
	want := []struct {
		line         int
		column, code string
	}{
		{3, "at", "invalid_timestamp"},
		{4, "email,phone", "missing_identifier"},
		{5, "", "column_count"},
		{6, "amount", "invalid_number"},
		{9, "email", "invalid_identifier"},
		{10, "", "csv_syntax"},
	}
	if len(st.Errors) != len(want) {
		t.Fatalf("errors: %+v", st.Errors)
	}
	for i, w := range want {
		e := st.Errors[i]
		if e.Line != w.line || e.Column != w.column || e.Code != w.code || e.Message == "" || e.MessageID == "" {
			t.Errorf("error %d: %+v, want line %d column %q code %s", i, e, w.line, w.column, w.code)
		}
	}
	evs, _ := f.log.byID()
	if len(evs) != 3 {
		t.Fatalf("%d events, want 3", len(evs))
	}
	// Every failed row is in the quarantine with its original bytes.
	entries, _, err := f.quar.List(context.Background(), quarantine.Filter{SourceID: f.source.ID}, 100, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(want) {
		t.Fatalf("%d quarantine entries, want %d", len(entries), len(want))
	}
	rawByLine := map[int]string{}
	for _, e := range entries {
		rawByLine[e.Index] = string(e.Raw)
	}
	if rawByLine[3] != "2,2024-13-45,b@example.com,,2" || rawByLine[5] != "4,2024-01-04,d@example.com" ||
		rawByLine[6] != "5,2024-01-05,e@example.com,,\"multi\nline\"" {
		t.Errorf("quarantined rows: %v", rawByLine)
	}

	// Importing the same data again (a new import) adds no quarantine entry.
	f.importData(t, Spec{Mapping: []byte(brokenMapping), Key: "k1", Restart: true}, data)
	if n, _ := f.quar.Count(context.Background(), quarantine.Filter{}); n != len(want) {
		t.Fatalf("%d quarantine entries after a re-import, want %d", n, len(want))
	}
}

func TestMaxErrorsAborts(t *testing.T) {
	f := newFixture(t, Options{ChunkRows: 2})
	var b strings.Builder
	b.WriteString("id,at,email,phone,amount\n")
	for i := range 20 {
		date := "2024-01-01"
		if i%4 == 3 {
			date = "bad"
		}
		fmt.Fprintf(&b, "%d,%s,u%d@example.com,,%d\n", i, date, i, i)
	}
	two := 2
	st := f.importData(t, Spec{Mapping: []byte(brokenMapping), MaxErrors: &two}, b.String())
	// Rows 3, 7, 11 fail (lines 5, 9, 13): the third error aborts after line 13.
	if st.Status != Aborted || st.Error == nil || st.Error.Code != "too_many_errors" || st.RowsFailed != 3 || st.RowsImported != 9 {
		t.Fatalf("status %+v", st)
	}
	if st.Resume.Line != 13 || st.Resume.Rows != 12 {
		t.Fatalf("resume point %+v", st.Resume)
	}
}

func TestResumeAfterLogFailure(t *testing.T) {
	f := newFixture(t, Options{ChunkRows: 100, InFlight: 3, SaveEvery: time.Nanosecond})
	var b strings.Builder
	b.WriteString("id,at,email,phone,amount\n")
	const n = 5000
	for i := range n {
		date := "2024-01-02"
		if i%997 == 5 {
			date = "2024-02-31"
		}
		fmt.Fprintf(&b, "%d,%s,u%d@example.com,,%d\n", i, date, i, i)
	}
	data := b.String()
	f.log.failAfter = 20
	spec := Spec{Mapping: []byte(brokenMapping), Key: "file-sha"}
	st := f.importData(t, spec, data)
	if st.Status != Interrupted || st.RowsImported == 0 || st.RowsImported >= n {
		t.Fatalf("first attempt: %+v", st)
	}
	firstRows := st.Resume.Rows
	f.log.failAfter = 0
	st = f.importData(t, spec, data)
	if st.Status != Completed || st.Attempts != 2 || st.RowsSkipped != firstRows {
		t.Fatalf("second attempt: %+v (first stopped at %d rows)", st, firstRows)
	}
	evs, dups := f.log.byID()
	bad := 0
	for i := range n {
		if i%997 == 5 {
			bad++
		}
	}
	if len(evs) != n-bad || st.RowsImported != int64(n-bad) || st.RowsFailed != int64(bad) {
		t.Fatalf("%d distinct events, imported %d, failed %d; want %d and %d", len(evs), st.RowsImported, st.RowsFailed, n-bad, bad)
	}
	// Appends run concurrently, so a few chunks after the failed one may
	// have landed; the second attempt sends them again and the event
	// store keeps one of each (same messageId). No more than the chunks
	// in flight are repeated.
	if dups > 4*100 {
		t.Fatalf("%d events appended twice, more than the chunks in flight", dups)
	}
	if nq, _ := f.quar.Count(context.Background(), quarantine.Filter{}); nq != bad {
		t.Fatalf("%d quarantine entries, want %d", nq, bad)
	}
	// Different data under the same key is refused, not half-skipped.
	spec.Restart = false
	st = f.importData(t, spec, strings.Replace(data, "u1@", "x1@", 1))
	if st.Status != Failed || st.Error == nil || st.Error.Code != "resume_mismatch" {
		t.Fatalf("changed data: %+v", st)
	}
}

// TestWaitsWhileLogOverloaded: an import whose appends find the log's
// queue full waits for room, however long that lasts, instead of counting
// it as a failure and stopping.
func TestWaitsWhileLogOverloaded(t *testing.T) {
	f := newFixture(t, Options{ChunkRows: 100, InFlight: 2})
	f.log.overloaded = 3 * f.svc.opts.AppendRetries // more than a failing log is retried
	var b strings.Builder
	b.WriteString("id,at,email,phone,amount\n")
	const n = 500
	for i := range n {
		fmt.Fprintf(&b, "%d,2024-01-02,u%d@example.com,,%d\n", i, i, i)
	}
	st := f.importData(t, Spec{Mapping: []byte(brokenMapping), Key: "overload"}, b.String())
	if st.Status != Completed || st.RowsImported != n || st.Attempts != 1 {
		t.Fatalf("import while the log was overloaded: %+v", st)
	}
	if evs, _ := f.log.byID(); len(evs) != n {
		t.Fatalf("%d events in the log, want %d", len(evs), n)
	}
	if f.log.overloaded != 0 {
		t.Fatalf("%d refusals left: the import did not go through them", f.log.overloaded)
	}
}

func TestNDJSONSegmentEvents(t *testing.T) {
	f := newFixture(t, Options{})
	data := `{"type":"track","event":"Legacy Order","userId":"u1","timestamp":"2020-01-02T03:04:05Z","messageId":"m-1","context":{"ip":"198.51.100.77"}}
{"type":"identify","userId":"u2","traits":{"email":"x@example.com"}}

{"type":"track","userId":"u3"}
not json
`
	st := f.importData(t, Spec{Format: "ndjson"}, data)
	if st.RowsImported != 2 || st.RowsFailed != 2 {
		t.Fatalf("status %+v", st)
	}
	if st.Errors[0].Line != 4 || st.Errors[0].Code != "missing_field" || st.Errors[1].Line != 5 {
		t.Fatalf("errors %+v", st.Errors)
	}
	evs := f.log.events
	if evs[0].MessageID != "m-1" || !strings.HasPrefix(evs[1].MessageID, "imp-") || evs[0].Timestamp.Year() != 2020 {
		t.Fatalf("events %+v", evs)
	}
	// The source's ipPolicy (by default truncate) applies before the log.
	if !strings.Contains(string(evs[0].Raw), `"ip":"198.51.100.0"`) || strings.Contains(string(evs[0].Raw), "198.51.100.77") {
		t.Errorf("context.ip not minimised: %s", evs[0].Raw)
	}
}

func TestCreateErrors(t *testing.T) {
	f := newFixture(t, Options{})
	ctx := context.Background()
	for _, tc := range []struct {
		spec  Spec
		field string
	}{
		{Spec{Source: "nope", Format: "ndjson"}, "source"},
		{Spec{Source: f.source.ID}, "mapping"},
		{Spec{Source: f.source.ID, Format: "xml"}, "format"},
		{Spec{Source: f.source.ID, Mapping: []byte("event: X\ntimestamp: t\nidentifiers: {email: e}\nbogus: 1\n")}, "mapping.bogus"},
		{Spec{Source: f.source.ID, Mapping: []byte(brokenMapping), Encoding: "ebcdic"}, "encoding"},
	} {
		_, _, err := f.svc.Create(ctx, tc.spec, f.admin)
		var me *MappingError
		field := ""
		if errors.As(err, &me) {
			field = me.Field
		} else if fe := fieldOf(err); fe != "" {
			field = fe
		}
		if field != tc.field {
			t.Errorf("%+v: error %v, want one naming %s", tc.spec, err, tc.field)
		}
	}
	// By name, ignoring case.
	if _, _, err := f.svc.Create(ctx, Spec{Source: "call centre", Format: "ndjson"}, f.admin); err != nil {
		t.Errorf("by name: %v", err)
	}
	// A mapped column missing from the header fails the import, naming it.
	st, _, err := f.svc.Create(ctx, Spec{Source: f.source.ID, Mapping: []byte(brokenMapping)}, f.admin)
	if err != nil {
		t.Fatal(err)
	}
	st, err = f.svc.Run(ctx, st.ID, strings.NewReader("id,at,email\n1,2024-01-01,a@example.com\n"), -1)
	var me *MappingError
	if !errors.As(err, &me) || me.Field != "mapping.identifiers.phone" || st.Status != Failed {
		t.Fatalf("missing column: %v, %+v", err, st)
	}
}

// TestConsentColumns: a mapping's consent key puts the row's decisions in
// context.consent.categoryPreferences; an empty cell decides nothing, a
// cell that is not a boolean fails the row.
func TestConsentColumns(t *testing.T) {
	f := newFixture(t, Options{})
	mapping := `
type: identify
key: id
timestamp: {column: at, format: YYYY-MM-DD}
identifiers: {email: email}
consent: {Advertising: ads, Analytics: stats}
`
	data := "id,at,email,ads,stats\n" +
		"1,2024-01-01,a@example.com,yes,false\n" +
		"2,2024-01-02,b@example.com,,\n" +
		"3,2024-01-03,c@example.com,maybe,true\n"
	st := f.importData(t, Spec{Mapping: []byte(mapping), Key: "c1"}, data)
	if st.RowsImported != 2 || st.RowsFailed != 1 || st.Errors[0].Line != 4 || st.Errors[0].Column != "ads" {
		t.Fatalf("status %+v", st)
	}
	evs := f.log.events
	if got := path(raw(t, evs[0]), "context", "consent", "categoryPreferences"); !reflect.DeepEqual(got, map[string]any{"Advertising": true, "Analytics": false}) {
		t.Errorf("row 1 consent: %v", got)
	}
	if got := path(raw(t, evs[1]), "context", "consent"); got != nil {
		t.Errorf("row 2 (empty cells) consent: %v", got)
	}
	if _, err := ParseMapping([]byte("event: X\ntimestamp: at\nidentifiers: {email: email}\nconsent: {Advertising: {column: ads, type: number}}\n")); !errors.As(err, new(*MappingError)) || err.(*MappingError).Field != "mapping.consent.Advertising.type" {
		t.Errorf("consent column typed number: %v", err)
	}
}
