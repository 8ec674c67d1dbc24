// Package scripttest runs the analytics scripts (analytics/testdata) against
// any backend over any event store, so that every backend is held to the
// same expected answers.
//
// A script is blocks separated by blank lines:
//
//	events                      events, stored in the order listed
//	u:alice 2024-01-01T00:00:00Z track "Signed Up" {"plan":"pro"}
//	a:anon1 2024-01-01T00:00:05Z page Pricing
//	u:alice 2024-01-01T00:00:09Z identify - {"plan":"pro"}
//
//	link user_id:alice P1       profile links (identity merges)
//
//	funnel {json query}         a query, then "----" and the expected
//	----                        answer as rendered by Render
//	Signed Up: 1
package scripttest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"tandem/analytics"
	"tandem/event"
	"tandem/eventstore"
)

// Store is what a script writes to: an event store's Append and
// LinkProfiles.
type Store interface {
	Append(ctx context.Context, events []event.Event) (int, error)
	LinkProfiles(ctx context.Context, links []eventstore.ProfileLink) error
}

// Run runs the script at path against store and backend (a backend over
// store) and, when src is not nil, the Go engine over src too; both must
// give the expected answers. With update the expected answers are
// rewritten instead.
func Run(t *testing.T, path string, store Store, backend analytics.Backend, src analytics.Source, update bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	lines := strings.Split(string(b), "\n")
	var out []string
	seq := 0
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		out = append(out, line)
		cmd, arg, _ := strings.Cut(strings.TrimSpace(line), " ")
		switch cmd {
		case "", "#":
			continue
		case "events":
			var evs []event.Event
			for i+1 < len(lines) && strings.TrimSpace(lines[i+1]) != "" {
				i++
				out = append(out, lines[i])
				if strings.HasPrefix(lines[i], "#") {
					continue
				}
				seq++
				evs = append(evs, parseEvent(t, path, i+1, lines[i], seq))
			}
			if _, err := store.Append(ctx, evs); err != nil {
				t.Fatal(err)
			}
		case "link":
			f := strings.Fields(arg)
			if len(f) != 2 {
				t.Fatalf("%s:%d: want link KEY PROFILE", path, i+1)
			}
			if f[1] == "-" {
				f[1] = ""
			}
			if err := store.LinkProfiles(ctx, []eventstore.ProfileLink{{Key: f[0], ProfileID: f[1]}}); err != nil {
				t.Fatal(err)
			}
		case "funnel", "journey", "paths", "retention":
			if i+1 >= len(lines) || lines[i+1] != "----" {
				t.Fatalf("%s:%d: want ---- after the query", path, i+1)
			}
			i++
			out = append(out, "----")
			var want []string
			for i+1 < len(lines) && strings.TrimSpace(lines[i+1]) != "" {
				i++
				want = append(want, lines[i])
			}
			got := runQuery(t, ctx, backend, cmd, arg)
			if src != nil {
				if alt := runQuery(t, ctx, &analytics.Engine{Src: src}, cmd, arg); got != alt {
					t.Errorf("%s:%d: backend and Go engine differ:\nbackend:\n%s\nengine:\n%s", path, i+1, got, alt)
				}
			}
			if update {
				out = append(out, strings.Split(strings.TrimRight(got, "\n"), "\n")...)
				continue
			}
			if w := strings.Join(want, "\n"); strings.TrimRight(got, "\n") != w {
				t.Errorf("%s:%d: %s %s\ngot:\n%s\nwant:\n%s", path, i+1, cmd, arg, got, w)
			}
		default:
			t.Fatalf("%s:%d: unknown directive %q", path, i+1, cmd)
		}
	}
	if update {
		if err := os.WriteFile(path, []byte(strings.Join(out, "\n")), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// parseEvent reads `WHO TIME TYPE NAME [JSON]`: WHO is u:ID (userId) or
// a:ID (anonymousId); NAME is a word, a "quoted string" or - for none;
// JSON is the properties (traits for identify).
func parseEvent(t *testing.T, path string, lineNo int, line string, seq int) event.Event {
	t.Helper()
	fail := func(msg string) { t.Fatalf("%s:%d: %s: %q", path, lineNo, msg, line) }
	who, rest, _ := strings.Cut(strings.TrimSpace(line), " ")
	ts, rest, _ := strings.Cut(strings.TrimSpace(rest), " ")
	typ, rest, _ := strings.Cut(strings.TrimSpace(rest), " ")
	rest = strings.TrimSpace(rest)
	var name string
	if strings.HasPrefix(rest, `"`) {
		end := strings.Index(rest[1:], `"`)
		if end < 0 {
			fail("unterminated name")
		}
		name, rest = rest[1:end+1], strings.TrimSpace(rest[end+2:])
	} else {
		name, rest, _ = strings.Cut(rest, " ")
		rest = strings.TrimSpace(rest)
	}
	if name == "-" {
		name = ""
	}
	tm, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		fail("bad time")
	}
	e := event.Event{SourceID: "src", MessageID: "m" + strconv.Itoa(seq), Type: typ, Name: name, Timestamp: tm, ReceivedAt: tm}
	switch {
	case strings.HasPrefix(who, "u:"):
		e.UserID = who[2:]
	case strings.HasPrefix(who, "a:"):
		e.AnonymousID = who[2:]
	default:
		fail("want u:ID or a:ID")
	}
	raw := map[string]any{"type": typ, "messageId": e.MessageID, "timestamp": ts}
	if e.UserID != "" {
		raw["userId"] = e.UserID
	} else {
		raw["anonymousId"] = e.AnonymousID
	}
	if rest != "" {
		var props map[string]any
		if err := json.Unmarshal([]byte(rest), &props); err != nil {
			fail("bad JSON: " + err.Error())
		}
		if typ == "identify" {
			raw["traits"] = props
		} else {
			raw["properties"] = props
		}
	}
	switch typ {
	case "track":
		raw["event"] = name
	case "page", "screen":
		raw["name"] = name
	}
	e.Raw, _ = json.Marshal(raw)
	return e
}

func runQuery(t *testing.T, ctx context.Context, b analytics.Backend, cmd, arg string) string {
	t.Helper()
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	var (
		res any
		err error
	)
	switch cmd {
	case "funnel":
		var q analytics.FunnelQuery
		if err = strictJSON(arg, &q); err == nil {
			if err = q.Validate(now); err == nil {
				res, err = b.Funnel(ctx, &q)
			}
		}
	case "journey":
		var q analytics.JourneyQuery
		if err = strictJSON(arg, &q); err == nil {
			if err = q.Validate(now, testStages); err == nil {
				res, err = b.Journey(ctx, &q)
			}
		}
	case "paths":
		var q analytics.PathsQuery
		if err = strictJSON(arg, &q); err == nil {
			if err = q.Validate(now); err == nil {
				res, err = b.Paths(ctx, &q)
			}
		}
	case "retention":
		var q analytics.RetentionQuery
		if err = strictJSON(arg, &q); err == nil {
			if err = q.Validate(now); err == nil {
				res, err = b.Retention(ctx, &q)
			}
		}
	}
	if err != nil {
		return "error " + err.Error() + "\n"
	}
	return Render(res)
}

var testStages = []analytics.Stage{
	{Name: "awareness", Department: "marketing", Events: []string{"Ad Clicked"}},
	{Name: "consideration", Department: "marketing", Events: []string{"Product Viewed"}},
	{Name: "purchase", Department: "sales", Events: []string{"Order Completed"}},
	{Name: "delivery", Department: "operations", Events: []string{"Order Delivered"}},
	{Name: "service", Department: "service", Events: []string{"Ticket Opened"}},
}

func strictJSON(s string, v any) error {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

func secs(p *float64) string {
	if p == nil {
		return "-"
	}
	return strconv.FormatFloat(*p, 'f', -1, 64) + "s"
}

// Render is an answer as the scripts write it.
func Render(res any) string {
	var b strings.Builder
	steps := func(prefix string, ss []analytics.FunnelStepResult) {
		for k, s := range ss {
			fmt.Fprintf(&b, "%s%s: %d", prefix, s.Name, s.Profiles)
			if k > 0 {
				fmt.Fprintf(&b, " (%.4g%%) median %s", 100*s.Conversion, secs(s.MedianSeconds))
			}
			b.WriteString("\n")
		}
	}
	switch r := res.(type) {
	case *analytics.FunnelResult:
		steps("", r.Steps)
		for _, g := range r.Breakdown {
			v := "(none)"
			if g.Value != nil {
				v = strconv.Quote(*g.Value)
			}
			steps("["+v+"] ", g.Steps)
		}
	case *analytics.JourneyResult:
		for _, s := range r.Stages {
			fmt.Fprintf(&b, "stage %s (%s): %d median %s p90 %s\n", s.Name, s.Department, s.Profiles, secs(s.MedianSeconds), secs(s.P90Seconds))
		}
		for _, h := range r.Handoffs {
			fmt.Fprintf(&b, "handoff %s→%s (%s): reached %d stuck %d %v\n", h.From, h.To, h.Boundary, h.Reached, h.Stuck, h.Sample)
		}
		for _, g := range r.Gaps {
			fmt.Fprintf(&b, "gap %s: stuck %d %v\n", g.Boundary, g.Stuck, g.Sample)
		}
	case *analytics.PathsResult:
		for _, n := range r.Nodes {
			fmt.Fprintf(&b, "node %s: %d\n", n.ID, n.Profiles)
		}
		for _, e := range r.Edges {
			fmt.Fprintf(&b, "edge %s -> %s: %d\n", e.Source, e.Target, e.Profiles)
		}
	case *analytics.RetentionResult:
		for _, c := range r.Cohorts {
			fmt.Fprintf(&b, "cohort %s: %d returned %v\n", c.Start.Format(time.RFC3339), c.Profiles, c.Returned)
		}
	}
	if b.Len() == 0 {
		return "(empty)\n"
	}
	return b.String()
}
