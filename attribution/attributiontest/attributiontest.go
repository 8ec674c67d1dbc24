// Package attributiontest runs the attribution scripts (attribution/testdata)
// against any event store's [attribution.Source], so that every store is
// held to the same hand-computed answers.
//
// A script is blocks separated by blank lines:
//
//	config {channels: [{channel: podcast, source: [spotify]}]}
//	                            the attribution config (YAML, one line;
//	                            defaults for what it leaves out)
//	events                      events, stored in the order listed:
//	u:alice 2024-01-01T00:00:00Z page Home @web {"context":{"page":{"referrer":"https://www.google.com/"}}}
//	a:anon1 2024-01-01T00:00:05Z track "Order Completed" {"properties":{"revenue":25}}
//
//	link user_id:alice P1       a profile link (identity merge)
//
//	attribution {json query}    a query, then "----" and the expected
//	----                        answer as rendered by Render
//	conversions 2 value 125 noTouch 0
//	first_touch: organic-search 1 125
//
// An event line is WHO TIME TYPE NAME [@SOURCE] [JSON]: WHO is u:ID
// (userId) or a:ID (anonymousId); NAME a word, a "quoted string" or -;
// SOURCE the source id (default web); JSON is merged into the event's
// top level (properties, context, channel).
package attributiontest

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"tandem/attribution"
	"tandem/event"
	"tandem/eventstore"
)

// Store is what a script writes to.
type Store interface {
	Append(ctx context.Context, events []event.Event) (int, error)
	LinkProfiles(ctx context.Context, links []eventstore.ProfileLink) error
}

// Run runs the script at path against store, answering each query from
// every source in srcs (sources over store); each must give the expected
// answer. With update the expected answers are rewritten from the first.
func Run(t *testing.T, path string, store Store, srcs []attribution.Source, update bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	lines := strings.Split(string(b), "\n")
	var out []string
	seq := 0
	cfg := attribution.DefaultConfig()
	var tools []attribution.Tool
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		out = append(out, line)
		cmd, arg, _ := strings.Cut(strings.TrimSpace(line), " ")
		switch cmd {
		case "", "#":
			continue
		case "config":
			cfg = attribution.DefaultConfig()
			if err := yaml.Unmarshal([]byte(arg), &cfg); err != nil {
				t.Fatalf("%s:%d: %v", path, i+1, err)
			}
			if err := cfg.Validate(); err != nil {
				t.Fatalf("%s:%d: %v", path, i+1, err)
			}
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
			if err := store.LinkProfiles(ctx, []eventstore.ProfileLink{{Key: f[0], ProfileID: f[1]}}); err != nil {
				t.Fatal(err)
			}
		case "tools":
			tools = nil
			if err := json.Unmarshal([]byte(arg), &tools); err != nil {
				t.Fatalf("%s:%d: %v", path, i+1, err)
			}
		case "attribution", "report":
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
			var got string
			for k, src := range srcs {
				var g string
				if cmd == "report" {
					g = runReport(t, ctx, &cfg, src, tools, arg)
				} else {
					g = runQuery(t, ctx, &cfg, src, arg)
				}
				if k == 0 {
					got = g
					if update {
						out = append(out, strings.Split(strings.TrimRight(got, "\n"), "\n")...)
					}
				}
				if !update {
					if w := strings.Join(want, "\n"); strings.TrimRight(g, "\n") != w {
						t.Errorf("%s:%d: source %d (%T): %s\ngot:\n%s\nwant:\n%s", path, i+1, k, src, arg, g, w)
					}
				}
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
	src := "web"
	if strings.HasPrefix(rest, "@") {
		src, rest, _ = strings.Cut(rest[1:], " ")
		rest = strings.TrimSpace(rest)
	}
	tm, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		fail("bad time")
	}
	e := event.Event{SourceID: src, MessageID: "m" + strconv.Itoa(seq), Type: typ, Name: name, Timestamp: tm, ReceivedAt: tm}
	raw := map[string]any{}
	if rest != "" {
		if err := json.Unmarshal([]byte(rest), &raw); err != nil {
			fail("bad JSON: " + err.Error())
		}
	}
	raw["type"], raw["messageId"], raw["timestamp"] = typ, e.MessageID, ts
	switch {
	case strings.HasPrefix(who, "u:"):
		e.UserID = who[2:]
		raw["userId"] = e.UserID
	case strings.HasPrefix(who, "a:"):
		e.AnonymousID = who[2:]
		raw["anonymousId"] = e.AnonymousID
	default:
		fail("want u:ID or a:ID")
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

func runQuery(t *testing.T, ctx context.Context, cfg *attribution.Config, src attribution.Source, arg string) string {
	t.Helper()
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	var q attribution.Query
	dec := json.NewDecoder(strings.NewReader(arg))
	dec.DisallowUnknownFields()
	err := dec.Decode(&q)
	if err == nil {
		err = q.Validate(now, cfg)
	}
	var res *attribution.Result
	if err == nil {
		res, err = cfg.Attribute(ctx, src, &q)
	}
	if err != nil {
		return "error " + err.Error() + "\n"
	}
	if err := CheckSums(res); err != nil {
		t.Errorf("%s: %v", arg, err)
	}
	return Render(res)
}

func runReport(t *testing.T, ctx context.Context, cfg *attribution.Config, src attribution.Source, tools []attribution.Tool, arg string) string {
	t.Helper()
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	var q attribution.ReportQuery
	dec := json.NewDecoder(strings.NewReader(arg))
	dec.DisallowUnknownFields()
	err := dec.Decode(&q)
	if err == nil {
		err = q.Validate(now, cfg)
	}
	var rep *attribution.Report
	if err == nil {
		rep, err = cfg.Report(ctx, src, &q, tools)
	}
	if err != nil {
		return "error " + err.Error() + "\n"
	}
	return RenderReport(rep)
}

// RenderReport is a cost-and-return report as the scripts write it.
func RenderReport(r *attribution.Report) string {
	var b strings.Builder
	ratios := func(cpc *attribution.Money, ros *float64) string {
		s := "cpc -"
		if cpc != nil {
			s = "cpc " + cpc.String()
		}
		if ros != nil {
			return s + " ros " + strconv.FormatFloat(*ros, 'f', -1, 64)
		}
		return s + " ros -"
	}
	fmt.Fprintf(&b, "report %s conversions %d value %s cost %s unallocated %s\n", r.Model, r.Conversions, r.Value, r.Cost, r.UnallocatedCost)
	for _, x := range r.Tools {
		fmt.Fprintf(&b, "tool %s %q (%s) cost %s conversions %s value %s %s\n", x.Tool, x.Name, x.Kind, x.Cost, x.Conversions, x.Value, ratios(x.CostPerConversion, x.ReturnOnSpend))
	}
	for _, x := range r.Channels {
		fmt.Fprintf(&b, "channel %s cost %s conversions %s value %s %s\n", x.Channel, x.Cost, x.Conversions, x.Value, ratios(x.CostPerConversion, x.ReturnOnSpend))
	}
	for _, x := range r.Review {
		fmt.Fprintf(&b, "review %s %q cost %s %v\n", x.Tool, x.Name, x.Cost, x.DataCategories)
	}
	return b.String()
}

// CheckSums reports a model whose credits do not sum to the result's
// conversions and value exactly.
func CheckSums(res *attribution.Result) error {
	for _, m := range res.Models {
		var conv attribution.Share
		var val attribution.Money
		for _, c := range m.Credits {
			conv += c.Conversions
			val += c.Value
		}
		if int64(conv) != res.Conversions*1_000_000 || val != res.Value {
			return fmt.Errorf("model %s: credits sum to %s conversions, %s value; want %d, %s", m.Model, conv, val, res.Conversions, res.Value)
		}
	}
	return nil
}

// Render is an answer as the scripts write it: the totals, then one line
// per model with each key's conversions and value.
func Render(res *attribution.Result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "conversions %d value %s noTouch %d\n", res.Conversions, res.Value, res.NoTouch)
	if res.Journeys != nil {
		fmt.Fprintf(&b, "journeys converting %d nonConverting %d\n", res.Journeys.Converting, res.Journeys.NonConverting)
	}
	if len(res.RemovalEffects) > 0 {
		keys := slices.Sorted(maps.Keys(res.RemovalEffects))
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = k + " " + strconv.FormatFloat(res.RemovalEffects[k], 'f', 6, 64)
			parts[i] = strings.TrimRight(strings.TrimRight(parts[i], "0"), ".")
		}
		fmt.Fprintf(&b, "removal %s\n", strings.Join(parts, " | "))
	}
	for _, m := range res.Models {
		parts := make([]string, len(m.Credits))
		for i, c := range m.Credits {
			parts[i] = fmt.Sprintf("%s %s %s", c.Key, c.Conversions, c.Value)
		}
		fmt.Fprintf(&b, "%s: %s\n", m.Model, strings.Join(parts, " | "))
	}
	return b.String()
}
