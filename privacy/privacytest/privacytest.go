// Package privacytest is the privacy package's contract suite over a
// state store backend: privacy's tests run it on every backend with
// statetest.Each. The suite is a set of scripts (events in, consent out)
// resolved by a real identity store.
package privacytest

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"tandem/event"
	"tandem/identity"
	"tandem/privacy"
	"tandem/statestore"
)

var update = flag.Bool("update", false, "rewrite the expected output of the privacy scripts")

// Day is the date of the scripts' times (HH:MM).
var Day = time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)

// Scripts returns the suite running every dir/*.txt script on a new
// database of the backend. A script is blocks separated by blank lines; a
// block is a command line, input lines, and after "----" the expected
// output. Lines starting with # are comments. Commands:
//
//	config              input: "default PURPOSE true|false", "gpc PURPOSE…" (before any events)
//	events              input: "MSG TIME [user=U] [anon=A] [gpc] [PURPOSE=true|false…] [CONTEXT-JSON]"
//	record [reverse|unresolved]   resolve identities and record consent of the events given since the last record (reverse: in reverse order, twice; unresolved: without identity resolution)
//	consent IDENT       output: the consent of the profile holding IDENT (TYPE:VALUE)
//	history IDENT [limit=N]   output: its changes, newest first, "--" between pages
//	allowed IDENT PURPOSE…    output: "allowed" or "refused: REASON"
//	allowed-event user=U|anon=A PURPOSE…   the same for an event with that identifier (AllowedEvent)
//	set IDENT TIME [source=S] PURPOSE=true|false…   an API change at TIME by user u_test; output: the consent after
//	unmerge IDENT TYPE:VALUE  keep identifier TYPE:VALUE apart from the profile holding IDENT
//	rates               output: each purpose's consent rate, "PURPOSE granted=N refused=N share=S default=D"
//
// Run with -update to rewrite expected outputs.
func Scripts(dir string) func(t *testing.T, open func(t *testing.T) *statestore.DB) {
	return func(t *testing.T, open func(t *testing.T) *statestore.DB) {
		files, _ := filepath.Glob(filepath.Join(dir, "*.txt"))
		if len(files) == 0 {
			t.Fatalf("no scripts in %s", dir)
		}
		for _, f := range files {
			t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) {
				t.Parallel()
				runScript(t, f, open(t))
			})
		}
	}
}

type script struct {
	t       *testing.T
	db      *statestore.DB
	ids     *identity.Store
	cfg     privacy.Config
	consent *privacy.Store
	pending []event.Event
	now     time.Time
}

func runScript(t *testing.T, file string, db *statestore.DB) {
	ctx := context.Background()
	if err := db.Migrate(ctx, append(identity.Migrations(), privacy.Migrations()...)...); err != nil {
		t.Fatal(err)
	}
	ids, err := identity.NewStore(ctx, db, identity.Options{Rules: identity.DefaultRules()})
	if err != nil {
		t.Fatal(err)
	}
	s := &script{t: t, db: db, ids: ids, cfg: privacy.DefaultConfig()}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	changed := false
	for _, block := range strings.Split(strings.ReplaceAll(string(b), "\r\n", "\n"), "\n\n") {
		lines := strings.Split(strings.Trim(block, "\n"), "\n")
		var head []string
		i := 0
		for i < len(lines) && strings.HasPrefix(lines[i], "#") {
			i++
		}
		head = lines[:i]
		lines = lines[i:]
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
		got := s.run(cmd, input)
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

func (s *script) store() *privacy.Store {
	if s.consent == nil {
		if err := s.cfg.Validate(); err != nil {
			s.t.Fatal(err)
		}
		s.consent = privacy.NewStore(s.db, s.cfg, s.ids).WithClock(func() time.Time { return s.now })
	}
	return s.consent
}

func (s *script) at(hhmm string) time.Time {
	d, err := time.Parse("15:04", hhmm)
	if err != nil {
		s.t.Fatalf("time %q: want HH:MM", hhmm)
	}
	return Day.Add(time.Duration(d.Hour())*time.Hour + time.Duration(d.Minute())*time.Minute)
}

func (s *script) run(cmd string, input []string) []string {
	t := s.t
	ctx := context.Background()
	f := strings.Fields(cmd)
	switch f[0] {
	case "config":
		if s.consent != nil {
			t.Fatal("config after the store was used")
		}
		s.cfg.Defaults = map[string]bool{}
		s.cfg.GPCPurposes = nil
		for _, l := range input {
			w := strings.Fields(l)
			switch {
			case len(w) == 3 && w[0] == "default":
				s.cfg.Defaults[w[1]] = w[2] == "true"
			case len(w) >= 1 && w[0] == "gpc":
				s.cfg.GPCPurposes = append(s.cfg.GPCPurposes, w[1:]...)
			default:
				t.Fatalf("config: bad line %q", l)
			}
		}
		return nil
	case "events":
		for _, l := range input {
			s.pending = append(s.pending, s.event(l))
		}
		return nil
	case "record":
		evs := s.pending
		s.pending = nil
		if len(f) < 2 || f[1] != "unresolved" {
			if err := s.ids.Resolve(ctx, evs); err != nil {
				t.Fatal(err)
			}
		}
		if len(f) > 1 && f[1] == "reverse" {
			slices.Reverse(evs)
			for range 2 {
				for i := range evs {
					if err := s.store().Record(ctx, evs[i:i+1]); err != nil {
						t.Fatal(err)
					}
				}
			}
		} else if err := s.store().Record(ctx, evs); err != nil {
			t.Fatal(err)
		}
		return nil
	case "consent":
		st, err := s.store().State(ctx, s.profile(f[1]))
		if err != nil {
			return []string{"error: " + err.Error()}
		}
		return showState(st)
	case "history":
		limit := 0
		if len(f) > 2 {
			limit, _ = strconv.Atoi(strings.TrimPrefix(f[2], "limit="))
		}
		var out []string
		cursor := ""
		for {
			items, next, err := s.store().History(ctx, s.profile(f[1]), limit, cursor)
			if err != nil {
				return append(out, "error: "+err.Error())
			}
			for _, c := range items {
				line := fmt.Sprintf("%s %s=%t %s", c.At.Format("15:04"), c.Purpose, c.Granted, c.Source)
				if c.Actor != "" {
					line += " by " + c.Actor
				} else {
					line += " " + c.MessageID
				}
				out = append(out, line)
			}
			if next == "" {
				return out
			}
			out = append(out, "--")
			cursor = next
		}
	case "rates":
		rates, err := s.store().Rates(ctx)
		if err != nil {
			return []string{"error: " + err.Error()}
		}
		var out []string
		for _, r := range rates {
			share, def := "none", "none"
			if r.Share != nil {
				share = strconv.FormatFloat(*r.Share, 'f', 3, 64)
			}
			if r.Default != nil {
				def = strconv.FormatBool(*r.Default)
			}
			out = append(out, fmt.Sprintf("%s granted=%d refused=%d share=%s default=%s", r.Purpose, r.Granted, r.Refused, share, def))
		}
		return out
	case "allowed":
		ok, reason, err := s.store().Allowed(ctx, s.profile(f[1]), f[2:])
		switch {
		case err != nil:
			return []string{"error: " + err.Error()}
		case ok:
			return []string{"allowed"}
		default:
			return []string{"refused: " + reason}
		}
	case "allowed-event":
		var e event.Event
		k, v, _ := strings.Cut(f[1], "=")
		if k == "user" {
			e.UserID = v
		} else {
			e.AnonymousID = v
		}
		ok, reason, err := s.store().AllowedEvent(ctx, &e, f[2:])
		switch {
		case err != nil:
			return []string{"error: " + err.Error()}
		case ok:
			return []string{"allowed"}
		default:
			return []string{"refused: " + reason}
		}
	case "set":
		s.now = s.at(f[2])
		purposes := map[string]bool{}
		source := ""
		for _, w := range f[3:] {
			k, v, _ := strings.Cut(w, "=")
			if k == "source" {
				source = v
				continue
			}
			purposes[k] = v == "true"
		}
		st, err := s.store().Set(ctx, s.profile(f[1]), purposes, source, "u_test")
		if err != nil {
			return []string{"error: " + err.Error()}
		}
		return showState(st)
	case "unmerge":
		typ, v, _ := strings.Cut(f[2], ":")
		if _, err := s.ids.Unmerge(ctx, s.profile(f[1]), identity.Unmerge{Identifier: &identity.Identifier{Type: typ, Value: v}, By: "u_test"}); err != nil {
			t.Fatalf("unmerge: %v", err)
		}
		return nil
	}
	t.Fatalf("unknown command %q", cmd)
	return nil
}

// profile is the id of the profile holding ident, or ident itself when it
// is not TYPE:VALUE or holds none.
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

func showState(st privacy.State) []string {
	var names []string
	for name := range st.Purposes {
		names = append(names, name)
	}
	slices.Sort(names)
	var parts []string
	for _, n := range names {
		p := fmt.Sprintf("%s=%t", n, st.Purposes[n])
		if slices.Contains(st.Defaulted, n) {
			p += "(default)"
		}
		parts = append(parts, p)
	}
	upd := "never"
	if st.UpdatedAt != nil {
		upd = st.UpdatedAt.Format("15:04")
	}
	return []string{strings.Join(parts, " "), "updated " + upd + " source " + st.Source}
}

// event builds an event from "MSG TIME [user=U] [anon=A] [gpc] [P=true|false…] [CONTEXT-JSON]".
func (s *script) event(line string) event.Event {
	t := s.t
	var rawCtx json.RawMessage
	if i := strings.Index(line, "{"); i >= 0 {
		rawCtx = json.RawMessage(line[i:])
		line = line[:i]
	}
	w := strings.Fields(line)
	if len(w) < 2 {
		t.Fatalf("event %q: want MSG TIME …", line)
	}
	e := event.Event{SourceID: "src", MessageID: w[0], Type: "track", Name: "Tested", Timestamp: s.at(w[1])}
	prefs := map[string]bool{}
	gpc := false
	for _, x := range w[2:] {
		k, v, _ := strings.Cut(x, "=")
		switch k {
		case "user":
			e.UserID = v
		case "anon":
			e.AnonymousID = v
		case "gpc":
			gpc = true
		default:
			prefs[k] = v == "true"
		}
	}
	raw := map[string]any{"type": "track", "event": "Tested", "messageId": e.MessageID, "timestamp": e.Timestamp.Format(time.RFC3339)}
	if e.UserID != "" {
		raw["userId"] = e.UserID
	}
	if e.AnonymousID != "" {
		raw["anonymousId"] = e.AnonymousID
	}
	switch {
	case rawCtx != nil:
		raw["context"] = rawCtx
	case len(prefs) > 0 || gpc:
		c := map[string]any{}
		if len(prefs) > 0 {
			c["consent"] = map[string]any{"categoryPreferences": prefs}
		}
		if gpc {
			c["gpc"] = true
		}
		raw["context"] = c
	}
	var err error
	if e.Raw, err = json.Marshal(raw); err != nil {
		t.Fatal(err)
	}
	return e
}
