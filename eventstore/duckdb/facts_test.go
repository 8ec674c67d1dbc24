package duckdb

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"tandem/event"
)

// factsJSON draws an event's JSON from the members the touch and value
// columns read and their lookalikes: escaped, differently cased and (with
// dups) repeated keys, values of every JSON kind, nested objects, odd
// spacing; with bad set, it may also break it (cut short, a stray byte, invalid
// UTF-8, a bad escape), which no collection lets through but Append
// must still treat as the readers one by one do.
func factsJSON(t *rapid.T, dups, bad bool) string {
	space := rapid.SampledFrom([]string{"", "", " ", "\n\t "})
	form := func(k string) string {
		switch rapid.IntRange(0, 9).Draw(t, "keyForm") {
		case 0: // the first letter escaped
			return `"\u00` + fmt.Sprintf("%x", k[0]) + k[1:] + `"`
		case 1:
			return `"` + strings.ToUpper(k[:1]) + k[1:] + `"`
		}
		return `"` + k + `"`
	}
	// keys returns up to n keys of names, each name at most once unless
	// dups.
	keys := func(n int, names ...string) []string {
		if !dups {
			names = rapid.Permutation(names).Draw(t, "names")
			n = min(n, len(names))
		}
		out := make([]string, n)
		for i := range out {
			k := names[i%len(names)]
			if dups {
				k = rapid.SampledFrom(names).Draw(t, "key")
			}
			out[i] = form(k)
		}
		return out
	}
	scalar := func() string {
		return rapid.SampledFrom([]string{`"cpc"`, `" Email "`, `"https://www.Shop.example/p?utm_source=news&utm_medium=email&gclid=1"`,
			`"https://www.google.com/search"`, `"not a url"`, `""`, `"é\u00e9\ud83d\ude00"`, `"a\"b\\c"`, `"12.50"`, `" 7.25 "`,
			`12.5`, `-1e3`, `0`, `123456789012345678901234567890`, `1.7976931348623157e308`, `true`, `false`, `null`,
			`"server"`, `"call-centre"`, `"campaign channel value revenue"`, `"value"`, `"revenue"`, `"\"value\""`}).Draw(t, "scalar")
	}
	var value func(depth int) string
	object := func(depth int, names ...string) string {
		ks := keys(rapid.IntRange(0, 4).Draw(t, "members"), names...)
		var b strings.Builder
		b.WriteString("{" + space.Draw(t, "s"))
		for i, k := range ks {
			if i > 0 {
				b.WriteString("," + space.Draw(t, "s"))
			}
			b.WriteString(k + space.Draw(t, "s") + ":" + space.Draw(t, "s") + value(depth+1))
		}
		b.WriteString(space.Draw(t, "s") + "}")
		return b.String()
	}
	value = func(depth int) string {
		if depth > 3 {
			return scalar()
		}
		switch rapid.IntRange(0, 5).Draw(t, "kind") {
		case 0:
			return object(depth, "campaign", "page", "channel", "url", "referrer", "medium", "source", "name", "revenue", "value", "library")
		case 1:
			return "[" + scalar() + "," + object(depth, "url", "revenue") + "]"
		}
		return scalar()
	}
	// The top level: these members in any order.
	var members []string
	for _, k := range keys(rapid.IntRange(0, 7).Draw(t, "top"), "type", "channel", "context", "properties", "event", "revenue", "userAgent") {
		var v string
		switch k {
		case `"context"`, `"\u0063ontext"`:
			v = object(1, "campaign", "page", "channel", "library", "revenue")
		case `"properties"`, `"\u0070roperties"`:
			v = object(1, "revenue", "value", "url", "referrer", "channel", "orderId")
		default:
			v = value(1)
		}
		members = append(members, k+":"+space.Draw(t, "s")+v)
	}
	raw := space.Draw(t, "s") + "{" + strings.Join(members, ",") + "}" + space.Draw(t, "s")
	if bad && len(raw) > 2 {
		i := rapid.IntRange(0, len(raw)-1).Draw(t, "at")
		switch rapid.IntRange(0, 3).Draw(t, "break") {
		case 0:
			raw = raw[:i]
		case 1:
			raw = raw[:i] + rapid.SampledFrom([]string{"}", "]", `"`, ",", ":", "x", "\x01"}).Draw(t, "stray") + raw[i:]
		case 2:
			raw = raw[:i] + "\xff" + raw[i:]
		case 3:
			raw = strings.Replace(raw, `\u00`, `\x`, 1)
		}
	}
	return raw
}

// factsEvent is an event of a type the touch columns tell apart, with raw.
func factsEvent(t *rapid.T, raw string) event.Event {
	return event.Event{SourceID: "web", MessageID: "m", Type: rapid.SampledFrom([]string{"page", "track", "screen", "identify"}).Draw(t, "type"),
		Raw: []byte(raw)}
}

// The one-pass reading of the touch and value columns (factsOf, what
// Append writes) gives what the two readers give one after the other
// (touchOf, valuesOf: each a reading of its own), on valid JSON of every
// shape they look at and on broken JSON.
func TestFactsOneReading(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		e := factsEvent(t, factsJSON(t, true, rapid.Bool().Draw(t, "bad")))
		got := make([]optString, len(valueColumns))
		want := make([]optString, len(valueColumns))
		gotTouch := factsOf(&e, got)
		wantTouch := touchOf(&e)
		valuesOf(want, e.Raw)
		if gotTouch != wantTouch || !slices.Equal(got, want) {
			t.Fatalf("%s %s:\none pass %+v %+v\nreaders  %+v %+v", e.Type, e.Raw, gotTouch, got, wantTouch, want)
		}
	})
}

// mayHaveValues is the search the fill in SQL makes: a value property's
// name in quotes anywhere in the JSON.
func TestMayHaveValues(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		var b strings.Builder
		for range rapid.IntRange(0, 12).Draw(t, "parts") {
			b.WriteString(rapid.SampledFrom([]string{`"`, "v", "value", "revenue", `"value"`, `"revenue"`, "re", "x", `"re`}).Draw(t, "part"))
		}
		raw := []byte(b.String())
		want := strings.Contains(string(raw), `"revenue"`) || strings.Contains(string(raw), `"value"`)
		if got := mayHaveValues(raw); got != want {
			t.Fatalf("mayHaveValues(%s) = %v", raw, got)
		}
	})
}

// The touch and value columns Append writes for valid JSON of every shape
// (without repeated keys: of those the readers in Go take the last, DuckDB's
// JSON functions the first) are those the fill in SQL computes for the
// same rows (FillTouches: the
// touch columns exactly, the value columns as the amounts attribution
// reads from them).
func TestFactsAppendMatchesFill(t *testing.T) {
	s := openMem(t)
	ctx := context.Background()
	var evs []event.Event
	rapid.Check(t, func(t *rapid.T) {
		e := factsEvent(t, factsJSON(t, false, false))
		e.MessageID = fmt.Sprintf("m%05d", len(evs))
		e.Timestamp = time.Unix(int64(len(evs)), 0)
		e.ReceivedAt = e.Timestamp
		evs = append(evs, e)
	})
	if _, err := s.Append(ctx, evs); err != nil {
		t.Fatal(err)
	}
	read := func() []string {
		rows, err := s.db.QueryContext(ctx, `SELECT touch, touch_medium, touch_source, touch_campaign, touch_channel, touch_referrer, touch_page,
			prop_revenue, prop_value, raw FROM events ORDER BY message_id`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var c [9]sql.NullString
			var raw string
			if err := rows.Scan(&c[0], &c[1], &c[2], &c[3], &c[4], &c[5], &c[6], &c[7], &c[8], &raw); err != nil {
				t.Fatal(err)
			}
			line := raw + " →"
			for _, v := range c[:7] {
				line += fmt.Sprintf(" %v/%q", v.Valid, v.String)
			}
			line += fmt.Sprintf(" %d %d", units(c[7]), units(c[8]))
			out = append(out, line)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	appended := read()
	if _, err := s.db.ExecContext(ctx, `UPDATE events SET touch = NULL, touch_medium = NULL, touch_source = NULL, touch_campaign = NULL,
		touch_channel = NULL, touch_referrer = NULL, touch_page = NULL, prop_revenue = NULL, prop_value = NULL`); err != nil {
		t.Fatal(err)
	}
	if n, err := s.FillTouches(ctx); err != nil || n == 0 {
		t.Fatalf("FillTouches = %d, %v", n, err)
	}
	filled := read()
	if len(appended) != len(evs) {
		t.Fatalf("%d rows, want %d", len(appended), len(evs))
	}
	for i := range appended {
		if appended[i] != filled[i] {
			t.Errorf("appended %s\nfilled   %s", appended[i], filled[i])
		}
	}
}
