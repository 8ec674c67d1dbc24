package duckdb

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"tandem/event"
)

// valueRaws are events whose value properties take each form the JSON
// allows, and lookalikes that must not be read as one.
var valueRaws = []string{
	`{"type":"track","event":"Order Completed","properties":{"revenue":12.50,"value":3}}`,
	`{"type":"track","event":"Order Completed","properties":{"revenue":" 7.25 ","value":"x"}}`,
	`{"type":"track","event":"Order Completed","properties":{"revenue":-1e3,"value":1.7976931348623157e308}}`,
	`{"type":"track","event":"Order Completed","properties":{"revenue":123456789012345678901234567890}}`,
	`{"type":"track","event":"Order Completed","properties":{"revenue":true,"value":null}}`,
	`{"type":"track","event":"Order Completed","properties":{"revenue":{"amount":5},"value":[1]}}`,
	`{"type":"track","event":"Order Completed","properties":{"total":9},"context":{"revenue":4,"value":2}}`,
	`{"type":"track","event":"Order Completed","revenue":8,"properties":{"Revenue":6,"value":"1\u00e9"}}`,
	`{"type":"track","event":"Order Completed","properties":{"revenue":0.1,"value":"2.675"}}`,
}

// units is how attribution reads a value (attribution's minorUnits): the
// cents of the number it parses to, 0 for no number.
func units(v sql.NullString) int64 {
	if !v.Valid {
		return 0
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(v.String), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > 1e13 {
		return 0
	}
	return int64(math.Round(f * 100))
}

// checkValueColumns checks that every row's value columns read as the
// same amounts as its JSON does.
func checkValueColumns(t *testing.T, db *sql.DB, want int) {
	t.Helper()
	rows, err := db.Query(`SELECT raw, prop_revenue, json_extract_string(raw, '$.properties."revenue"'), prop_value, json_extract_string(raw, '$.properties."value"') FROM events ORDER BY message_id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n, nonzero := 0, 0
	for rows.Next() {
		var raw string
		var col, js [2]sql.NullString
		if err := rows.Scan(&raw, &col[0], &js[0], &col[1], &js[1]); err != nil {
			t.Fatal(err)
		}
		for i := range col {
			if units(col[i]) != units(js[i]) {
				t.Errorf("%s: column %d reads %v (%q), the JSON %v (%q)", raw, i, units(col[i]), col[i].String, units(js[i]), js[i].String)
			}
			if units(col[i]) != 0 {
				nonzero++
			}
		}
		n++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if n != want || nonzero < 5 {
		t.Fatalf("%d rows (want %d), %d values", n, want, nonzero)
	}
}

// TestValueColumns checks the value columns Append writes, and those
// FillTouches fills for rows inserted by SQL, against the JSON.
func TestValueColumns(t *testing.T) {
	ctx := context.Background()
	s := openMem(t)
	ts := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	var evs []event.Event
	for i, raw := range valueRaws {
		evs = append(evs, event.Event{SourceID: "web", MessageID: fmt.Sprintf("a%02d", i), Type: "track", Name: "Order Completed",
			UserID: "u1", Timestamp: ts, ReceivedAt: ts, Raw: []byte(raw)})
	}
	if _, err := s.Append(ctx, evs); err != nil {
		t.Fatal(err)
	}
	checkValueColumns(t, s.db, len(valueRaws))
	for i, raw := range valueRaws {
		if _, err := s.db.Exec(`INSERT INTO events (source_id, message_id, type, name, user_id, timestamp, received_at, raw, key_hash) VALUES ('web', ?, 'track', 'Order Completed', 'u1', ?, ?, ?, ?)`,
			fmt.Sprintf("s%02d", i), ts, ts, raw, uint64(1000+i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.FillTouches(ctx); err != nil {
		t.Fatal(err)
	}
	checkValueColumns(t, s.db, 2*len(valueRaws))
}

// TestValueColumnsMigrated opens a database of schema version 3 (before
// the value columns): Open adds them and fills them from the JSON.
func TestValueColumnsMigrated(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.duckdb")
	old, err := sql.Open("duckdb", path)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range append(migrations[:3:3],
		`CREATE TABLE schema_version (version INTEGER NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp)`,
		`INSERT INTO schema_version (version) VALUES (1), (2), (3)`) {
		if _, err := old.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	ts := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, raw := range valueRaws {
		if _, err := old.Exec(`INSERT INTO events (source_id, message_id, type, name, user_id, timestamp, received_at, raw, key_hash, touch) VALUES ('web', ?, 'track', 'Order Completed', 'u1', ?, ?, ?, ?, 0)`,
			fmt.Sprintf("m%02d", i), ts, ts, raw, uint64(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	checkValueColumns(t, s.db, len(valueRaws))
}
