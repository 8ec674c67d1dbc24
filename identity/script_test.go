package identity_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"tandem/event"
	"tandem/eventstore"
	"tandem/identity"
	"tandem/statestore"
	"tandem/statestore/statetest"
)

var update = flag.Bool("update", false, "rewrite the expected output of testdata scripts")

// memLinks is an event store's profile links, in memory.
type memLinks struct {
	mu sync.Mutex
	m  map[string]string
}

func (l *memLinks) LinkProfiles(_ context.Context, links []eventstore.ProfileLink) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range links {
		if k.ProfileID == "" {
			delete(l.m, k.Key)
		} else {
			l.m[k.Key] = k.ProfileID
		}
	}
	return nil
}

// TestScripts runs the scripts in testdata: events in, expected profiles,
// explanations and timelines out. A script is blocks separated by blank
// lines; a block is a command line, input lines, and after "----" the
// expected output. Commands:
//
//	rules                      input: "TYPE LIMIT" lines in priority order, "blocked V…", "phone_country_code CC", "phone_region R"
//	events                     input: "MSG TIME TYPE [user=U] [anon=A] [prev=P] [group=G] [JSON]"
//	resolve [reverse|each]     resolve the events given since the last resolve; output: every profile
//	profile IDENT              output: the profile holding IDENT (identifiers, traits, events)
//	explain IDENT              output: the explanation's steps
//	unmerge IDENT merge=MSG | identifier=TYPE:VALUE   output: every profile after it
//
// Run with -update to rewrite expected outputs.
func TestScripts(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.txt")
	if len(files) == 0 {
		t.Fatal("no scripts")
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) {
			t.Parallel()
			// Every backend gives the same output; -update writes
			// SQLite's.
			statetest.Each(t, func(t *testing.T, open func(t *testing.T) *statestore.DB) {
				runScript(t, f, open, strings.HasSuffix(t.Name(), "/sqlite"))
			})
		})
	}
}

type script struct {
	t       *testing.T
	db      func() *identity.Store
	store   *identity.Store
	links   *memLinks
	rules   identity.Rules
	pending []event.Event
	all     []event.Event
}

func runScript(t *testing.T, path string, open func(t *testing.T) *statestore.DB, write bool) {
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	db := open(t)
	if err := db.Migrate(context.Background(), identity.Migrations()...); err != nil {
		t.Fatal(err)
	}
	s := &script{t: t, links: &memLinks{m: map[string]string{}}, rules: identity.DefaultRules()}
	s.db = func() *identity.Store {
		if s.store == nil {
			st, err := identity.NewStore(context.Background(), db, identity.Options{Rules: s.rules, Links: s.links})
			if err != nil {
				t.Fatalf("%s: rules: %v", path, err)
			}
			s.store = st
		}
		return s.store
	}
	var out bytes.Buffer
	blocks := strings.Split(strings.ReplaceAll(string(src), "\r\n", "\n"), "\n\n")
	changed := false
	for _, b := range blocks {
		lines := strings.Split(strings.Trim(b, "\n"), "\n")
		var kept []string
		for _, l := range lines {
			if !strings.HasPrefix(l, "#") || len(kept) > 0 {
				kept = append(kept, l)
			} else {
				out.WriteString(l + "\n")
			}
		}
		if len(kept) == 0 {
			if strings.TrimSpace(b) != "" {
				out.WriteString("\n")
			}
			continue
		}
		cmd := kept[0]
		var input, want []string
		sep := slices.Index(kept, "----")
		if sep < 0 {
			input = kept[1:]
		} else {
			input, want = kept[1:sep], kept[sep+1:]
		}
		got := s.run(cmd, input)
		out.WriteString(cmd + "\n")
		for _, l := range input {
			out.WriteString(l + "\n")
		}
		if got != nil || sep >= 0 {
			out.WriteString("----\n")
			for _, l := range got {
				out.WriteString(l + "\n")
			}
		}
		out.WriteString("\n")
		if !slices.Equal(got, want) && (got != nil || sep >= 0) {
			changed = true
			if !*update || !write {
				t.Errorf("%s: %s:\n got:\n  %s\nwant:\n  %s", path, cmd, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
			}
		}
	}
	if *update && changed && write {
		if err := os.WriteFile(path, bytes.TrimRight(out.Bytes(), "\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, append(bytes.TrimRight(out.Bytes(), "\n"), '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func (s *script) fatalf(format string, args ...any) {
	s.t.Helper()
	s.t.Fatalf(format, args...)
}

func (s *script) run(cmd string, input []string) []string {
	ctx := context.Background()
	f := strings.Fields(cmd)
	switch f[0] {
	case "rules":
		s.rules = identity.Rules{}
		for _, l := range input {
			g := strings.Fields(l)
			switch {
			case g[0] == "blocked":
				s.rules.Blocked = append(s.rules.Blocked, g[1:]...)
			case g[0] == "phone_country_code":
				s.rules.PhoneCountryCode = g[1]
			case g[0] == "phone_region":
				s.rules.PhoneRegion = g[1]
			default:
				n, err := strconv.Atoi(g[1])
				if err != nil {
					s.fatalf("rules: %q", l)
				}
				s.rules.Types = append(s.rules.Types, identity.Type{Name: g[0], Limit: n})
			}
		}
		s.store = nil
		return nil
	case "events":
		for _, l := range input {
			s.pending = append(s.pending, s.parseEvent(l))
		}
		return nil
	case "resolve":
		mode := ""
		if len(f) > 1 {
			mode = f[1]
		}
		evs := slices.Clone(s.pending)
		switch mode {
		case "reverse":
			slices.Reverse(evs)
			fallthrough
		case "":
			if err := s.db().Resolve(ctx, evs); err != nil {
				s.fatalf("resolve: %v", err)
			}
		case "each":
			for i := range evs {
				if err := s.db().Resolve(ctx, evs[i:i+1]); err != nil {
					s.fatalf("resolve: %v", err)
				}
			}
		}
		s.all = append(s.all, s.pending...)
		s.pending = nil
		return s.partition()
	case "profile":
		p, err := s.lookup(f[1])
		if err != nil {
			return []string{"error: " + err.Error()}
		}
		traits, _ := json.Marshal(p.Traits)
		return []string{
			"identifiers: " + idents(p.Identifiers),
			"traits: " + string(traits),
			"events: " + strings.Join(s.eventsOf(p.ID), " "),
			fmt.Sprintf("seen: %s .. %s", p.FirstSeen.Format(time.RFC3339), p.LastSeen.Format(time.RFC3339)),
		}
	case "explain":
		p, err := s.lookup(f[1])
		if err != nil {
			return []string{"error: " + err.Error()}
		}
		x, err := s.db().Explain(ctx, p.ID)
		if err != nil {
			return []string{"error: " + err.Error()}
		}
		var out []string
		for _, st := range x.Steps {
			line := fmt.Sprintf("%s %s by %s", st.Kind, st.Identifier, st.MessageID)
			if len(st.Via) > 0 {
				line += " via " + strings.Join(st.Via, ",")
			}
			if st.Kind == identity.StepDropped || st.Kind == identity.StepDetached {
				line += ": " + st.Rule
			}
			out = append(out, line)
		}
		return out
	case "unmerge":
		p, err := s.lookup(f[1])
		if err != nil {
			return []string{"error: " + err.Error()}
		}
		var u identity.Unmerge
		k, v, _ := strings.Cut(f[2], "=")
		switch k {
		case "merge":
			x, err := s.db().Explain(ctx, p.ID)
			if err != nil {
				return []string{"error: " + err.Error()}
			}
			for _, st := range x.Steps {
				if st.Kind == identity.StepMerged && st.MessageID == v {
					u.MergeID = st.MergeID
				}
			}
			if u.MergeID == "" {
				return []string{"error: no merge by " + v}
			}
		case "identifier":
			typ, val := splitType(v)
			u.Identifier = &identity.Identifier{Type: typ, Value: val}
		}
		if _, err := s.db().Unmerge(ctx, p.ID, u); err != nil {
			return []string{"error: " + err.Error()}
		}
		return s.partition()
	}
	s.fatalf("unknown command %q", cmd)
	return nil
}

func (s *script) lookup(ident string) (identity.Profile, error) {
	t, v := splitType(ident)
	return s.db().Lookup(context.Background(), t, v)
}

func splitType(s string) (string, string) {
	t, v, _ := strings.Cut(s, ":")
	return t, v
}

func idents(ids []identity.Identifier) string {
	var out []string
	for _, id := range ids {
		out = append(out, id.Type+":"+id.Value)
	}
	return strings.Join(out, " ")
}

// partition renders every profile (with its events) as one line, sorted.
func (s *script) partition() []string {
	ctx := context.Background()
	parts, err := s.db().Partition(ctx)
	if err != nil {
		s.fatalf("partition: %v", err)
	}
	var out []string
	for _, part := range parts {
		p, err := s.lookup(part[0])
		if err != nil {
			s.fatalf("lookup %s: %v", part[0], err)
		}
		out = append(out, idents(p.Identifiers)+"  events: "+strings.Join(s.eventsOf(p.ID), " "))
	}
	sort.Strings(out)
	return out
}

// eventsOf lists the messageIds of the events whose key is linked to
// profile id, by event time: the timeline the event store would give.
func (s *script) eventsOf(id string) []string {
	s.links.mu.Lock()
	defer s.links.mu.Unlock()
	evs := slices.Clone(s.all)
	slices.SortStableFunc(evs, func(a, b event.Event) int { return a.Timestamp.Compare(b.Timestamp) })
	var out []string
	for _, e := range evs {
		if s.links.m[eventstore.ProfileKey(e.UserID, e.AnonymousID)] == id {
			out = append(out, e.MessageID)
		}
	}
	return out
}

var base = time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC)

func (s *script) parseEvent(l string) event.Event {
	js := ""
	if i := strings.Index(l, "{"); i >= 0 {
		l, js = strings.TrimSpace(l[:i]), l[i:]
	}
	f := strings.Fields(l)
	if len(f) < 3 {
		s.fatalf("event %q: want MSG TIME TYPE", l)
	}
	e := event.Event{SourceID: "src", MessageID: f[0], Type: f[2]}
	if d, err := time.Parse("15:04", f[1]); err == nil {
		e.Timestamp = base.Add(time.Duration(d.Hour())*time.Hour + time.Duration(d.Minute())*time.Minute)
	} else if t, err := time.Parse(time.RFC3339, f[1]); err == nil {
		e.Timestamp = t
	} else {
		s.fatalf("event %q: bad time", l)
	}
	raw := map[string]any{}
	if js != "" {
		if err := json.Unmarshal([]byte(js), &raw); err != nil {
			s.fatalf("event %q: %v", l, err)
		}
	}
	for _, kv := range f[3:] {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "user":
			e.UserID, raw["userId"] = v, v
		case "anon":
			e.AnonymousID, raw["anonymousId"] = v, v
		case "prev":
			e.PreviousID, raw["previousId"] = v, v
		case "group":
			e.GroupID, raw["groupId"] = v, v
		default:
			s.fatalf("event %q: unknown field %q", l, k)
		}
	}
	raw["type"] = e.Type
	e.Raw, _ = json.Marshal(raw)
	return e
}
