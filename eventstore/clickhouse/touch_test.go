package clickhouse

import (
	"context"
	"path/filepath"
	"testing"

	"tandem/attribution"
	"tandem/attribution/attributiontest"
	"tandem/event"
	"tandem/testserver"
)

// unread is a store whose events lose their touch columns after each
// Append (touch 255, as the rows stored before schema version 4 have).
type unread struct {
	*Store
	t *testing.T
}

func (u unread) Append(ctx context.Context, events []event.Event) (int, error) {
	n, err := u.Store.Append(ctx, events)
	if err != nil {
		return n, err
	}
	if err := u.conn.Exec(ctx, `ALTER TABLE `+u.table("events")+` UPDATE touch = 255, touch_medium = '', touch_source = '', touch_campaign = '',
		touch_channel = '', touch_referrer = '', touch_page = '' WHERE 1`); err != nil {
		u.t.Fatal(err)
	}
	if err := u.waitMutations(ctx); err != nil {
		u.t.Fatal(err)
	}
	return n, nil
}

// TestTouchesUnread runs the attribution scripts over events whose touch
// columns are unread: attribution reads their JSON instead, with the
// same hand-computed answers.
func TestTouchesUnread(t *testing.T) {
	files, _ := filepath.Glob("../../attribution/testdata/*.txt")
	if len(files) == 0 {
		t.Fatal("no scripts in attribution/testdata")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			s := open(t, testserver.ClickHouse(t))
			defer s.Close()
			attributiontest.Run(t, f, unread{s, t}, []attribution.Source{s.Attribution()}, false)
		})
	}
}

// TestTouchColumns checks the touch columns Append writes.
func TestTouchColumns(t *testing.T) {
	s := open(t, testserver.ClickHouse(t))
	defer s.Close()
	ctx := context.Background()
	evs := []event.Event{
		{SourceID: "web", MessageID: "m1", Type: "page", UserID: "u1",
			Raw: []byte(`{"type":"page","context":{"page":{"url":"https://www.Shop.example/?utm_medium=cpc&utm_source=google&utm_campaign=w&gclid=1","referrer":"https://www.Bing.com/x"}}}`)},
		{SourceID: "web", MessageID: "m2", Type: "track", UserID: "u1", Raw: []byte(`{"type":"track","event":"Ping","channel":"server"}`)},
		{SourceID: "web", MessageID: "m3", Type: "track", UserID: "u1", Raw: []byte(`{"type":"track","event":"Visit","properties":{"channel":" Field Sales "}}`)},
	}
	if _, err := s.Append(ctx, evs); err != nil {
		t.Fatal(err)
	}
	rows, err := s.conn.Query(ctx, `SELECT message_id, touch, touch_medium, touch_source, touch_campaign, touch_channel, touch_referrer, touch_page FROM `+s.table("events")+` ORDER BY message_id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	want := map[string][8]any{
		"m1": {"m1", uint8(7), "cpc", "google", "w", "", "bing.com", "shop.example"},
		"m2": {"m2", uint8(0), "", "", "", "", "", ""},
		"m3": {"m3", uint8(1), "", "", "", "Field Sales", "", ""},
	}
	n := 0
	for rows.Next() {
		var got [8]any
		var id string
		var bits uint8
		var f [6]string
		if err := rows.Scan(&id, &bits, &f[0], &f[1], &f[2], &f[3], &f[4], &f[5]); err != nil {
			t.Fatal(err)
		}
		got = [8]any{id, bits, f[0], f[1], f[2], f[3], f[4], f[5]}
		if got != want[id] {
			t.Errorf("%s: %v, want %v", id, got, want[id])
		}
		n++
	}
	if err := rows.Err(); err != nil || n != len(want) {
		t.Fatalf("%d rows (%v)", n, err)
	}
}
