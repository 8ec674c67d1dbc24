package identity

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"tandem/event"
	"tandem/eventstore"
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

// TestObserveBatch: a batch's observation (one string per repeated
// identifier, sets found by their identifiers) is what reading each event
// on its own gives: the earliest event of each distinct set, the first
// and last time of each identifier, the latest value of each trait of a
// profile key.
func TestObserveBatch(t *testing.T) {
	c, err := compile(DefaultRules())
	if err != nil {
		t.Fatal(err)
	}
	s := &Store{}
	s.rules.Store(c)
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	var events []event.Event
	for i := range 300 {
		p := i % 37 // people come back: their ids repeat across the batch
		var raw string
		switch i % 6 {
		case 0, 1:
			raw = fmt.Sprintf(`{"type":"page","anonymousId":"a%d"}`, p)
		case 2:
			raw = fmt.Sprintf(`{"type":"identify","anonymousId":"a%d","userId":"u%d","traits":{"email":"U%d@Example.com","plan":"p%d"}}`, p, p, p, i)
		case 3:
			raw = fmt.Sprintf(`{"type":"track","event":"x","anonymousId":"a%d","userId":"u%d","context":{"traits":{"plan":"c%d"}}}`, p, p, i)
		case 4:
			raw = fmt.Sprintf(`{"type":"alias","userId":"u%d","previousId":"a%d"}`, p, (p+1)%37)
		case 5:
			raw = fmt.Sprintf(`{"type":"identify","userId":" u%d ","traits":{"crm_id":%d}}`, p, p)
		}
		// Times go back and forth, and some repeat, so the earliest
		// event of a set is not always the first one seen.
		at := t0.Add(time.Duration((i*7919)%50) * time.Second).Format(time.RFC3339Nano)
		raw = `{"timestamp":"` + at + `",` + raw[1:]
		e, prob := event.ParseEvent("", []byte(raw), t0, fmt.Sprintf("m%03d", (i*31)%300))
		if prob != nil {
			t.Fatalf("%s: %+v", raw, prob)
		}
		e.SourceID = fmt.Sprint("src", i%2)
		events = append(events, e)
	}
	got := s.Observe(events)

	want := &Observed{sets: map[setKey]link{}, seen: map[string][2]int64{}, traits: map[traitKey]traitVal{}}
	for i := range events {
		e := &events[i]
		o := c.observe(e)
		at := o.at.UnixNano()
		for k, v := range o.traits {
			tk := traitKey{eventstore.ProfileKey(e.UserID, e.AnonymousID), k}
			if old, ok := want.traits[tk]; !ok || at > old.at || (at == old.at && o.msg > old.msg) {
				want.traits[tk] = traitVal{v, at, o.msg}
			}
		}
		for _, id := range o.ids {
			r, ok := want.seen[id]
			if !ok {
				r = [2]int64{at, at}
			}
			want.seen[id] = [2]int64{min(r[0], at), max(r[1], at)}
		}
		if len(o.ids) == 0 {
			continue
		}
		l := link{ids: o.ids, at: o.at, source: o.source, msg: o.msg, typ: e.Type}
		h := setHash(o.ids)
		if old, ok := want.sets[h]; !ok || l.less(old) < 0 {
			want.sets[h] = l
		}
	}
	if len(want.sets) < 37*3 || len(want.traits) < 37*2 {
		t.Fatalf("the events should make many sets and traits: %d sets, %d traits", len(want.sets), len(want.traits))
	}
	if !reflect.DeepEqual(got.sets, want.sets) {
		t.Errorf("sets differ:\n got %v\nwant %v", got.sets, want.sets)
	}
	if !reflect.DeepEqual(got.seen, want.seen) {
		t.Errorf("seen differ:\n got %v\nwant %v", got.seen, want.seen)
	}
	if !reflect.DeepEqual(got.traits, want.traits) {
		t.Errorf("traits differ:\n got %v\nwant %v", got.traits, want.traits)
	}
}

// TestMentionsTraitsRandom compares mentionsTraits with bytes.Contains on
// short random texts made of the letters that matter, with either string
// placed at every offset (a pair s" split between the scanner's words
// among them).
func TestMentionsTraitsRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	alpha := []byte(`"s traitsexternalIds{}:`)
	for range 100000 {
		b := make([]byte, r.IntN(48))
		for i := range b {
			b[i] = alpha[r.IntN(len(alpha))]
		}
		if len(b) > 13 && r.IntN(3) == 0 {
			copy(b[r.IntN(len(b)-12):], []string{`"traits"`, `"externalIds"`}[r.IntN(2)])
		}
		want := bytes.Contains(b, []byte(`"traits"`)) || bytes.Contains(b, []byte(`"externalIds"`))
		if got := mentionsTraits(b); got != want {
			t.Fatalf("mentionsTraits(%q) = %v, want %v", b, got, want)
		}
	}
}
