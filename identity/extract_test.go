package identity

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"tandem/event"
)

// FuzzReadFields checks the scanner-based reading of an event's traits and
// external ids against encoding/json decoding the same struct, on any
// event collection accepts. Where the two are known to part (a key that
// matches only under Unicode case folding, a repeated externalIds whose
// elements encoding/json decodes over the previous ones) the input is
// skipped.
func FuzzReadFields(f *testing.F) {
	for _, seed := range []string{
		`{"type":"identify","userId":"u1","traits":{"email":" Ana@Example.com ","plan":"pro","n":null}}`,
		`{"type":"track","event":"x","anonymousId":"a1","context":{"traits":{"phone":"0171 555","crm_id":"C-1"},"externalIds":[{"id":"x@y.z","type":"email"},{"id":42,"type":"crm_id"},null,{"ID":"c","Type":"crm_id"}]}}`,
		`{"type":"identify","userId":"u","Traits":{"a":1},"traits":{"b":[1,2]},"traits":null,"TRAITS":{"c":{"d":"e"}}}`,
		`{"type":"identify","userId":"u","context":{"traits":"x"},"traits":{"email":"a@b.c"}}`,
		`{"type":"identify","userId":"u","context":{"externalIds":[{"type":5}]},"traits":{"email":"a@b.c"}}`,
		`{"type":"identify","userId":"u","context":null,"context":{"tr\u0061its":{"k\u00e9y":"v"},"externalIds":{}}}`,
		`{"type":"group","userId":"u","groupId":"g","traits":{"name":"Acme"},"context":{"externalIds":null}}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if got, want := mentionsTraits(raw), bytes.Contains(raw, []byte(`"traits"`)) || bytes.Contains(raw, []byte(`"externalIds"`)); got != want {
			t.Fatalf("mentionsTraits %v, bytes.Contains %v: %q", got, want, raw)
		}
		e, prob := event.ParseEvent("", raw, time.Unix(1700000000, 0), "msg-1")
		if prob != nil {
			return
		}
		got, gotOK := readFields(e.Raw)
		for _, c := range e.Raw {
			if c >= 0x80 {
				return // Unicode case folding
			}
		}
		if bytes.Count(bytes.ToLower(e.Raw), []byte("externalids")) > 1 {
			return
		}
		var want struct {
			Traits  map[string]json.RawMessage `json:"traits"`
			Context struct {
				Traits      map[string]json.RawMessage `json:"traits"`
				ExternalIDs []struct {
					ID   json.RawMessage `json:"id"`
					Type string          `json:"type"`
				} `json:"externalIds"`
			} `json:"context"`
		}
		wantOK := json.Unmarshal(e.Raw, &want) == nil
		if gotOK != wantOK {
			t.Fatalf("read %v, encoding/json %v: %s", gotOK, wantOK, e.Raw)
		}
		if !gotOK {
			return
		}
		sameMap := func(name string, a, b map[string]json.RawMessage) {
			if (a == nil) != (b == nil) || len(a) != len(b) {
				t.Fatalf("%s: read %q, encoding/json %q: %s", name, a, b, e.Raw)
			}
			for k, v := range b {
				if w, ok := a[k]; !ok || !bytes.Equal(w, v) {
					t.Fatalf("%s.%s: read %q, encoding/json %q: %s", name, k, w, v, e.Raw)
				}
			}
		}
		sameMap("traits", got.traits, want.Traits)
		sameMap("context.traits", got.ctxTraits, want.Context.Traits)
		if len(got.externalIDs) != len(want.Context.ExternalIDs) {
			t.Fatalf("externalIds: read %d, encoding/json %d: %s", len(got.externalIDs), len(want.Context.ExternalIDs), e.Raw)
		}
		for i, x := range want.Context.ExternalIDs {
			if g := got.externalIDs[i]; g.typ != x.Type || !bytes.Equal(g.id, x.ID) {
				t.Fatalf("externalIds[%d]: read %q %q, encoding/json %q %q: %s", i, g.typ, g.id, x.Type, x.ID, e.Raw)
			}
		}
	})
}

// TestObserveTraits: an identify's traits override its context's, a
// track keeps only its context's, and identifiers come from both and from
// external ids.
func TestObserveTraits(t *testing.T) {
	c, err := compile(DefaultRules())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		raw    string
		ids    []string
		traits map[string]string
	}{
		{`{"type":"identify","userId":"u1","traits":{"email":"A@x.org","plan":"pro"},"context":{"traits":{"plan":"free","crm_id":"C-1"}}}`,
			[]string{"user_id:u1", "email:a@x.org", "crm_id:C-1"}, map[string]string{"email": `"A@x.org"`, "plan": `"pro"`, "crm_id": `"C-1"`}},
		{`{"type":"track","event":"e","anonymousId":"a1","traits":{"email":"b@x.org"},"context":{"traits":{"plan":"free"},"externalIds":[{"id":"c@x.org","type":"email"}]}}`,
			[]string{"anonymous_id:a1", "email:c@x.org"}, map[string]string{"plan": `"free"`}},
		{`{"type":"identify","userId":"u2","traits":{"email":"d@x.org"},"context":{"traits":7}}`,
			[]string{"user_id:u2"}, nil},
	} {
		e, prob := event.ParseEvent("", []byte(tc.raw), time.Unix(1700000000, 0), "m")
		if prob != nil {
			t.Fatal(prob)
		}
		o := c.observe(&e)
		if want := c.sortIdents(tc.ids); len(o.ids) != len(want) || !bytes.Equal([]byte(join(o.ids)), []byte(join(want))) {
			t.Errorf("%s: ids %q, want %q", tc.raw, o.ids, want)
		}
		if len(o.traits) != len(tc.traits) {
			t.Errorf("%s: traits %q, want %q", tc.raw, o.traits, tc.traits)
		}
		for k, v := range tc.traits {
			if string(o.traits[k]) != v {
				t.Errorf("%s: trait %s = %s, want %s", tc.raw, k, o.traits[k], v)
			}
		}
	}
}

func join(ids []string) string {
	var b bytes.Buffer
	for _, id := range ids {
		b.WriteString(id)
		b.WriteByte('\n')
	}
	return b.String()
}

// TestMentionsTraits: the word-wide search finds either key at every
// position and alignment, and nothing in near misses.
func TestMentionsTraits(t *testing.T) {
	for _, key := range []string{`"traits"`, `"externalIds"`} {
		for pre := range 20 {
			for post := range 10 {
				raw := []byte(strings.Repeat(`s"`, pre/2) + strings.Repeat("x", pre%2) + key + strings.Repeat("s", post))
				if !mentionsTraits(raw) {
					t.Errorf("%q not found in %q", key, raw)
				}
				miss := bytes.Replace(raw, []byte(key), []byte(key[:len(key)-2]+`S"`), 1)
				if mentionsTraits(miss) {
					t.Errorf("found in %q", miss)
				}
			}
		}
	}
}
