package duckdb

import (
	"context"
	"os"
	"testing"
	"time"
)

func TestExpDupQuery(t *testing.T) {
	if os.Getenv("EXP") == "" {
		t.Skip()
	}
	t0 := time.Now()
	s, err := Open(templateDB(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	t.Logf("template+open %v", time.Since(t0))
	var hs []uint64
	rows, _ := s.db.Query("SELECT key_hash FROM events USING SAMPLE 10000 ROWS")
	for rows.Next() {
		var h uint64
		rows.Scan(&h)
		hs = append(hs, h)
	}
	rows.Close()
	for _, q := range []string{
		`SELECT source_id, message_id FROM events WHERE key_hash IN (SELECT unnest(?::UBIGINT[]))`,
		`SELECT source_id, message_id FROM events SEMI JOIN (SELECT unnest(?::UBIGINT[]) AS h) k ON key_hash = k.h`,
		`SELECT source_id, message_id FROM events WHERE list_contains(?::UBIGINT[], key_hash)`,
	} {
		for i := 0; i < 3; i++ {
			t0 := time.Now()
			rows, err := s.db.QueryContext(context.Background(), q, hs)
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for rows.Next() {
				n++
			}
			rows.Close()
			t.Logf("%v rows=%d %s", time.Since(t0), n, q[40:min(90, len(q))])
		}
	}
	t0 = time.Now()
	var x int
	s.db.QueryRow("SELECT count(*) FROM (SELECT unnest(?::UBIGINT[]))", hs).Scan(&x)
	t.Logf("bind only %v", time.Since(t0))
	r, _ := s.db.Query("EXPLAIN ANALYZE SELECT source_id, message_id FROM events WHERE key_hash IN (SELECT unnest(?::UBIGINT[]))", hs)
	for r.Next() {
		var a, b string
		r.Scan(&a, &b)
		t.Log(b)
	}
}
