package clickhouse

import (
	"context"
	"strings"
	"testing"

	"tandem/testserver"
)

// siphash64 agrees with the server's sipHash64 on strings of every
// length around the 8-byte blocks and on UTF-8: else Erase's mutations
// would match nothing.
func TestSiphash64MatchesServer(t *testing.T) {
	s := open(t, testserver.ClickHouse(t))
	for _, v := range []string{"", "a", "1234567", "12345678", "123456789", "user_id:u-zoe-5d1c", "email:zoë@example.com", strings.Repeat("x", 100)} {
		var got uint64
		if err := s.conn.QueryRow(context.Background(), "SELECT sipHash64("+quote(v)+")").Scan(&got); err != nil {
			t.Fatal(err)
		}
		if want := siphash64([]byte(v)); got != want {
			t.Errorf("sipHash64(%q): server %d, siphash64 %d", v, got, want)
		}
	}
}
