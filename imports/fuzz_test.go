package imports

import (
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"tandem/event"
)

const fuzzMapping = `
event: {column: name}
key: id
timestamp: {column: at, format: "DD.MM.YYYY hh:mm", timezone: Europe/Berlin}
user_id: user
identifiers: {email: email, phone: phone, crm_id: crm}
traits: {plan: plan}
properties:
  amount: {column: amount, type: number}
  n: {column: n, type: integer}
  ok: {column: ok, type: boolean}
  note: note
channel: {column: channel}
department: service
`

// checkRows reads every row of rr through p and checks each either became
// an event that collection would accept with the same fields, or failed
// with a line and a code.
func checkRows(t *testing.T, rr rowReader, p *plan) {
	at := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	lastLine := 0
	for n := 0; n < 10000; n++ {
		r, err := rr.next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if r.line <= lastLine {
			t.Fatalf("line %d after line %d", r.line, lastLine)
		}
		lastLine = r.line
		ev, rerr := p.convert(r, at)
		if rerr != nil {
			if rerr.Line != r.line || rerr.Code == "" || rerr.Message == "" || !strings.HasPrefix(rerr.MessageID, "imp-") {
				t.Fatalf("row error without place or reason: %+v", rerr)
			}
			continue
		}
		if !json.Valid(ev.Raw) {
			t.Fatalf("event is not JSON: %q", ev.Raw)
		}
		got, prob := event.ParseEvent("", ev.Raw, at, ev.MessageID)
		if prob != nil {
			t.Fatalf("event refused by collection: %s %s: %s", prob.Field, prob.Message, ev.Raw)
		}
		if got.MessageID != ev.MessageID || got.Type != ev.Type || got.Name != ev.Name || got.UserID != ev.UserID ||
			got.AnonymousID != ev.AnonymousID || !got.Timestamp.Equal(ev.Timestamp) {
			t.Fatalf("fields differ from the JSON: %+v vs %+v", ev, got)
		}
	}
}

func FuzzCSVRows(f *testing.F) {
	f.Add([]byte("id,name,at,user,email,phone,crm,plan,amount,n,ok,note,channel\n1,Visit,01.02.2024 10:00,,a@b.c,,,,\"1,5\",3,yes,\"x\"\"y\",store\n"), false)
	f.Add([]byte("id;name;at;user;email;phone;crm;plan;amount;n;ok;note;channel\r\n2;Call;31.12.1999 23:59;u1;;+49 (30) 1;;gold;2.000,25;-1;0;\xe9t\xe9;\r\n"), true)
	f.Add([]byte("id,name,at,user,email,phone,crm,plan,amount,n,ok,note,channel\n3,\"multi\nline\",01.01.2024 00:00,,,,C1,,,,,,\n4,\"bad\"x,a\n5\n"), false)
	m, err := ParseMapping([]byte(fuzzMapping))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte, latin bool) {
		opts := CSVOptions{Delimiter: ',', Encoding: EncodingUTF8, Decimal: ','}
		if latin {
			opts.Delimiter, opts.Encoding = ';', EncodingLatin1
		}
		cr, err := newCSVReader(strings.NewReader(string(data)), opts)
		if err != nil {
			return
		}
		p, err := m.bindCSV(cr.header)
		if err != nil {
			return
		}
		p.sourceID, p.importID = "src_1", "imp_1"
		checkRows(t, cr, p)
	})
}

func FuzzNDJSONRows(f *testing.F) {
	f.Add([]byte(`{"id":1,"name":"Visit","at":"01.02.2024 10:00","email":"A@B.c","amount":1.5,"n":2,"ok":true,"note":{"x":[1]},"channel":"web"}`+"\n\n"+`{"id":"2"}`), false)
	f.Add([]byte(`{"type":"track","event":"E","userId":"u","timestamp":"2024-01-01T00:00:00Z"}`+"\n"+`[1]`+"\n"+"\xff\n"), true)
	m, err := ParseMapping([]byte(strings.ReplaceAll(fuzzMapping, "amount: {column: amount, type: number}", "amount: amount")))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte, raw bool) {
		var rr rowReader
		var p *plan
		if raw {
			p = &plan{raw: true}
			rr = newNDJSONReader(strings.NewReader(string(data)), nil)
		} else {
			var paths []string
			var err error
			if p, paths, err = m.bindNDJSON(); err != nil {
				t.Fatal(err)
			}
			rr = newNDJSONReader(strings.NewReader(string(data)), paths)
		}
		p.sourceID, p.importID = "src_1", "imp_1"
		checkRows(t, rr, p)
	})
}
