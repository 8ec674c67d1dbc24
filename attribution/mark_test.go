package attribution

import (
	"bytes"
	"encoding/json"
	"testing"
)

// BenchmarkMarkFromJSON is the cost event stores pay at append for each
// event's touch columns: a page view (parsed), and a track event without
// campaign or channel (not parsed: no candidate).
func BenchmarkMarkFromJSON(b *testing.B) {
	for _, c := range []struct{ name, typ, raw string }{
		{"page", "page", `{"type":"page","name":"Home","anonymousId":"a-91f2","messageId":"m-1","timestamp":"2026-01-05T10:00:00Z","context":{"campaign":{"medium":"cpc","source":"google","name":"winter"},"page":{"url":"https://shop.example/?utm_medium=cpc&gclid=x","referrer":"https://www.google.com/","title":"Shop","path":"/"},"library":{"name":"analytics.js","version":"4.1.0"},"userAgent":"Mozilla/5.0 (X11; Linux x86_64)","ip":"192.0.2.1"},"properties":{"path":"/","title":"Shop"}}`},
		{"track", "track", `{"type":"track","event":"Product Viewed","userId":"u-1","messageId":"m-2","timestamp":"2026-01-05T10:00:00Z","context":{"library":{"name":"analytics.js","version":"4.1.0"},"userAgent":"Mozilla/5.0 (X11; Linux x86_64)","ip":"192.0.2.1"},"properties":{"sku":"x-1","price":12.5}}`},
	} {
		raw := []byte(c.raw)
		b.Run(c.name, func(b *testing.B) {
			for range b.N {
				MarkFromJSON(c.typ, "web", raw)
			}
		})
	}
}

// fieldsStd is FieldsFromJSON by encoding/json into maps (exact keys, the
// last of repeated keys): the reference the fast reader must agree with.
func fieldsStd(raw []byte, sourceID string) (Fields, bool) {
	var doc map[string]any
	if json.Unmarshal(raw, &doc) != nil {
		return Fields{}, false
	}
	obj := func(m map[string]any, k string) map[string]any { v, _ := m[k].(map[string]any); return v }
	ctx := obj(doc, "context")
	camp, page, props := obj(ctx, "campaign"), obj(ctx, "page"), obj(doc, "properties")
	f := Fields{Type: text(doc["type"]), SourceID: sourceID,
		Medium: text(camp["medium"]), CampaignSource: text(camp["source"]), Campaign: text(camp["name"]),
		URL: text(page["url"]), Referrer: text(page["referrer"]), Channel: text(props["channel"])}
	if f.Type == "page" {
		if f.URL == "" {
			f.URL = text(props["url"])
		}
		if f.Referrer == "" {
			f.Referrer = text(props["referrer"])
		}
	}
	if f.Channel == "" {
		f.Channel = text(ctx["channel"])
	}
	if f.Channel == "" {
		f.Channel = text(doc["channel"])
	}
	return f, true
}

var fieldSeeds = []string{
	`{"type":"page","context":{"campaign":{"medium":"cpc","source":"google","name":"w"},"page":{"url":"https://a.example/?utm_source=x","referrer":"https://b.example/"}}}`,
	`{"type":"page","properties":{"url":"https://a.example/p","referrer":"r","channel":7.50},"context":{"channel":true}}`,
	`{"type":"track","channel":"call-centre","context":{"campaign":null,"page":[1,{"url":"x"}]},"properties":{"channel":""}}`,
	`{"type":"page","context":{"page":{"url":"a"},"page":{"referrer":"b"}},"context":{"campaign":{"name":"\u0063\"q\\"}}}`,
	` { "\u0074ype" : "page" , "context" : { "campaign" : { "medium" : "e\u00e9\ud83d\ude00" , "source" : 1e3 } } } `,
	`{"type":"page","properties":{"url":"u","nested":{"url":"no","a":[{"}":"]"}]}},"x":"\"}"}`,
	`[1,2]`, `null`, `{}`, `{"context":"x","properties":[]}`,
}

// TestFieldsFromJSON checks the fast reader against encoding/json.
func TestFieldsFromJSON(t *testing.T) {
	for _, s := range fieldSeeds {
		want, ok := fieldsStd([]byte(s), "src")
		if !ok {
			want = Fields{SourceID: "src"} // no object: nothing
		}
		if got := FieldsFromJSON([]byte(s), "src"); got != want {
			t.Errorf("%s:\n got %+v\nwant %+v", s, got, want)
		}
	}
}

func FuzzFieldsFromJSON(f *testing.F) {
	for _, s := range fieldSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		want, ok := fieldsStd(raw, "src")
		if !ok {
			return // stored events are valid JSON objects
		}
		if got := FieldsFromJSON(raw, "src"); got != want {
			t.Fatalf("%q:\n got %+v\nwant %+v", raw, got, want)
		}
		// MarkFromJSON, which skips the reading when mayHaveFields
		// finds no field's key, is the Mark of what it reads.
		for _, typ := range []string{"page", "track"} {
			f := want
			f.Type = typ
			wantM, wantOK := MarkOf(&f)
			if !MayTouch(typ, raw) {
				wantM, wantOK = Mark{}, false
			}
			if m, ok := MarkFromJSON(typ, "src", raw); m != wantM || ok != wantOK {
				t.Fatalf("MarkFromJSON(%s, %q) = %+v %v, want %+v %v", typ, raw, m, ok, wantM, wantOK)
			}
		}
	})
}

// BenchmarkFieldsFromJSON compares the fast reader with encoding/json on
// a page view.
func BenchmarkFieldsFromJSON(b *testing.B) {
	raw := []byte(`{"type":"page","name":"Home","anonymousId":"a-91f2","messageId":"m-1","timestamp":"2026-01-05T10:00:00Z","context":{"campaign":{"medium":"cpc","source":"google","name":"winter"},"page":{"url":"https://shop.example/?utm_medium=cpc&gclid=x","referrer":"https://www.google.com/","title":"Shop","path":"/"},"library":{"name":"analytics.js","version":"4.1.0"},"userAgent":"Mozilla/5.0 (X11; Linux x86_64)","ip":"192.0.2.1"},"properties":{"path":"/","title":"Shop"}}`)
	b.Run("fast", func(b *testing.B) {
		for range b.N {
			FieldsFromJSON(raw, "web")
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		for range b.N {
			fieldsStd(raw, "web")
		}
	})
}

// MayTouch's search for the Candidate strings finds them wherever they
// are, as a search for each would.
func TestMayTouchSearch(t *testing.T) {
	parts := []string{"c", "ch", "channel", "campaign", "chann", "cam", "x", `"`, "campaig"}
	for i := range 20000 {
		var raw []byte
		for n := i; n > 0; n /= len(parts) {
			raw = append(raw, parts[n%len(parts)]...)
		}
		want := bytes.Contains(raw, []byte("channel")) || bytes.Contains(raw, []byte("campaign"))
		if got := MayTouch("track", raw); got != want {
			t.Fatalf("MayTouch(track, %q) = %v", raw, got)
		}
	}
	if !MayTouch("page", nil) || MayTouch("identify", []byte(`{"channel":"email"}`)) {
		t.Fatal("MayTouch by type")
	}
}

// mayHaveFields finds a field's key in quotes, or a backslash, wherever
// it is, as a search for each would; and where it finds none, MarkFromJSON
// (which then reads nothing) gives what reading the JSON gives.
func TestMayHaveFields(t *testing.T) {
	parts := []string{`"`, "u", "url", `"url"`, `"referrer"`, `"channel"`, `"campaign"`, `\`, "c", "r", `"r`, "x", "{", `:1}`, `"type":"page"`, `"ur`}
	for i := range 40000 {
		var raw []byte
		for n := i; n > 0; n /= len(parts) {
			raw = append(raw, parts[n%len(parts)]...)
		}
		want := bytes.IndexByte(raw, '\\') >= 0
		for _, k := range fieldKeys {
			want = want || bytes.Contains(raw, []byte(`"`+k+`"`))
		}
		if got := mayHaveFields(raw); got != want {
			t.Fatalf("mayHaveFields(%q) = %v", raw, got)
		}
	}
	for _, s := range append(fieldSeeds, `{"type":"page","properties":{"path":"/"}}`, `{"type":"page","x":"u\"rl"}`, `{"type":"page"`) {
		for _, typ := range []string{"page", "track", "screen"} {
			f := FieldsFromJSON([]byte(s), "src")
			f.Type = typ
			wantM, wantOK := MarkOf(&f)
			if !MayTouch(typ, []byte(s)) {
				wantM, wantOK = Mark{}, false
			}
			if m, ok := MarkFromJSON(typ, "src", []byte(s)); m != wantM || ok != wantOK {
				t.Errorf("MarkFromJSON(%s, %s) = %+v %v, want %+v %v", typ, s, m, ok, wantM, wantOK)
			}
		}
	}
}
