package duckdb

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"pgregory.net/rapid"

	"tandem/event"
)

// samePrepared reports how got (prepare's) differs from want (the
// oracle's) for events, "" when it does not: the same events kept, in
// the same order, each with the same row values.
func samePrepared(events []event.Event, got, want []*pending) string {
	if len(got) != len(want) {
		return fmt.Sprintf("%d events kept, want %d", len(got), len(want))
	}
	for i, g := range got {
		w := want[i]
		switch {
		case g.e != w.e || g.idx != w.idx:
			return fmt.Sprintf("kept #%d: event %d, want %d", i, g.idx, w.idx)
		case g.src != w.src || g.msg != w.msg || g.hash != w.hash || g.raw != w.raw:
			return fmt.Sprintf("event %d: key or raw %q %q %x %q, want %q %q %x %q", g.idx, g.src, g.msg, g.hash, g.raw, w.src, w.msg, w.hash, w.raw)
		case g.touch != w.touch:
			return fmt.Sprintf("event %d (%s %s): touch %+v, want %+v", g.idx, events[g.idx].Type, events[g.idx].Raw, g.touch, w.touch)
		case !slices.Equal(g.vals, w.vals):
			return fmt.Sprintf("event %d (%s %s): values %+v, want %+v", g.idx, events[g.idx].Type, events[g.idx].Raw, g.vals, w.vals)
		}
	}
	return ""
}

// prepareRaws are event JSON of the shapes the drain and real sources
// send: server-side page views without a URL, browser ones with context.page,
// campaigns, conversions with a value as a number or a string, escapes.
var prepareRaws = []string{
	`{"type":"page","name":"Home","anonymousId":"a","messageId":"m","timestamp":"2026-12-03T00:00:00Z","properties":{"path":"/1","title":"Home"},"context":{"library":{"name":"tandem-bench","version":"1"},"userAgent":"Mozilla/5.0 (X11; Linux x86_64) tandem-bench"}}`,
	`{"type":"identify","anonymousId":"a","userId":"u","traits":{"email":"u@example.com","plan":"pro"},"context":{"library":{"name":"tandem-bench","version":"1"}}}`,
	`{"type":"track","event":"Order Completed","userId":"u","properties":{"orderId":"o-6","revenue":16.5,"currency":"EUR"},"context":{"library":{"name":"x","version":"1"}}}`,
	`{"type":"track","event":"Order Completed","properties":{"revenue":"16.50","value":3},"context":{"campaign":{"name":"winter","source":"news","medium":"email"}}}`,
	`{"type":"page","context":{"page":{"url":"https://www.shop.example/p?utm_source=g&gclid=1","referrer":"https://www.google.com/"}},"properties":{"url":"https://x.example/"}}`,
	`{"type":"page","properties":{"url":"https://shop.example/?utm_campaign=spring","referrer":"https://ref.example/","revenue":2}}`,
	`{"type":"page","channel":"email","properties":{"channel":"social"}}`,
	`{"type":"screen","context":{"channel":"push"},"properties":{"value":"1e3"}}`,
	`{"type":"page","properties":{"\u0075rl":"https://esc.example/"},"context":{"\u0063ampaign":{"name":"esc"}}}`,
	`{"type":"page","name":"a \"quoted\" \\ name","properties":{"title":"url"}}`,
	`{"type":"track","event":"campaign channel","properties":{"revenue":-0.5e2}}`,
	`{"type":"page","properties":{"url":"x"}`,
	`{"type":"page","x":"` + "\xff" + `","properties":{"revenue":"` + "\xfe" + `"}}`,
	`[1,2]`, ``, `{}`, `{"properties":{"revenue":1},"properties":{"value":2}}`,
	`{"type":"page","properties":{"path":"/"},"ur":"l","url":1}`, `{"url"`, `"referrer"`, `{"type":"page","x":"\"channel\""}`,
}

// prepare, made cheaper, prepares every batch as the code before did
// (the oracle): the same events kept, in order, each with byte-identical
// row values; over the drain's events, the shapes above in every type,
// events of any JSON the touch and value columns look at (broken too),
// repeated keys and invalid UTF-8.
func TestPrepareMatchesOracle(t *testing.T) {
	at := time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)
	check := func(t interface{ Fatal(...any) }, evs []event.Event) {
		if d := samePrepared(evs, prepare(evs), oraclePrepare(evs)); d != "" {
			t.Fatal(d)
		}
	}
	check(t, e2eEvents("o", 2_000, at))
	var evs []event.Event
	for i, raw := range prepareRaws {
		for _, typ := range []string{"page", "track", "screen", "identify", "alias"} {
			evs = append(evs, event.Event{SourceID: "web", MessageID: fmt.Sprintf("m%d-%s", i, typ), Type: typ, Raw: []byte(raw), Timestamp: at})
		}
	}
	check(t, evs)
	rapid.Check(t, func(t *rapid.T) {
		var evs []event.Event
		for i := range rapid.IntRange(0, 6).Draw(t, "events") {
			var raw string
			if rapid.Bool().Draw(t, "shape") {
				raw = rapid.SampledFrom(prepareRaws).Draw(t, "raw")
			} else {
				raw = factsJSON(t, true, rapid.Bool().Draw(t, "bad"))
			}
			e := factsEvent(t, raw)
			e.SourceID = rapid.SampledFrom([]string{"web", "src_\xff", ""}).Draw(t, "src")
			e.MessageID = rapid.SampledFrom([]string{"m", "n", "m\xfe", fmt.Sprint(i)}).Draw(t, "msg")
			evs = append(evs, e)
		}
		check(t, evs)
	})
}

// FuzzPrepare checks prepare against the oracle on any JSON, as each
// type of event, repeated.
func FuzzPrepare(f *testing.F) {
	for _, raw := range prepareRaws {
		f.Add(raw, "m")
	}
	f.Fuzz(func(t *testing.T, raw, msg string) {
		var evs []event.Event
		for _, typ := range []string{"page", "track", "screen", "identify"} {
			evs = append(evs, event.Event{SourceID: "web", MessageID: msg + typ, Type: typ, Raw: []byte(raw)})
		}
		evs = append(evs, evs[0])
		if d := samePrepared(evs, prepare(evs), oraclePrepare(evs)); d != "" {
			t.Fatal(d)
		}
	})
}

// repeats tells a repeated key from another key of the same hash (a
// 64-bit collision, which SHA-256 does not give a test): with every key
// of one hash, and of two.
func TestRepeatsCollision(t *testing.T) {
	keys := []key{{"a", "1"}, {"b", "1"}, {"a", "1"}, {"a", "2"}, {"b", "1"}, {"a", "2"}, {"cc", "3"}, {"a", "1"}}
	want := []bool{false, false, true, false, true, true, false, true}
	for _, hash := range []func(key) uint64{
		func(key) uint64 { return 7 },
		func(k key) uint64 { return uint64(len(k.src)) },
	} {
		all := make([]pending, len(keys))
		r := repeats{first: map[uint64]int32{}}
		for i, k := range keys {
			all[i] = pending{src: k.src, msg: k.msg, hash: hash(k)}
			if got := r.repeat(all, i); got != want[i] {
				t.Fatalf("repeat(%v) #%d = %v, want %v", k, i, got, want[i])
			}
		}
	}
}
