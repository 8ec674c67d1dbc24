package identity

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"tandem/event"
)

// The faster Store.Observe must read every batch exactly as the one of
// base 11fe318 did (kept as oldObserve in observe_oracle_test.go): the
// same sets of identifiers with the same earliest events, the same seen
// times and the same traits.

// sameRules are rule sets the comparison runs under: the defaults, a
// phone region (national numbers become identifiers), and custom types
// in another priority order with other blocked values.
func sameRules(t testing.TB) []*Store {
	var stores []*Store
	for _, r := range []Rules{
		DefaultRules(),
		func() Rules { r := DefaultRules(); r.PhoneRegion = "DE"; return r }(),
		{
			Types: []Type{
				{Name: "device_id", Priority: 1},
				{Name: AnonymousID, Priority: 2},
				{Name: Email, Priority: 3, Limit: 2},
				{Name: UserID, Priority: 4, Limit: 1},
			},
			Blocked: []string{"u2", "a9", "x@y.z"},
		},
	} {
		c, err := compile(r)
		if err != nil {
			t.Fatal(err)
		}
		s := &Store{}
		s.rules.Store(c)
		stores = append(stores, s)
	}
	return stores
}

// genEvent writes one event's JSON from small pools of values, so that a
// batch repeats ids, times and message ids (ties), and mixes events with
// and without traits, context traits, external ids, repeated and
// differently cased keys, nulls and values of the wrong type.
func genEvent(r *rand.Rand) string {
	pick := func(xs ...string) string { return xs[r.IntN(len(xs))] }
	ids := []string{`"u1"`, `"u2"`, `" u1 "`, `"null"`, `"UNKNOWN"`, `"ü-1"`, `"a1"`, `"a9"`, `"Ana@Example.com"`, `""`}
	emails := []string{`"ana@example.com"`, `" Ana@Example.COM "`, `"test@example.com"`, `"x@y.z"`, `"no-at"`, `null`, `3`, `["x"]`}
	phones := []string{`"+49 30 1234567"`, `"030 1234567"`, `"00000"`, `"0171 5550199"`, `"+1 202 555 0143"`, `49301234567`, `{"n":1}`}
	traitObj := func() string {
		var m []string
		for range r.IntN(4) {
			switch r.IntN(7) {
			case 0:
				m = append(m, `"email":`+pick(emails...))
			case 1:
				m = append(m, `"phone":`+pick(phones...))
			case 2:
				m = append(m, `"crm_id":`+pick(`"C-1"`, `"C-2"`, `12`, `" "`))
			case 3:
				m = append(m, `"device_id":`+pick(`"d1"`, `"d2"`))
			case 4:
				m = append(m, `"plan":`+pick(`"pro"`, `"free"`, `null`))
			case 5:
				m = append(m, `"Email":`+pick(emails...))
			default:
				m = append(m, `"name":{"first":"Ana"}`)
			}
		}
		return "{" + strings.Join(m, ",") + "}"
	}
	traitsVal := func() string {
		switch r.IntN(16) {
		case 0, 1:
			return "null"
		case 2:
			return "[1]"
		default:
			return traitObj()
		}
	}
	typ := pick("identify", "identify", "track", "track", "page", "screen", "group", "alias")
	f := []string{`"type":"` + typ + `"`}
	if typ == "track" {
		f = append(f, `"event":"Order Completed"`)
	}
	if r.IntN(4) != 0 {
		f = append(f, `"userId":`+pick(ids...))
	}
	if r.IntN(4) != 0 {
		f = append(f, `"anonymousId":`+pick(ids...))
	}
	if typ == "alias" || r.IntN(10) == 0 {
		f = append(f, `"previousId":`+pick(ids...))
	}
	if typ == "group" || r.IntN(10) == 0 {
		f = append(f, `"groupId":`+pick(`"g1"`, `"g2"`, `""`))
	}
	if r.IntN(2) == 0 {
		f = append(f, `"messageId":`+pick(`"m1"`, `"m2"`, `"m3"`))
	}
	f = append(f, `"timestamp":"2026-12-0`+pick("1", "2", "3")+`T10:00:0`+pick("0", "1")+`Z"`)
	for range r.IntN(3) {
		switch r.IntN(5) {
		case 0:
			f = append(f, pick(`"traits"`, `"Traits"`)+`:`+traitsVal())
		case 1:
			var c []string
			for range 1 + r.IntN(3) {
				switch r.IntN(4) {
				case 0:
					c = append(c, pick(`"traits"`, `"TRAITS"`)+`:`+traitsVal())
				case 1:
					var xs []string
					for range r.IntN(3) {
						xs = append(xs, pick(
							`{"id":"x@y.z","type":"email"}`,
							`{"id":42,"type":"crm_id"}`,
							`{"id":"d1","type":"device_id"}`,
							`{"id":"u9","type":"user_id"}`,
							`{"id":"C-3","type":null}`,
							`{"type":"email"}`,
							`{"ID":"Bo@Example.com","Type":"email"}`,
							`null`,
							`{"id":"d2","type":5}`,
							`"x"`))
					}
					c = append(c, pick(`"externalIds"`, `"externalids"`)+`:`+pick("null", "["+strings.Join(xs, ",")+"]"))
				case 2:
					c = append(c, `"library":{"name":"bench","traits":"not these"}`)
				default:
					c = append(c, `"userAgent":"Mozilla/5.0 (X11; Linux x86_64)"`)
				}
			}
			f = append(f, `"context":{`+strings.Join(c, ",")+`}`)
		case 2:
			f = append(f, `"context":`+pick("null", "null", "null", `"x"`))
		case 3:
			f = append(f, `"properties":{"traits":{"email":"p@example.com"},"externalIds":[]}`)
		default:
			f = append(f, `"properties":{"path":"/`+pick("a", "b")+`"}`)
		}
	}
	r.Shuffle(len(f), func(i, j int) { f[i], f[j] = f[j], f[i] })
	return "{" + strings.Join(f, ",") + "}"
}

// compareObserve checks that Observe and the oracle read events alike
// under every rule set.
func compareObserve(t *testing.T, stores []*Store, events []event.Event) {
	t.Helper()
	for k, s := range stores {
		got, want := s.Observe(events), oldObserve(s, events)
		if !reflect.DeepEqual(got, want) {
			var raws []string
			for _, e := range events {
				raws = append(raws, string(e.Raw))
			}
			t.Fatalf("rules %d: Observe differs from before\ngot  %+v\nwant %+v\nevents:\n%s", k, got, want, strings.Join(raws, "\n"))
		}
	}
}

func TestObserveSameAsBefore(t *testing.T) {
	stores := sameRules(t)
	r := rand.New(rand.NewPCG(15, 2026))
	received := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	parsed, quarantined := 0, 0
	for batch := range 400 {
		var events []event.Event
		for i := range 1 + r.IntN(120) {
			raw := genEvent(r)
			e, prob := event.ParseEvent(fmt.Sprintf("src-%d", r.IntN(2)), []byte(raw), received, fmt.Sprintf("gen-%d-%d", batch, i%7))
			if prob != nil {
				quarantined++
				continue
			}
			events = append(events, e)
		}
		parsed += len(events)
		compareObserve(t, stores, events)
		// The same events in another order (and so other earliest ties).
		r.Shuffle(len(events), func(i, j int) { events[i], events[j] = events[j], events[i] })
		compareObserve(t, stores, events)
	}
	// The generator must mostly write events the parser takes.
	if parsed < 3*quarantined {
		t.Fatalf("only %d events parsed, %d quarantined", parsed, quarantined)
	}
}

// FuzzObserveSame compares Observe with the oracle on batches from
// outside: one event's JSON a line.
func FuzzObserveSame(f *testing.F) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 8 {
		var lines []string
		for range 1 + r.IntN(6) {
			lines = append(lines, genEvent(r))
		}
		f.Add(strings.Join(lines, "\n"))
	}
	stores := sameRules(f)
	received := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, batch string) {
		var events []event.Event
		for i, line := range strings.Split(batch, "\n") {
			e, prob := event.ParseEvent("src", []byte(line), received, fmt.Sprintf("m-%d", i%3))
			if prob == nil {
				events = append(events, e)
			}
		}
		compareObserve(t, stores, events)
	})
}
