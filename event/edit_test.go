package event

import (
	"encoding/json"
	"testing"
)

func TestEditContext(t *testing.T) {
	upper := func(val []byte) ([]byte, bool) { return []byte(`"X"`), true }
	drop := func([]byte) ([]byte, bool) { return nil, false }
	for _, c := range []struct {
		in   string
		edit func([]byte) ([]byte, bool)
		want string
	}{
		{`{"context":{"ip":"1.2.3.4","a":1}}`, upper, `{"context":{"ip":"X","a":1}}`},
		{`{"context":{"ip":"1.2.3.4","a":1}}`, drop, `{"context":{"a":1}}`},
		{`{"context":{"a":1,"ip":"1.2.3.4"}}`, drop, `{"context":{"a":1}}`},
		{`{"context":{"ip":"1.2.3.4"},"x":2}`, drop, `{"context":{},"x":2}`},
		{`{"context":{"ip":"1","ip":"2","b":true}}`, drop, `{"context":{"b":true}}`},
		{`{"context":{"\u0069p":"1.2.3.4"}}`, drop, `{"context":{}}`},
		{`{"Context":{"IP":"1.2.3.4","a":1}}`, drop, `{"Context":{"a":1}}`},
		{`{"context":{"ip":"1"},"context":{"ip":"2"}}`, upper, `{"context":{"ip":"X"},"context":{"ip":"X"}}`},
		{`{"context":{"nested":{"ip":"1.2.3.4"}}}`, drop, `{"context":{"nested":{"ip":"1.2.3.4"}}}`},
		{`{"properties":{"ip":"1.2.3.4"}}`, drop, `{"properties":{"ip":"1.2.3.4"}}`},
		{`{"context":null}`, drop, `{"context":null}`},
		{`not json`, drop, `not json`},
	} {
		got := string(EditContext([]byte(c.in), "ip", c.edit))
		if got != c.want {
			t.Errorf("EditContext(%s) = %s, want %s", c.in, got, c.want)
		}
		if json.Valid([]byte(c.in)) && !json.Valid([]byte(got)) {
			t.Errorf("EditContext(%s) = %s: not valid JSON", c.in, got)
		}
	}
}

func TestEditContextUnchangedIsSame(t *testing.T) {
	raw := []byte(`{"context":{"ip":"1.2.3.0"}}`)
	got := EditContext(raw, "ip", func(v []byte) ([]byte, bool) { return []byte(`"1.2.3.0"`), true })
	if &got[0] != &raw[0] {
		t.Error("an unchanged event was copied")
	}
}
