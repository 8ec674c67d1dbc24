package duckdb

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"pgregory.net/rapid"

	"tandem/event"
)

// The chunk writer reads the driver's C connection from an unexported
// field; a driver upgrade that moves it must fail here, not at run time.
func TestConnLayout(t *testing.T) {
	if !connLayout {
		t.Fatal("duckdb-go's Conn no longer starts with its C connection: update connHandle (chunk.go)")
	}
}

// Every column the chunk writer fills reads back as the event it came
// from: strings on both sides of DuckDB's 12-byte inline limit, empty,
// non-ASCII and invalid UTF-8 (replaced), optional ones NULL when empty,
// times at microsecond precision (NULL for a zero optional one), the
// fingerprint as its SQL definition computes it, and the touch and value
// columns; in batches that end inside, at and across the 2,048-row chunk.
func TestChunkWriterRoundTrip(t *testing.T) {
	s := openMem(t)
	ctx := context.Background()
	batch := 0
	str := rapid.OneOf(
		rapid.SampledFrom([]string{"", "a", "twelve bytes", "thirteen byte", "é", "ü-twelve-byt", "\xff\xfebad", strings.Repeat("x", 300)}),
		rapid.StringN(0, 30, -1),
	)
	when := rapid.Custom(func(t *rapid.T) time.Time {
		if rapid.IntRange(0, 4).Draw(t, "zero") == 0 {
			return time.Time{}
		}
		sec := rapid.Int64Range(-62135596800, 253402300799).Draw(t, "sec")
		return time.Unix(sec, rapid.Int64Range(0, 999_999_999).Draw(t, "nsec")).In(time.FixedZone("x", 3600))
	})
	rapid.Check(t, func(rt *rapid.T) {
		batch++
		n := rapid.SampledFrom([]int{1, 7, 2047, 2048, 2049, 4500}).Draw(rt, "n")
		raws := []string{
			`{"type":"page","properties":{"url":"https://x.example/?utm_source=news&utm_medium=email","referrer":"https://r.example/"}}`,
			`{"type":"track","event":"Order Completed","properties":{"revenue":12.5,"value":"é"}}`,
			"{\"type\":\"track\",\"x\":\"\xff\"}",
		}
		evs := make([]event.Event, n)
		for i := range evs {
			ts := when.Draw(rt, "ts")
			if ts.IsZero() {
				ts = time.Unix(int64(i), 0)
			}
			evs[i] = event.Event{
				SourceID: fmt.Sprintf("s%d-", batch) + str.Draw(rt, "src"), MessageID: fmt.Sprintf("%06d-%s", i, str.Draw(rt, "msg")),
				Type: rapid.SampledFrom([]string{"page", "track", "identify"}).Draw(rt, "type"), Name: str.Draw(rt, "name"),
				UserID: str.Draw(rt, "user"), AnonymousID: str.Draw(rt, "anon"), GroupID: str.Draw(rt, "group"), PreviousID: str.Draw(rt, "prev"),
				Timestamp: ts, OriginalTimestamp: when.Draw(rt, "orig"), SentAt: when.Draw(rt, "sent"), ReceivedAt: ts.Add(time.Second),
				Raw: []byte(rapid.SampledFrom(raws).Draw(rt, "raw")),
			}
		}
		if stored, err := s.Append(ctx, evs); err != nil || stored != n {
			rt.Fatalf("Append = %d, %v", stored, err)
		}
		rows, err := s.db.QueryContext(ctx, `SELECT source_id, message_id, type, name, user_id, anonymous_id, group_id, previous_id,
			timestamp, original_timestamp, sent_at, received_at, raw,
			key_hash = ('0x' || left(sha256(strlen(source_id)::VARCHAR || ':' || source_id || message_id), 16))::UBIGINT,
			touch, touch_medium, touch_source, touch_campaign, touch_channel, touch_referrer, touch_page,
			prop_revenue IS NOT DISTINCT FROM json_extract_string(raw, '$.properties."revenue"'),
			prop_value IS NOT DISTINCT FROM json_extract_string(raw, '$.properties."value"')
			FROM events WHERE starts_with(source_id, ?) ORDER BY message_id`, fmt.Sprintf("s%d-", batch))
		if err != nil {
			rt.Fatal(err)
		}
		defer rows.Close()
		i := 0
		for ; rows.Next(); i++ {
			var (
				strs                [8]sql.NullString
				times               [4]sql.NullTime
				raw                 string
				hashOK, revOK, vaOK bool
				touch               uint8
				touchStrs           [6]sql.NullString
			)
			dst := []any{}
			for j := range strs {
				dst = append(dst, &strs[j])
			}
			for j := range times {
				dst = append(dst, &times[j])
			}
			dst = append(dst, &raw, &hashOK, &touch)
			for j := range touchStrs {
				dst = append(dst, &touchStrs[j])
			}
			dst = append(dst, &revOK, &vaOK)
			if err := rows.Scan(dst...); err != nil {
				rt.Fatal(err)
			}
			if i >= n {
				rt.Fatalf("more than %d rows", n)
			}
			e := &evs[i]
			for j, want := range []string{e.SourceID, e.MessageID, e.Type, e.Name, e.UserID, e.AnonymousID, e.GroupID, e.PreviousID} {
				want = strings.ToValidUTF8(want, "\uFFFD")
				if j >= 3 && want == "" {
					if strs[j].Valid {
						rt.Fatalf("row %d column %d = %q, want NULL", i, j, strs[j].String)
					}
					continue
				}
				if !strs[j].Valid || strs[j].String != want {
					rt.Fatalf("row %d column %d = %q (valid %v), want %q", i, j, strs[j].String, strs[j].Valid, want)
				}
			}
			for j, want := range []time.Time{e.Timestamp, e.OriginalTimestamp, e.SentAt, e.ReceivedAt} {
				if want.IsZero() && (j == 1 || j == 2) {
					if times[j].Valid {
						rt.Fatalf("row %d time %d = %v, want NULL", i, j, times[j].Time)
					}
					continue
				}
				if !times[j].Valid || !times[j].Time.Equal(time.UnixMicro(want.UnixMicro())) {
					rt.Fatalf("row %d time %d = %v, want %v", i, j, times[j].Time, want)
				}
			}
			if want := strings.ToValidUTF8(string(e.Raw), "\uFFFD"); raw != want || !utf8.ValidString(raw) {
				rt.Fatalf("row %d raw = %q, want %q", i, raw, want)
			}
			if !hashOK {
				rt.Fatalf("row %d: key_hash is not the fingerprint of its key", i)
			}
			tr := touchOf(e)
			if touch != tr.bits {
				rt.Fatalf("row %d touch = %d, want %d", i, touch, tr.bits)
			}
			for j, want := range tr.strs {
				if touchStrs[j].String != want || touchStrs[j].Valid != (want != "") {
					rt.Fatalf("row %d %s = %v, want %q", i, touchColumns[j+1], touchStrs[j], want)
				}
			}
			if !revOK || !vaOK {
				rt.Fatalf("row %d: value columns differ from the JSON's (%v, %v)", i, revOK, vaOK)
			}
		}
		if err := rows.Err(); err != nil {
			rt.Fatal(err)
		}
		if i != n {
			rt.Fatalf("%d rows, want %d", i, n)
		}
	})
}
