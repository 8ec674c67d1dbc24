package jetstream_test

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"tandem/event"
	"tandem/eventlog/jetstream"
)

// TestRewriteErases: Rewrite replaces each record holding a person's
// entries by a copy without them and erases the original: their bytes are
// in no file of the store afterwards (message blocks and indexes), the
// other entries are kept, a consumer that had acknowledged the original is
// named done in the copy and one that had not reads the copy.
func TestRewriteErases(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	l := openEmbedded(t, jetstream.EmbeddedOptions{Dir: dir})
	defer l.Close()
	secret := "ann.secret-9e1@example.com"
	ts := time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)
	ev := func(user, msg, extra string) event.Event {
		return event.Event{MessageID: msg, Type: "track", Name: "Viewed", UserID: user, Timestamp: ts, ReceivedAt: ts,
			Raw: []byte(fmt.Sprintf(`{"type":"track","event":"Viewed","userId":%q,"messageId":%q%s}`, user, msg, extra))}
	}
	mixed := event.EncodeRecord("src", []event.Event{ev("bob", "m1", ""), ev("ann", "m2", `,"properties":{"email":"`+secret+`"}`), ev("bob", "m3", "")},
		[]event.Problem{{MessageID: "m4", Code: "missing_field", Raw: []byte(`{"userId":"ann","phone":"+4915112345678"}`)}})
	annOnly := event.EncodeRecord("src", []event.Event{ev("ann", "m5", `,"properties":{"email":"`+secret+`"}`)}, nil)
	bobOnly := event.EncodeRecord("src", []event.Event{ev("bob", "m6", "")}, nil)
	for _, r := range [][]byte{mixed, annOnly, bobOnly} {
		if _, err := l.Append(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	// "early" processes everything; "late" nothing yet.
	early, err := l.Consumer(ctx, "early")
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := early.Fetch(ctx, 10, time.Second)
	if err != nil || len(msgs) != 3 {
		t.Fatalf("fetch: %d, %v", len(msgs), err)
	}
	if err := early.Ack(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	late, err := l.Consumer(ctx, "late")
	if err != nil {
		t.Fatal(err)
	}
	grep := func(needle string) []string {
		var in []string
		_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return nil
			}
			if b, err := os.ReadFile(p); err == nil && bytes.Contains(b, []byte(needle)) {
				in = append(in, p)
			}
			return nil
		})
		return in
	}
	if len(grep(secret)) == 0 {
		t.Fatal("the value is in no file before: the search proves nothing")
	}
	drop := func(e event.Entry) bool {
		return e.UserID == "ann" || bytes.Contains(e.Raw, []byte(`"userId":"ann"`))
	}
	st, err := l.Rewrite(ctx, func(rec []byte, done []string) ([]byte, bool, error) {
		out, n, err := event.Redact(rec, drop, done)
		return out, n > 0, err
	})
	if err != nil {
		t.Fatal(err)
	}
	if st.Scanned != 3 || st.Rewritten != 1 || st.Erased != 2 {
		t.Errorf("stats %+v, want 3 scanned, 1 rewritten, 2 erased", st)
	}
	for _, needle := range []string{secret, "+4915112345678", `"userId":"ann"`} {
		if in := grep(needle); len(in) > 0 {
			t.Errorf("%q still in %v", needle, in)
		}
	}
	// The late consumer reads bob's record and the copy; the copy names
	// early as done.
	got, err := late.Fetch(ctx, 10, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var msgIDs []string
	var copyDone []string
	for _, m := range got {
		evs, probs, done, err := event.DecodeRecordDone(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		if len(probs) != 0 {
			t.Errorf("ann's refused event kept: %+v", probs)
		}
		for _, e := range evs {
			msgIDs = append(msgIDs, e.MessageID)
		}
		if done != nil {
			copyDone = done
		}
	}
	slices.Sort(msgIDs)
	if !slices.Equal(msgIDs, []string{"m1", "m3", "m6"}) || !slices.Equal(copyDone, []string{"early"}) {
		t.Errorf("late read %v, copy done by %v", msgIDs, copyDone)
	}
	// A second rewrite finds nothing more.
	st, err = l.Rewrite(ctx, func(rec []byte, done []string) ([]byte, bool, error) {
		out, n, err := event.Redact(rec, drop, done)
		return out, n > 0, err
	})
	if err != nil || st.Erased != 0 {
		t.Errorf("second rewrite: %+v, %v", st, err)
	}
}

// BenchmarkRewriteScan is what an erasure costs the log when the person
// is in none of its records: a read of each of 10,000 records (of 20
// events each). Its figure is per scan of the whole log.
func BenchmarkRewriteScan(b *testing.B) {
	ctx := b.Context()
	l := openEmbedded(b, jetstream.EmbeddedOptions{Dir: b.TempDir()})
	defer l.Close()
	ts := time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)
	var evs []event.Event
	for i := range 20 {
		evs = append(evs, event.Event{MessageID: fmt.Sprintf("m%d", i), Type: "track", UserID: fmt.Sprintf("u%d", i), Timestamp: ts, ReceivedAt: ts,
			Raw: []byte(`{"type":"track","event":"Viewed","properties":{"path":"/products/42","n":1}}`)})
	}
	rec := event.EncodeRecord("src", evs, nil)
	for range 10000 {
		if _, err := l.Append(ctx, rec); err != nil {
			b.Fatal(err)
		}
	}
	drop := func(e event.Entry) bool { return e.UserID == "nobody" }
	for b.Loop() {
		st, err := l.Rewrite(ctx, func(rec []byte, done []string) ([]byte, bool, error) {
			out, n, err := event.Redact(rec, drop, done)
			return out, n > 0, err
		})
		if err != nil || st.Scanned != 10000 || st.Erased != 0 {
			b.Fatalf("%+v, %v", st, err)
		}
	}
}
