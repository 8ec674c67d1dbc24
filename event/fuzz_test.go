package event

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"time"
)

// FuzzParseBatch checks, for any body, that parsing never panics, that a
// readable request accounts for every event exactly once (valid or
// quarantined, never dropped), and that what it accepts survives the log
// record round trip.
func FuzzParseBatch(f *testing.F) {
	for _, s := range []string{
		`{"batch":[{"type":"track","event":"A","userId":"u"}]}`,
		`{"batch":[{"type":"identify","userId":"u","traits":{"email":"a@b.c"},"timestamp":"2026-01-01T00:00:00Z","sentAt":"2026-01-01T00:00:01Z"}],"writeKey":"k"}`,
		`{"batch":[{"type":"page","anonymousId":"a","name":"\u00e9"},{"type":"nope"},1,"x",null,[]]}`,
		`{"batch":[{"type":"alias","userId":"u","previousId":"p","messageId":"m\"1"}],"sentAt":"2026-01-01T00:00:01+02:00"}`,
		`{"batch":[{"type":"track","event":"x","userId":"u","context":{"a":1}}],"context":{"b":2,"a":3},"integrations":{"All":false}}`,
		`{"batch":[]}`, `{}`, `[]`, `{"batch":[{"type":"track","userId":"u","event":"e","properties":{"a":[1,{"b":null}]}}]}`,
	} {
		f.Add([]byte(s))
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := ParseBatch(body, now)
		if err != nil {
			if _, ok := err.(*RequestError); !ok {
				t.Fatalf("error of type %T", err)
			}
			return
		}
		seen := map[int]bool{}
		for _, p := range req.Problems {
			if seen[p.Index] || p.Code == "" || p.Message == "" {
				t.Fatalf("bad problem %+v", p)
			}
			seen[p.Index] = true
		}
		for _, e := range req.Events {
			if !validDocument(e.Raw) {
				t.Fatalf("stored raw event is not valid JSON: %q", e.Raw)
			}
			if e.MessageID == "" || e.Type == "" || (e.UserID == "" && e.AnonymousID == "") || e.Timestamp.IsZero() {
				t.Fatalf("invalid event accepted: %+v", e)
			}
		}
		// The batch is scanned in one pass; each event must come out as
		// it does parsed on its own (a batch without context or sentAt
		// of its own changes nothing in its events).
		if !bytes.Contains(body, []byte(`"context"`)) && !bytes.Contains(body, []byte(`"integrations"`)) && !bytes.Contains(body, []byte(`"sentAt"`)) {
			for _, e := range req.Events {
				alone, p := ParseEvent("", e.Raw, now, e.MessageID)
				if p != nil {
					t.Fatalf("accepted in a batch, refused alone (%s %s): %s", p.Code, p.Field, e.Raw)
				}
				alone.MessageID = e.MessageID
				if !reflect.DeepEqual(alone, e) {
					t.Fatalf("in a batch %+v, alone %+v", e, alone)
				}
			}
		}
		rec := EncodeRecord("s", req.Events, req.Problems)
		evs, probs, err := DecodeRecord(rec)
		if err != nil || len(evs) != len(req.Events) || len(probs) != len(req.Problems) {
			t.Fatalf("record round trip: %v %d/%d %d/%d", err, len(evs), len(req.Events), len(probs), len(req.Problems))
		}
	})
}

// FuzzDecodeRecord checks that no byte string crashes the record decoder.
func FuzzDecodeRecord(f *testing.F) {
	f.Add(EncodeRecord("s", []Event{{MessageID: "m", Type: "track", Raw: []byte("{}")}}, nil))
	f.Add([]byte("TRC\x01\x01\xff\xff\xff\xff\x0f"))
	f.Add(encodeRecordV1("s", []Event{{MessageID: "m", Type: "track", Raw: []byte("{}")}}, nil))
	if _, chunk, err := EncodeBatch(nil, "s", []byte(`{"batch":[{"type":"track","event":"Order","userId":"user-1","messageId":"msg-1"}]}`), time.Unix(0, 0), nil, ""); err == nil {
		f.Add(append(append([]byte(nil), RecordHeader...), chunk...))
	}
	f.Fuzz(func(t *testing.T, rec []byte) {
		evs, _, err := DecodeRecord(rec)
		if err != nil {
			return
		}
		// What decodes encodes again to a record that decodes the same.
		again, _, err := DecodeRecord(EncodeRecord("", evs, nil))
		if err != nil || len(again) != len(evs) {
			t.Fatalf("re-encoded: %v, %d of %d events", err, len(again), len(evs))
		}
		for i := range evs {
			if evs[i].SourceID == "" {
				continue
			}
			again[i].SourceID = evs[i].SourceID
			if !equalEvent(again[i], evs[i]) {
				t.Fatalf("re-encoded %+v, decoded %+v", again[i], evs[i])
			}
		}
	})
}

func BenchmarkParseBatch(b *testing.B) {
	body := []byte(`{"batch":[`)
	for i := 0; i < 100; i++ {
		if i > 0 {
			body = append(body, ',')
		}
		body = append(body, `{"type":"track","event":"Product Viewed","userId":"user-12345","messageId":"msg-000000000001","timestamp":"2026-01-01T00:00:00.000Z","properties":{"sku":"A-1","price":12.5},"context":{"library":{"name":"bench"}}}`...)
	}
	body = append(body, `],"sentAt":"2026-01-01T00:00:01.000Z"}`...)
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := ParseBatch(body, time.Now()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "events/s")
}

// FuzzParseBatchContext checks, for any body and any User-Agent, that the
// server's context defaults never make an accepted event invalid JSON,
// never drop or duplicate an event, and never override what the event
// itself says.
func FuzzParseBatchContext(f *testing.F) {
	f.Add([]byte(`{"batch":[{"type":"track","event":"A","userId":"u"}]}`), "Mozilla/5.0")
	f.Add([]byte(`{"batch":[{"type":"page","anonymousId":"a","context":{"ip":"1.1.1.1"}},{"type":"track","userId":"u","event":"e","context":null}],"context":{"userAgent":"batch"}}`), "ua \"quoted\" \\")
	f.Add([]byte(`{"batch":[{"type":"identify","userId":"u","context":[]},{"type":"identify","userId":"u","context":"x"}]}`), "\u2028")
	f.Add([]byte(`{"batch":[{"type":"page","anonymousId":"a","context":{"ip":"10.1.2.0"},"Context":{"IP":"10.1.2.3"}},{"type":"page","anonymousId":"a","context":{"ip":"10.1.2.0"},"context":{"ip":"::1"}},{"type":"page","anonymousId":"a","c\u006fntext":{"ip":"10.1.2.3"}},{"type":"page","anonymousId":"a","context":{"\u0069p":"10.1.2.3"}}]}`), "ua")
	f.Add([]byte(`{"context":{"ip":"10.0.0.9"},"batch":[{"type":"track","userId":"u","event":"e","context":{"ip":"10.0.0.0"}}]}`), "ua")
	// Events that take the defaults straight into their entries (no
	// batch context) beside ones with more edits: integrations, an
	// address to minimise, a null or absent context, one that has a
	// default already.
	f.Add([]byte(`{"batch":[{"type":"track","userId":"u","event":"e","context":{"ip":"10.0.0.9"}},{"type":"track","userId":"u","event":"e","context":null},{"type":"track","userId":"u","event":"e"},{"type":"track","userId":"u","event":"e","context":{"userAgent":"own","library":{"name":"x"}}},{"type":"track","userId":"u","event":"e","context":{}}]}`), "ua")
	f.Add([]byte(`{"integrations":{"All":false},"batch":[{"type":"track","userId":"u","event":"e","context":{"ip":"10.0.0.9"}},{"type":"track","userId":"u","event":"e","context":{ }},{"type":"track","userId":"u","event":"e"}]}`), "ua")
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, body []byte, ua string) {
		defaults, _ := json.Marshal(map[string]string{"ip": "192.0.2.1", "userAgent": ua})
		plain, perr := ParseBatch(body, now)
		req, err := ParseBatchContext(body, now, defaults, "")
		if (perr == nil) != (err == nil) {
			t.Fatalf("with defaults: error %v, without: %v", err, perr)
		}
		if err != nil {
			return
		}
		if len(req.Events) != len(plain.Events) || len(req.Problems) != len(plain.Problems) {
			t.Fatalf("defaults changed the outcome: %d/%d events, %d/%d problems", len(req.Events), len(plain.Events), len(req.Problems), len(plain.Problems))
		}
		for i, e := range req.Events {
			if !validDocument(e.Raw) {
				t.Fatalf("event with defaults is not valid JSON: %q", e.Raw)
			}
			var with, without struct {
				Context map[string]any `json:"context"`
			}
			if json.Unmarshal(e.Raw, &with) != nil || json.Unmarshal(plain.Events[i].Raw, &without) != nil {
				continue // a context that is not an object is kept as sent
			}
			for k, v := range without.Context {
				if fmt.Sprint(with.Context[k]) != fmt.Sprint(v) {
					t.Fatalf("context.%s was %v, the defaults made it %v", k, v, with.Context[k])
				}
			}
		}
		// With the source's IP policy known, the parse minimises: each
		// event as MinimiseEvent leaves the event parsed without it,
		// whether the defaults' address needs an edit or not (a server
		// that knows the policy adds it minimised).
		for _, ip := range []string{"192.0.2.1", "192.0.2.0"} {
			defaults, _ := json.Marshal(map[string]string{"ip": ip, "userAgent": ua})
			asSent, err := ParseBatchContext(body, now, defaults, "")
			if err != nil {
				t.Fatal(err)
			}
			for _, policy := range IPPolicies {
				min, err := ParseBatchContext(body, now, defaults, policy)
				if err != nil || len(min.Events) != len(asSent.Events) || len(min.Problems) != len(asSent.Problems) {
					t.Fatalf("policy %s changed the outcome: %v", policy, err)
				}
				for i, e := range min.Events {
					if want := MinimiseEvent(asSent.Events[i].Raw, policy); !bytes.Equal(e.Raw, want) {
						t.Fatalf("policy %s, defaults %s: parsed %s, minimised after %s", policy, defaults, e.Raw, want)
					}
				}
				// Encoded as parsed: the entries AppendEntries makes of
				// the listed events (message ids generated for events
				// without one aside), the same problems.
				held := []byte("held")
				enc, entries, err := EncodeBatch(held, "src", body, now, defaults, policy)
				if err != nil || enc.Encoded != len(min.Events) || enc.Events != nil || len(enc.Problems) != len(min.Problems) || enc.Count() != min.Count() || enc.WriteKey != min.WriteKey {
					t.Fatalf("EncodeBatch: %v, %d encoded, %d problems; parsed %d events, %d problems", err, enc.Encoded, len(enc.Problems), len(min.Events), len(min.Problems))
				}
				if !bytes.HasPrefix(entries, held) {
					t.Fatalf("EncodeBatch did not append to dst: %q", entries)
				}
				got, _, err := DecodeRecord(append(append([]byte(nil), RecordHeader...), entries[len(held):]...))
				if err != nil || len(got) != len(min.Events) {
					t.Fatalf("encoded entries: %v, %d events", err, len(got))
				}
				for i, e := range min.Events {
					g := got[i]
					if g.MessageID != e.MessageID && len(g.MessageID) == 36 && len(e.MessageID) == 36 {
						g.MessageID = e.MessageID // generated, one each time
					}
					e.SourceID = "src"
					if !equalEvent(g, e) {
						t.Fatalf("encoded %+v, parsed %+v", g, e)
					}
				}
				for i, p := range enc.Problems {
					if p.Code != min.Problems[i].Code || p.Field != min.Problems[i].Field || p.Index != min.Problems[i].Index {
						t.Fatalf("problem %d: encoded %+v, parsed %+v", i, p, min.Problems[i])
					}
				}
			}
		}
	})
}
