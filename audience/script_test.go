package audience_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"tandem/audience"
	"tandem/event"
	"tandem/eventstore/duckdb"
	"tandem/identity"
	"tandem/statestore"
	"tandem/statestore/statetest"
	"tandem/testserver"
)

var update = flag.Bool("update", false, "rewrite the expected output of the scripts")

// TestMain stops the test servers TestScripts started.
func TestMain(m *testing.M) { testserver.Main(m) }

// TestScripts runs testdata/*.txt (events in, computed trait values out)
// on every state store backend. A script is blocks separated by blank
// lines: a command line, input lines, and after "----" the expected
// output; # lines are comments. Commands:
//
//	now DAY HH:MM               set the clock (DAY counts from 2024-06-01 = 0)
//	define NAME KIND EVENT [property=P] [window=W]   output: the error, if any
//	events                      input: "MSG DAY HH:MM NAME [user=U] [anon=A] [PROPS-JSON]"
//	record [twice]              resolve identities, record and store the events given since the last record
//	store                       resolve and store the events given, without recording them (backfill input)
//	values IDENT                output: the computed traits of the profile holding IDENT (TYPE:VALUE)
//	audience NAME RULE          define an audience (the rule may go on over input lines); output: the error, if any
//	sweep                       evaluate audiences as time passes
//	changes                     output: the membership events emitted since the last changes
//	members NAME                output: the audience's members (their event keys), read a page of 1 at a time
//	in IDENT                    output: the audiences of the profile holding IDENT
//	expire DAY HH:MM            retention: remove what is kept of events before then; output: rows removed
//	delete NAME
//	unmerge IDENT TYPE:VALUE    keep TYPE:VALUE apart, then evaluate the audiences of both sides (as the API does)
//
// The lifecycle stages are awareness (Ad Clicked), purchase (Order
// Completed) and service (Ticket Opened).
//
// Run with -update to rewrite expected outputs.
func TestScripts(t *testing.T) {
	statetest.Each(t, func(t *testing.T, open func(t *testing.T) *statestore.DB) {
		files, _ := filepath.Glob("testdata/*.txt")
		if len(files) == 0 {
			t.Fatal("no scripts")
		}
		for _, f := range files {
			t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) {
				t.Parallel()
				runScript(t, f, open(t))
			})
		}
	})
}

var day0 = time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)

type script struct {
	t       *testing.T
	ids     *identity.Store
	traits  *audience.Store
	events  *duckdb.Store
	pending []event.Event
	now     time.Time
	byName  map[string]string
	auds    *audience.Audiences
	log     *memLog
	audIDs  map[string]string
}

// memLog keeps the membership events appended, as the test's event log.
type memLog struct{ events []event.Event }

func (l *memLog) Append(_ context.Context, entries []byte) error {
	evs, _, err := event.DecodeRecord(append(append([]byte(nil), event.RecordHeader...), entries...))
	l.events = append(l.events, evs...)
	return err
}

func runScript(t *testing.T, file string, db *statestore.DB) {
	ctx := context.Background()
	if err := db.Migrate(ctx, append(identity.Migrations(), audience.Migrations()...)...); err != nil {
		t.Fatal(err)
	}
	ids, err := identity.NewStore(ctx, db, identity.Options{Rules: identity.DefaultRules()})
	if err != nil {
		t.Fatal(err)
	}
	events, err := duckdb.Open(":memory:")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { events.Close() })
	s := &script{t: t, ids: ids, events: events, now: day0, byName: map[string]string{}}
	s.traits = audience.NewStore(db, ids, s.events).WithClock(func() time.Time { return s.now }).WithStages([]audience.Stage{
		{Name: "awareness", Events: []string{"Ad Clicked"}},
		{Name: "purchase", Events: []string{"Order Completed"}},
		{Name: "service", Events: []string{"Ticket Opened"}},
	})
	s.log, s.audIDs = &memLog{}, map[string]string{}
	s.auds = audience.NewAudiences(db, s.traits, ids, s.log, nil).WithClock(func() time.Time { return s.now })
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	changed := false
	for _, block := range strings.Split(strings.ReplaceAll(string(b), "\r\n", "\n"), "\n\n") {
		lines := strings.Split(strings.Trim(block, "\n"), "\n")
		i := 0
		for i < len(lines) && strings.HasPrefix(lines[i], "#") {
			i++
		}
		head, lines := lines[:i], lines[i:]
		if len(lines) == 0 {
			out.WriteString(block + "\n\n")
			continue
		}
		cmd := lines[0]
		var input, want []string
		sep := slices.Index(lines, "----")
		if sep < 0 {
			input = lines[1:]
		} else {
			input, want = lines[1:sep], lines[sep+1:]
		}
		got := s.run(ctx, cmd, input)
		for _, h := range head {
			out.WriteString(h + "\n")
		}
		out.WriteString(strings.Join(append([]string{cmd}, input...), "\n") + "\n")
		if sep >= 0 || got != nil {
			out.WriteString("----\n")
			for _, g := range got {
				out.WriteString(g + "\n")
			}
			if !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
				changed = true
				if !*update {
					t.Errorf("%s: %s\ngot:\n%s\nwant:\n%s", filepath.Base(file), cmd, strings.Join(got, "\n"), strings.Join(want, "\n"))
				}
			}
		}
		out.WriteString("\n")
	}
	if *update && changed {
		if err := os.WriteFile(file, []byte(strings.TrimRight(out.String(), "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func (s *script) at(d, hhmm string) time.Time {
	var n int
	fmt.Sscan(d, &n)
	c, err := time.Parse("15:04", hhmm)
	if err != nil {
		s.t.Fatalf("time %q: want HH:MM", hhmm)
	}
	return day0.AddDate(0, 0, n).Add(time.Duration(c.Hour())*time.Hour + time.Duration(c.Minute())*time.Minute)
}

func (s *script) run(ctx context.Context, cmd string, input []string) []string {
	t := s.t
	f := strings.Fields(cmd)
	switch f[0] {
	case "now":
		s.now = s.at(f[1], f[2])
		return nil
	case "define":
		tr := audience.Trait{Name: f[1], Kind: f[2], Event: strings.ReplaceAll(f[3], "_", " ")}
		for _, w := range f[4:] {
			k, v, _ := strings.Cut(w, "=")
			switch k {
			case "property":
				tr.Property = v
			case "window":
				tr.Window = v
			}
		}
		got, err := s.traits.Create(ctx, tr)
		if err != nil {
			return []string{"error: " + err.Error()}
		}
		s.byName[got.Name] = got.ID
		return nil
	case "events":
		for _, l := range input {
			s.pending = append(s.pending, s.event(l))
		}
		return nil
	case "record":
		evs := s.pending
		s.pending = nil
		if err := s.ids.Resolve(ctx, evs); err != nil {
			t.Fatal(err)
		}
		for range 1 + btoi(len(f) > 1 && f[1] == "twice") {
			if err := s.traits.Record(ctx, evs); err != nil {
				t.Fatal(err)
			}
			if err := s.auds.Record(ctx, evs); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.events.Append(ctx, evs); err != nil {
			t.Fatal(err)
		}
		return nil
	case "store":
		// Events stored (and resolved) but not recorded: a later trait's backfill finds them.
		if err := s.ids.Resolve(ctx, s.pending); err != nil {
			t.Fatal(err)
		}
		if _, err := s.events.Append(ctx, s.pending); err != nil {
			t.Fatal(err)
		}
		s.pending = nil
		return nil
	case "values":
		v, err := s.traits.Values(ctx, s.profile(f[1]))
		if err != nil {
			return []string{"error: " + err.Error()}
		}
		var names []string
		for n := range v {
			names = append(names, n)
		}
		slices.Sort(names)
		var out []string
		for _, n := range names {
			b, _ := json.Marshal(v[n])
			out = append(out, n+" = "+string(b))
		}
		return out
	case "audience":
		name, rule, _ := strings.Cut(strings.TrimPrefix(strings.Join(append([]string{cmd}, input...), "\n"), "audience "), " ")
		au, err := s.auds.Create(ctx, name, rule, nil)
		if err != nil {
			return []string{"error: " + err.Error()}
		}
		s.audIDs[name] = au.ID
		return nil
	case "sweep":
		if err := s.auds.Sweep(ctx); err != nil {
			t.Fatal(err)
		}
		return nil
	case "changes":
		// The membership events emitted since the last "changes".
		var out []string
		for _, e := range s.log.events {
			var raw struct {
				Properties struct {
					Audience string `json:"audience"`
				} `json:"properties"`
			}
			json.Unmarshal(e.Raw, &raw)
			who := "user=" + e.UserID
			if e.UserID == "" {
				who = "anon=" + e.AnonymousID
			}
			out = append(out, fmt.Sprintf("%s %s %s %s", e.Timestamp.Format("2006-01-02 15:04"), e.Name, raw.Properties.Audience, who))
		}
		s.log.events = nil
		return out
	case "members":
		var out []string
		cursor := ""
		for {
			ms, next, err := s.auds.Members(ctx, s.audIDs[f[1]], 1, cursor)
			if err != nil {
				return append(out, "error: "+err.Error())
			}
			for _, m := range ms {
				_, keys, _ := s.ids.EventKeys(ctx, m.ProfileID)
				out = append(out, fmt.Sprintf("%s since %s", strings.Join(keys, ","), m.Since.Format("2006-01-02 15:04")))
			}
			if next == "" {
				slices.Sort(out)
				return out
			}
			cursor = next
		}
	case "in":
		names, err := s.auds.Of(ctx, s.profile(f[1]))
		if err != nil {
			return []string{"error: " + err.Error()}
		}
		if len(names) == 0 {
			return []string{"(none)"}
		}
		return []string{strings.Join(names, ",")}
	case "expire":
		n, err := s.traits.Expire(ctx, s.at(f[1], f[2]))
		if err != nil {
			return []string{"error: " + err.Error()}
		}
		return []string{fmt.Sprintf("removed %d", n)}
	case "delete":
		if err := s.traits.Delete(ctx, s.byName[f[1]]); err != nil {
			return []string{"error: " + err.Error()}
		}
		return nil
	case "unmerge":
		typ, v, _ := strings.Cut(f[2], ":")
		res, err := s.ids.Unmerge(ctx, s.profile(f[1]), identity.Unmerge{Identifier: &identity.Identifier{Type: typ, Value: v}, By: "u_test"})
		if err != nil {
			t.Fatalf("unmerge: %v", err)
		}
		var ids []string
		for _, p := range res.Profiles {
			ids = append(ids, p.ID)
		}
		if err := s.auds.Evaluate(ctx, ids...); err != nil {
			t.Fatal(err)
		}
		return nil
	}
	t.Fatalf("unknown command %q", cmd)
	return nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (s *script) profile(ident string) string {
	typ, v, ok := strings.Cut(ident, ":")
	if !ok {
		return ident
	}
	p, err := s.ids.Lookup(context.Background(), typ, v)
	if err != nil {
		return ident
	}
	return p.ID
}

// event builds a track event from "MSG DAY HH:MM NAME [user=U] [anon=A] [PROPS-JSON]"
// (NAME with _ for spaces).
func (s *script) event(line string) event.Event {
	var props json.RawMessage
	if i := strings.Index(line, "{"); i >= 0 {
		props = json.RawMessage(line[i:])
		line = line[:i]
	}
	w := strings.Fields(line)
	if len(w) < 4 {
		s.t.Fatalf("event %q: want MSG DAY HH:MM NAME …", line)
	}
	e := event.Event{SourceID: "src", MessageID: w[0], Type: "track", Name: strings.ReplaceAll(w[3], "_", " "), Timestamp: s.at(w[1], w[2])}
	for _, x := range w[4:] {
		k, v, _ := strings.Cut(x, "=")
		switch k {
		case "user":
			e.UserID = v
		case "anon":
			e.AnonymousID = v
		}
	}
	raw := map[string]any{"type": "track", "event": e.Name, "messageId": e.MessageID, "timestamp": e.Timestamp.Format(time.RFC3339)}
	if e.UserID != "" {
		raw["userId"] = e.UserID
	}
	if e.AnonymousID != "" {
		raw["anonymousId"] = e.AnonymousID
	}
	if props != nil {
		raw["properties"] = props
	}
	var err error
	if e.Raw, err = json.Marshal(raw); err != nil {
		s.t.Fatal(err)
	}
	return e
}
