package imports

import (
	"bytes"
	"fmt"
	"io"
	"testing"
	"time"

	"tandem/event"
)

// BenchmarkCSVToEntries measures the server's per-row work without the
// log: CSV parsing, mapping, messageId, JSON and the log entry encoding.
func BenchmarkCSVToEntries(b *testing.B) {
	var data bytes.Buffer
	data.WriteString("order_id,purchased_at,email,phone,crm_id,amount,store\n")
	const rows = 100000
	for i := 0; i < rows; i++ {
		fmt.Fprintf(&data, "O-%d,2024-%02d-%02d %02d:%02d:%02d,customer%d@example.com,+49 30 %07d,CRM-%d,%d.%02d,store-%d\n",
			i, 1+i%12, 1+i%28, i%24, i%60, (i/60)%60, i, i, i, i%900, i%100, i%40)
	}
	m, err := ParseMapping([]byte(`event: Purchase
key: order_id
timestamp: {column: purchased_at, format: "YYYY-MM-DD hh:mm:ss", timezone: Europe/Berlin}
identifiers: {email: email, phone: phone, crm_id: crm_id}
properties: {order_id: order_id, amount: {column: amount, type: number}, store: store}
channel: store
`))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(data.Len()))
	b.ReportAllocs()
	var entries []byte
	var one [1]event.Event
	for b.Loop() {
		cr, err := newCSVReader(bytes.NewReader(data.Bytes()), m.CSV)
		if err != nil {
			b.Fatal(err)
		}
		p, err := m.bindCSV(cr.header)
		if err != nil {
			b.Fatal(err)
		}
		p.sourceID, p.importID = "src_1", "imp_1"
		for {
			r, err := cr.next()
			if err == io.EOF {
				break
			}
			ev, rerr := p.convert(r, time.Now())
			if rerr != nil {
				b.Fatal(rerr)
			}
			one[0] = ev
			entries = event.AppendEntries(entries[:0], "src_1", one[:], nil)
		}
	}
	b.ReportMetric(float64(rows*b.N)/b.Elapsed().Seconds(), "rows/s")
}
