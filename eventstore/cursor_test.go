package eventstore

import (
	"errors"
	"testing"
	"time"
)

const testTag = 0x7e

func TestCursorRoundTrip(t *testing.T) {
	for _, c := range []Cursor{
		{Micros: 1735779845000006, Source: "src", MessageID: "msg"},
		{Micros: -62135596800000000, Source: "", MessageID: ""},
		{Micros: 0, Source: "ü/🎉\xff", MessageID: "a\x00b"},
	} {
		got, err := DecodeCursor(c.Encode(testTag), testTag)
		if err != nil || got != c {
			t.Errorf("decode(encode(%+v)) = %+v, %v", c, got, err)
		}
	}
}

func TestCursorOtherTag(t *testing.T) {
	s := Cursor{Micros: 1, Source: "s", MessageID: "m"}.Encode(testTag)
	if _, err := DecodeCursor(s, testTag+1); !errors.Is(err, ErrBadCursor) {
		t.Fatalf("a cursor with another tag: %v, want ErrBadCursor", err)
	}
}

func FuzzDecodeCursor(f *testing.F) {
	f.Add(Cursor{Micros: 1, Source: "s", MessageID: "m"}.Encode(testTag))
	f.Add("AAAA")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := DecodeCursor(s, testTag)
		if err != nil {
			if !errors.Is(err, ErrBadCursor) {
				t.Fatalf("error %v is not ErrBadCursor", err)
			}
			return
		}
		if d, err := DecodeCursor(c.Encode(testTag), testTag); err != nil || d != c {
			t.Fatalf("re-encoding %+v: %+v, %v", c, d, err)
		}
	})
}

func TestCeilMicro(t *testing.T) {
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, c := range []struct{ in, want time.Time }{
		{base, base},
		{base.Add(time.Nanosecond), base.Add(time.Microsecond)},
		{base.Add(999 * time.Nanosecond), base.Add(time.Microsecond)},
		{base.Add(time.Microsecond), base.Add(time.Microsecond)},
		{base.Add(-time.Nanosecond), base},
	} {
		if got := CeilMicro(c.in); !got.Equal(c.want) {
			t.Errorf("CeilMicro(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}
