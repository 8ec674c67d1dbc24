package duckdb

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"tandem/event"
)

// touchEvents are events of each kind the touch columns tell apart, with
// the columns each must get (touch, then medium, source, campaign,
// channel, referrer host, page host; "-" for NULL).
var touchEvents = []struct {
	typ, raw, want string
}{
	{"page", `{"type":"page","context":{"page":{"url":"https://www.Shop.example/?utm_medium=cpc&utm_source=google&utm_campaign=w&gclid=1","referrer":"https://www.Bing.com/x"}}}`,
		"7 cpc google w - bing.com shop.example"},
	{"page", `{"type":"page","context":{"campaign":{"medium":" email ","name":"june"},"page":{"url":"https://shop.example/?utm_medium=cpc&utm_source=mailer"}}}`,
		"1 email mailer june - - shop.example"},
	{"page", `{"type":"page","properties":{"url":"https://shop.example/p","referrer":"not a url"}}`, "5 - - - - - shop.example"},
	{"page", `{"type":"page","name":"Home"}`, "1 - - - - - -"},
	{"track", `{"type":"track","event":"Product Viewed","context":{"page":{"url":"https://shop.example/?gclid=1","referrer":"https://www.google.com/"}}}`,
		"0 - - - - - -"},
	{"track", `{"type":"track","event":"Ping","channel":"server"}`, "0 - - - - - -"},
	{"track", `{"type":"track","event":"Visit","properties":{"channel":" Field Sales "}}`, "1 - - - Field Sales - -"},
	{"screen", `{"type":"screen","name":"Home","context":{"campaign":{"source":"push"}}}`, "1 - push - - - -"},
	{"identify", `{"type":"identify","context":{"campaign":{"medium":"cpc"}}}`, "0 - - - - - -"},
}

// touchRows reads the touch columns of the events, by message id.
func touchRows(t *testing.T, db *sql.DB) []string {
	t.Helper()
	rows, err := db.Query(`SELECT touch, touch_medium, touch_source, touch_campaign, touch_channel, touch_referrer, touch_page FROM events ORDER BY message_id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var bits sql.NullInt64
		var f [6]sql.NullString
		if err := rows.Scan(&bits, &f[0], &f[1], &f[2], &f[3], &f[4], &f[5]); err != nil {
			t.Fatal(err)
		}
		s := "-"
		if bits.Valid {
			s = fmt.Sprint(bits.Int64)
		}
		for _, v := range f {
			if v.Valid {
				s += " " + v.String
			} else {
				s += " -"
			}
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func checkTouchRows(t *testing.T, got []string) {
	t.Helper()
	if len(got) != len(touchEvents) {
		t.Fatalf("%d rows, want %d", len(got), len(touchEvents))
	}
	for i, c := range touchEvents {
		if got[i] != c.want {
			t.Errorf("%s %s: touch columns %q, want %q", c.typ, c.raw, got[i], c.want)
		}
	}
}

func touchEvent(i int) event.Event {
	ts := time.Date(2024, 5, 1, 10, 0, i, 0, time.UTC)
	return event.Event{SourceID: "web", MessageID: fmt.Sprintf("m%02d", i), Type: touchEvents[i].typ, UserID: "u1",
		Timestamp: ts, ReceivedAt: ts, Raw: []byte(touchEvents[i].raw)}
}

// TestTouchColumnsAppend checks the touch columns Append writes.
func TestTouchColumnsAppend(t *testing.T) {
	s := openMem(t)
	var evs []event.Event
	for i := range touchEvents {
		evs = append(evs, touchEvent(i))
	}
	if _, err := s.Append(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	checkTouchRows(t, touchRows(t, s.db))
}

// TestTouchColumnsMigrated opens a database of schema version 2 (before
// the touch columns): Open adds them and fills them from the JSON, the
// same as Append writes them; erasure and its compaction keep the other
// rows' columns and leave nothing of the erased ones in the files.
func TestTouchColumnsMigrated(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "events.duckdb")
	old, err := sql.Open("duckdb", path)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range append(migrations[:2:2],
		`CREATE TABLE schema_version (version INTEGER NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp)`,
		`INSERT INTO schema_version (version) VALUES (1), (2)`) {
		if _, err := old.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	secret := "zoe-campaign-5c1e"
	for i := range touchEvents {
		e := touchEvent(i)
		if _, err := old.Exec(`INSERT INTO events (source_id, message_id, type, user_id, timestamp, received_at, raw, key_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			e.SourceID, e.MessageID, e.Type, e.UserID, e.Timestamp, e.ReceivedAt, string(e.Raw), uint64(i)); err != nil {
			t.Fatal(err)
		}
	}
	// The erased profile's page view: its campaign is in its URL only.
	if _, err := old.Exec(`INSERT INTO events (source_id, message_id, type, user_id, timestamp, received_at, raw, key_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		"web", "z1", "page", "u-zoe", time.Now(), time.Now(), `{"type":"page","context":{"page":{"url":"https://shop.example/?utm_campaign=`+secret+`"}}}`, uint64(99)); err != nil {
		t.Fatal(err)
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got := touchRows(t, s.db)
	if len(got) != len(touchEvents)+1 || got[len(got)-1] != "1 - - "+secret+" - - shop.example" {
		t.Fatalf("after Open: %q", got)
	}
	checkTouchRows(t, got[:len(touchEvents)])

	ctx := context.Background()
	if _, err := s.Erase(ctx, []string{"user_id:u-zoe"}); err != nil {
		t.Fatal(err)
	}
	checkTouchRows(t, touchRows(t, s.db))
	err = filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte(secret)) {
			t.Errorf("%s still holds the erased campaign", e.Name())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Nothing left to fill.
	if n, err := s.FillTouches(ctx); err != nil || n != 0 {
		t.Fatalf("FillTouches after Open: %d, %v", n, err)
	}
	var v int
	if err := s.db.QueryRow(`SELECT max(version) FROM schema_version`).Scan(&v); err != nil || v != len(migrations) {
		t.Fatalf("schema version %d (%v)", v, err)
	}
}
