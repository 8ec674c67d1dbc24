package event

import (
	"math/rand/v2"
	"testing"
	"time"
)

// checkParseUTC fails when parseUTC reads s and time.Parse does not, or
// reads it as another instant or location.
func checkParseUTC(t *testing.T, s string) {
	t.Helper()
	got, ok := parseUTC(s)
	if !ok {
		return // time.Parse decides
	}
	want, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("parseUTC(%q) = %v, but time.Parse refuses it: %v", s, got, err)
	}
	if want = want.UTC(); got != want {
		t.Fatalf("parseUTC(%q) = %#v, time.Parse gives %#v", s, got, want)
	}
}

func TestParseUTC(t *testing.T) {
	read := []string{
		"2026-12-03T17:15:01Z", "2026-12-03T17:15:01.5Z", "2026-12-03T17:15:01.123Z",
		"2026-12-03T17:15:01.123456789Z", "2024-02-29T23:59:59.999Z", "2000-02-29T00:00:00Z",
		"0000-01-01T00:00:00Z", "9999-12-31T23:59:59.000000001Z",
	}
	for _, s := range read {
		if _, ok := parseUTC(s); !ok {
			t.Errorf("parseUTC(%q) did not read it", s)
		}
		checkParseUTC(t, s)
	}
	// Out of range, another form, or malformed: left to time.Parse.
	left := []string{
		"2023-02-29T00:00:00Z", "1900-02-29T00:00:00Z", "2026-04-31T00:00:00Z", "2026-13-01T00:00:00Z",
		"2026-00-01T00:00:00Z", "2026-01-00T00:00:00Z", "2026-01-01T24:00:00Z", "2026-01-01T23:60:00Z",
		"2026-01-01T23:59:60Z", "2026-01-01T00:00:00.Z", "2026-01-01T00:00:00.1234567891Z",
		"2026-01-01T00:00:00+00:00", "2026-01-01t00:00:00Z", "2026-01-01T00:00:00z", "2026-01-01 00:00:00Z",
		"+026-01-01T00:00:00Z", "2026-1-01T00:00:00Z", "2026-01-01T00:00:0aZ", "2026-01-01T00:00:00,5Z",
		"2026-01-01T00:00:00.-5Z", "", "Z",
	}
	for _, s := range left {
		if got, ok := parseUTC(s); ok {
			t.Errorf("parseUTC(%q) = %v, want it left to time.Parse", s, got)
		}
	}
	// Whichever reads it, a batch's events get the same time as before.
	for _, s := range append(read, left...) {
		got, gotOK := parseTimeString(s, true)
		want, err := time.Parse(time.RFC3339Nano, s)
		if gotOK != (err == nil) || (gotOK && got != want.UTC()) {
			t.Errorf("parseTimeString(%q) = %v, %v; time.Parse gives %v, %v", s, got, gotOK, want, err)
		}
	}
}

// TestDaysSinceEpoch checks the day count of every date parseUTC reads
// against the time package's.
func TestDaysSinceEpoch(t *testing.T) {
	d := time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC)
	want := d.Unix() / 86400
	for ; d.Year() <= 9999; d = d.AddDate(0, 0, 1) {
		if got := daysSinceEpoch(d.Year(), int(d.Month()), d.Day()); got != want {
			t.Fatalf("daysSinceEpoch(%s) = %d, want %d", d.Format(time.DateOnly), got, want)
		}
		want++
	}
}

// FuzzParseUTC checks the fast reading of event times against time.Parse.
func FuzzParseUTC(f *testing.F) {
	for _, s := range []string{"2026-12-03T17:15:01.123Z", "2024-02-29T23:59:59Z", "2026-04-31T00:00:00.000000001Z", "2026-01-01T23:59:60Z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		checkParseUTC(t, s)
	})
}

func BenchmarkParseTime(b *testing.B) {
	const s = "2026-12-03T17:15:01.123Z"
	b.Run("parseUTC", func(b *testing.B) {
		for b.Loop() {
			if _, ok := parseUTC(s); !ok {
				b.Fatal("not read")
			}
		}
	})
	b.Run("time.Parse", func(b *testing.B) {
		for b.Loop() {
			if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestSkewed checks the skew correction's shortcut against what it
// replaces, received.Add(-sent.Sub(client)), near and across its bound
// (2^33 seconds between sent and client) and where Sub saturates.
func TestSkewed(t *testing.T) {
	recv := time.Date(2026, 12, 4, 19, 0, 0, 123456789, time.UTC)
	base := time.Date(2026, 12, 4, 18, 59, 58, 999999999, time.UTC)
	var secs []int64
	for _, s := range []int64{0, 1, 59, 3600, 86400, 1 << 32, 1<<33 - 2, 1<<33 - 1, 1 << 33, 1<<33 + 1, 1 << 34, 1 << 40, 1 << 62} {
		secs = append(secs, s, -s)
	}
	rng := rand.New(rand.NewPCG(15, 5))
	for range 2000 {
		secs = append(secs, rng.Int64N(1<<36)-1<<35, rng.Int64N(1<<20)-1<<19)
	}
	nanos := []int64{0, 1, 999999999, 500000000}
	for _, s := range secs {
		for _, n := range nanos {
			sent := time.Unix(base.Unix()+s, n).UTC()
			for _, client := range []time.Time{base, base.Add(-time.Nanosecond), time.Unix(base.Unix()-s/3, 999999999-n).UTC()} {
				want := recv.Add(-sent.Sub(client))
				if got := skewed(recv, sent, client); got != want {
					t.Fatalf("skewed(%v, %v, %v) = %#v, want %#v", recv, sent, client, got, want)
				}
			}
		}
	}
}
