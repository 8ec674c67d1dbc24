package event

import (
	"encoding/binary"
	"slices"
)

// Entry is what [Redact] shows of one entry of a record: whose it is and
// its bytes as sent.
type Entry struct {
	SourceID    string
	MessageID   string
	UserID      string // "" for a problem (a refused event: read Raw)
	AnonymousID string
	Raw         []byte
	Problem     bool // a quarantined event rather than a valid one
}

// Redact returns rec without the entries drop picks (a data subject's,
// for an erasure), the others byte for byte, followed by a done entry
// naming the log consumers in done: those that had already processed
// rec, which skip the rewritten record rather than process its entries a
// second time (see [DoneBy]). dropped counts the entries left out; when it
// is 0, out is nil. When every entry is dropped, out is nil too: nothing
// is left to keep.
func Redact(rec []byte, drop func(Entry) bool, done []string) (out []byte, dropped int, err error) {
	v, body, err := recordVersion(rec)
	if err != nil {
		return nil, 0, err
	}
	d := decoder{b: body, v2: v == 2}
	// The rewritten record keeps rec's version: its entries are rec's.
	kept := append([]byte(nil), rec[:len(rec)-len(body)]...)
	var prior []string
	entries := 0
	for len(d.b) > 0 && d.err == nil {
		start := d.b
		kind, e, p, names := d.entry()
		if d.err != nil {
			break
		}
		span := start[:len(start)-len(d.b)]
		var en Entry
		switch kind {
		case kindDone:
			// A record rewritten before: its consumers stay done.
			prior = append(prior, names...)
			continue
		case kindSource:
			// Kept whatever follows: the compact entries after it are
			// its source's.
			kept = append(kept, span...)
			continue
		case kindEvent, kindCompact:
			en = Entry{SourceID: e.SourceID, MessageID: e.MessageID, UserID: e.UserID, AnonymousID: e.AnonymousID, Raw: e.Raw}
		case kindProblem:
			en = Entry{SourceID: p.SourceID, MessageID: p.MessageID, Raw: p.Raw, Problem: true}
		}
		if drop(en) {
			dropped++
			continue
		}
		entries++
		kept = append(kept, span...)
	}
	if d.err != nil {
		return nil, 0, d.err
	}
	if dropped == 0 || entries == 0 {
		return nil, dropped, nil
	}
	names := slices.Compact(slices.Sorted(slices.Values(append(prior, done...))))
	if len(names) > 0 {
		kept = append(kept, kindDone)
		kept = binary.AppendUvarint(kept, uint64(len(names)))
		for _, n := range names {
			kept = appendString(kept, n)
		}
	}
	return kept, dropped, nil
}

// DoneBy returns the log consumers a rewritten record names as having
// processed its entries already (see [Redact]); nil for a record never
// rewritten or one it cannot read. A consumer named there acknowledges
// the record without processing it.
func DoneBy(rec []byte) []string {
	v, body, err := recordVersion(rec)
	if err != nil {
		return nil
	}
	d := decoder{b: body, v2: v == 2}
	var out []string
	for len(d.b) > 0 && d.err == nil {
		kind, _, _, names := d.entry()
		if kind == kindDone && d.err == nil {
			out = append(out, names...)
		}
	}
	return out
}
