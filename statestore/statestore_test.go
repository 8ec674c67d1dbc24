package statestore

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestRebindDollar(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`SELECT 1`, `SELECT 1`},
		{`SELECT ?`, `SELECT $1`},
		{`INSERT INTO t (a, b, c) VALUES (?, ?, ?)`, `INSERT INTO t (a, b, c) VALUES ($1, $2, $3)`},
		{`WHERE a = ? AND b = '?' AND c = ?`, `WHERE a = $1 AND b = '?' AND c = $2`},
		{`WHERE a = 'it''s ?' AND b = ?`, `WHERE a = 'it''s ?' AND b = $1`},
		{`WHERE "we?ird" = ? AND "a""?" = ?`, `WHERE "we?ird" = $1 AND "a""?" = $2`},
		{"WHERE a = ? -- why?\nAND b = ?", "WHERE a = $1 -- why?\nAND b = $2"},
		{"WHERE a = ? -- trailing?", "WHERE a = $1 -- trailing?"},
		{`WHERE /* a? /* nested? */ still? */ a = ?`, `WHERE /* a? /* nested? */ still? */ a = $1`},
		{`WHERE a = E'\'?' AND b = ?`, `WHERE a = E'\'?' AND b = $1`},
		{`WHERE a = e'x\\' AND b = ?`, `WHERE a = e'x\\' AND b = $1`},
		{`WHERE name = 'E' AND a = ?`, `WHERE name = 'E' AND a = $1`},
		{`WHERE a = $$what?$$ AND b = ?`, `WHERE a = $$what?$$ AND b = $1`},
		{`WHERE a = $tag$ $$ ? $tag$ AND b = ?`, `WHERE a = $tag$ $$ ? $tag$ AND b = $1`},
		{`WHERE a = $1 AND b = ?`, `WHERE a = $1 AND b = $1`}, // $1 is not a dollar quote; existing $n are not counted
		{`SELECT ?,?`, `SELECT $1,$2`},
		{`WHERE a = 'unterminated ?`, `WHERE a = 'unterminated ?`},
		{`(received_at, log_seq) < (?, ?)`, `(received_at, log_seq) < ($1, $2)`},
	} {
		if got := RebindDollar(tc.in); got != tc.want {
			t.Errorf("RebindDollar(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	// Ten and more placeholders.
	q := strings.Repeat("?,", 11) + "?"
	want := "$1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12"
	if got := RebindDollar(q); got != want {
		t.Errorf("RebindDollar(%q) = %q, want %q", q, got, want)
	}
}

func TestSplitStatements(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{``, nil},
		{` ; ;; `, nil},
		{`-- only a comment`, nil},
		{"/* c */ -- d\n", nil},
		{`CREATE TABLE a (x TEXT)`, []string{`CREATE TABLE a (x TEXT)`}},
		{"CREATE TABLE a (x TEXT);\n\nCREATE INDEX i ON a (x);\n", []string{`CREATE TABLE a (x TEXT)`, `CREATE INDEX i ON a (x)`}},
		{`INSERT INTO a VALUES ('x;y'); INSERT INTO a VALUES ("q;")`, []string{`INSERT INTO a VALUES ('x;y')`, `INSERT INTO a VALUES ("q;")`}},
		{"-- a; b\nSELECT 1; /* c; */ SELECT 2", []string{"-- a; b\nSELECT 1", "/* c; */ SELECT 2"}},
		{`SELECT $$a;b$$; SELECT 2`, []string{`SELECT $$a;b$$`, `SELECT 2`}},
	} {
		if got := SplitStatements(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("SplitStatements(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestNewID(t *testing.T) {
	seen := map[string]bool{}
	prev := ""
	for range 10000 {
		id := NewID("src")
		if !strings.HasPrefix(id, "src_") || len(id) != len("src_")+24 {
			t.Fatalf("NewID = %q", id)
		}
		if seen[id] {
			t.Fatalf("NewID repeated %q", id)
		}
		seen[id] = true
		if id <= prev {
			t.Fatalf("NewID %q after %q: not increasing", id, prev)
		}
		prev = id
	}
}

func TestNextIDClock(t *testing.T) {
	idMu.Lock()
	defer idMu.Unlock()
	saved, savedMS := idLast, idLastMS
	defer func() { idLast, idLastMS = saved, savedMS }()
	idLast, idLastMS = [15]byte{}, 0

	key := func(b [15]byte) string { return idEncoding.EncodeToString(b[:]) }
	a := nextID(5000)
	b := nextID(5000) // same millisecond
	c := nextID(4000) // clock stepped back
	d := nextID(6000)
	if !(key(a) < key(b) && key(b) < key(c) && key(c) < key(d)) {
		t.Fatalf("ids not increasing: %s %s %s %s", key(a), key(b), key(c), key(d))
	}
	// A carry out of the random part moves to the next millisecond.
	idLast = [15]byte{0, 0, 0, 0, 0x1b, 0x58, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	idLastMS = 7000
	e := nextID(7000)
	if idLastMS != 7001 || e[5] != 0x59 || e[6] != 0 {
		t.Fatalf("carry: ms = %d, bytes %x", idLastMS, e)
	}
	if f := nextID(7000); key(f) <= key(e) {
		t.Fatalf("id %s after %s", key(f), key(e))
	}
}

func TestCursor(t *testing.T) {
	for _, vals := range [][]string{{"a"}, {"usr_06x", ""}, {"1", "2", "3"}, {"é\"/?&="}} {
		c := EncodeCursor(vals...)
		if strings.ContainsAny(c, "+/=&? ") {
			t.Errorf("cursor %q is not URL-safe", c)
		}
		got, err := DecodeCursor(c, len(vals))
		if err != nil || !slices.Equal(got, vals) {
			t.Errorf("DecodeCursor(EncodeCursor(%q)) = %q, %v", vals, got, err)
		}
		if _, err := DecodeCursor(c, len(vals)+1); !errors.Is(err, ErrBadCursor) {
			t.Errorf("DecodeCursor with the wrong arity: %v", err)
		}
	}
	if got, err := DecodeCursor("", 2); got != nil || err != nil {
		t.Errorf("DecodeCursor(\"\") = %q, %v; want nil, nil", got, err)
	}
	for _, bad := range []string{"!", "e30", "bnVsbA", "WzFd", "garbage"} {
		_, err := DecodeCursor(bad, 1)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != "cursor" || !errors.Is(err, ErrBadCursor) {
			t.Errorf("DecodeCursor(%q): %v, want a FieldError for cursor matching ErrBadCursor", bad, err)
		}
	}
}

func TestLimit(t *testing.T) {
	for _, tc := range []struct{ in, want int }{
		{-5, DefaultLimit}, {0, DefaultLimit}, {1, 1}, {50, 50}, {MaxLimit, MaxLimit}, {MaxLimit + 1, MaxLimit},
	} {
		if got := Limit(tc.in); got != tc.want {
			t.Errorf("Limit(%d) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

var zeroTime time.Time

func TestTime(t *testing.T) {
	if TimeToDB(TimeFromDB(0)) != 0 || !TimeFromDB(TimeToDB(zeroTime)).IsZero() {
		t.Error("zero time does not round-trip")
	}
}

func TestParts(t *testing.T) {
	for _, tc := range []struct {
		n, max int
		want   []int // part sizes
	}{
		{0, 400, nil},
		{1, 400, []int{1}},
		{400, 400, []int{400}},
		{401, 400, []int{400, 1}},
		{1203, 400, []int{400, 400, 400, 2, 1}},
		{399, 400, []int{256, 128, 8, 4, 2, 1}},
		{250, 100, []int{100, 100, 32, 16, 2}},
		{3, 0, []int{1, 1, 1}},
	} {
		var got []int
		next := 0
		for start, end := range Parts(tc.n, tc.max) {
			if start != next {
				t.Fatalf("Parts(%d, %d): a part starts at %d, want %d", tc.n, tc.max, start, next)
			}
			got = append(got, end-start)
			next = end
		}
		if !slices.Equal(got, tc.want) || next != tc.n {
			t.Errorf("Parts(%d, %d) = sizes %v ending at %d, want %v", tc.n, tc.max, got, next, tc.want)
		}
	}
}

// TestPartsWithoutCache: a database that caches no statements (where each
// statement is a round trip) gets full parts and one remainder.
func TestPartsWithoutCache(t *testing.T) {
	db := New(nil, nil)
	var got []int
	for start, end := range db.Parts(1203, 400) {
		got = append(got, end-start)
	}
	if want := []int{400, 400, 400, 3}; !slices.Equal(got, want) {
		t.Errorf("Parts(1203, 400) without a statement cache = %v, want %v", got, want)
	}
	cached := New(nil, nil, WithStatementCache())
	got = got[:0]
	for start, end := range cached.Parts(1203, 400) {
		got = append(got, end-start)
	}
	if want := []int{400, 400, 400, 2, 1}; !slices.Equal(got, want) {
		t.Errorf("Parts(1203, 400) with a statement cache = %v, want %v", got, want)
	}
}
