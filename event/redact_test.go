package event

import (
	"slices"
	"testing"
	"time"
)

// TestRedact: the dropped entries leave, the others stay byte for byte and
// in order, the done entry names the consumers (with those of an earlier
// rewrite), and decoding skips it.
func TestRedact(t *testing.T) {
	ts := time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)
	evs := []Event{
		{MessageID: "m1", Type: "track", UserID: "bob", Timestamp: ts, ReceivedAt: ts, Raw: []byte(`{"userId":"bob"}`)},
		{MessageID: "m2", Type: "track", UserID: "ann", Timestamp: ts, ReceivedAt: ts, Raw: []byte(`{"userId":"ann"}`)},
		{MessageID: "m3", Type: "identify", AnonymousID: "a-bob", Timestamp: ts, ReceivedAt: ts, Raw: []byte(`{"anonymousId":"a-bob"}`)},
	}
	probs := []Problem{{MessageID: "m4", Code: "missing_field", Raw: []byte(`{"userId":"ann"}`)}}
	rec := EncodeRecord("src", evs, probs)
	ann := func(e Entry) bool { return e.UserID == "ann" || string(e.Raw) == `{"userId":"ann"}` }
	out, n, err := Redact(rec, ann, []string{"pipeline"})
	if err != nil || n != 2 {
		t.Fatalf("Redact = %d, %v", n, err)
	}
	got, gotProbs, done, err := DecodeRecordDone(out)
	if err != nil || len(gotProbs) != 0 || !slices.Equal(done, []string{"pipeline"}) {
		t.Fatalf("decoded: %v %v %v", gotProbs, done, err)
	}
	if len(got) != 2 || got[0].MessageID != "m1" || got[1].MessageID != "m3" || string(got[1].Raw) != `{"anonymousId":"a-bob"}` {
		t.Errorf("kept: %+v", got)
	}
	if plain, _, err := DecodeRecord(out); err != nil || len(plain) != 2 {
		t.Errorf("DecodeRecord of a rewritten record: %d, %v", len(plain), err)
	}
	// Rewritten again: the earlier consumers stay named.
	out2, n, err := Redact(out, func(e Entry) bool { return e.MessageID == "m1" }, []string{"delivery-x"})
	if err != nil || n != 1 || !slices.Equal(DoneBy(out2), []string{"delivery-x", "pipeline"}) {
		t.Errorf("second redact: %d %v %v", n, DoneBy(out2), err)
	}
	// Nothing of the person: nil. All of it: nil too, with the count.
	if out, n, err := Redact(rec, func(Entry) bool { return false }, nil); out != nil || n != 0 || err != nil {
		t.Errorf("nothing dropped: %v %d %v", out, n, err)
	}
	if out, n, err := Redact(rec, func(Entry) bool { return true }, nil); out != nil || n != 4 || err != nil {
		t.Errorf("all dropped: %v %d %v", out, n, err)
	}
	if _, _, err := Redact([]byte("nope"), ann, nil); err == nil {
		t.Error("a bad record redacted")
	}
}

// FuzzRedact checks, for any bytes, that Redact never panics, and that
// what it returns decodes, holds no entry it was told to drop and keeps
// the consumers it was told are done.
func FuzzRedact(f *testing.F) {
	ts := time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)
	f.Add(EncodeRecord("s", []Event{{MessageID: "m1", UserID: "ann", Timestamp: ts, Raw: []byte("{}")}, {MessageID: "m2", UserID: "bob", Raw: []byte("{}")}},
		[]Problem{{MessageID: "m3", Raw: []byte(`{"userId":"ann"}`)}}))
	f.Add([]byte("TRC\x01\x03\x02\x01a\x01b"))
	f.Add(encodeRecordV1("s", []Event{{MessageID: "m1", UserID: "ann", Raw: []byte("{}")}, {MessageID: "m2", UserID: "bob", Raw: []byte("{}")}}, nil))
	f.Fuzz(func(t *testing.T, rec []byte) {
		drop := func(e Entry) bool { return e.UserID == "ann" || e.MessageID == "m3" }
		out, n, err := Redact(rec, drop, []string{"pipeline"})
		if err != nil || out == nil {
			return
		}
		evs, probs, done, err := DecodeRecordDone(out)
		if err != nil {
			t.Fatalf("Redact made an undecodable record: %v", err)
		}
		if n == 0 || !slices.Contains(done, "pipeline") {
			t.Fatalf("dropped %d, done %v", n, done)
		}
		for _, e := range evs {
			if drop(Entry{UserID: e.UserID, MessageID: e.MessageID}) {
				t.Fatalf("kept %+v", e)
			}
		}
		for _, p := range probs {
			if drop(Entry{MessageID: p.MessageID}) {
				t.Fatalf("kept %+v", p)
			}
		}
	})
}
