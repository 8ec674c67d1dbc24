package event

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
)

// A Record is the unit written to the event log: the events of one or more
// collection requests, valid ones and quarantined ones, packed so that one
// fsync covers them all. Its layout is a 4-byte header followed by entries;
// each entry is a kind byte and length-prefixed fields. Records of several
// requests concatenate: [AppendEntries] output can be joined and prefixed
// with [RecordHeader].
//
// The format is versioned by its header so that a later version (for
// example one whose personal fields are encrypted per subject for
// crypto-shredding) can be read beside this one.

// RecordHeader starts every record written by this version.
var RecordHeader = []byte{'T', 'R', 'C', 1}

const (
	kindEvent   byte = 1
	kindProblem byte = 2
	// kindDone names the log consumers that have already processed a
	// record's entries: see [Redact].
	kindDone byte = 3
)

// ErrCorrupt is returned for a record that cannot be decoded.
var ErrCorrupt = errors.New("event: corrupt record")

// AppendEntries appends the entries for events and problems, all from
// sourceID, to buf. The result is not a record on its own: prefix it with
// [RecordHeader].
func AppendEntries(buf []byte, sourceID string, events []Event, problems []Problem) []byte {
	for i := range events {
		e := &events[i]
		buf = append(buf, kindEvent)
		buf = appendString(buf, sourceID)
		buf = appendString(buf, e.MessageID)
		buf = appendString(buf, e.Type)
		buf = appendString(buf, e.Name)
		buf = appendString(buf, e.UserID)
		buf = appendString(buf, e.AnonymousID)
		buf = appendString(buf, e.GroupID)
		buf = appendString(buf, e.PreviousID)
		buf = appendTime(buf, e.Timestamp)
		buf = appendTime(buf, e.OriginalTimestamp)
		buf = appendTime(buf, e.SentAt)
		buf = appendTime(buf, e.ReceivedAt)
		buf = appendBytes(buf, e.Raw)
	}
	for i := range problems {
		p := &problems[i]
		buf = append(buf, kindProblem)
		buf = appendString(buf, sourceID)
		buf = appendString(buf, p.MessageID)
		buf = binary.AppendUvarint(buf, uint64(p.Index))
		buf = appendString(buf, p.Code)
		buf = appendString(buf, p.Field)
		buf = appendString(buf, p.Message)
		buf = appendTime(buf, p.ReceivedAt)
		buf = appendBytes(buf, p.Raw)
		buf = appendString(buf, p.Type)
	}
	return buf
}

// EncodeRecord returns a complete record holding events and problems.
func EncodeRecord(sourceID string, events []Event, problems []Problem) []byte {
	buf := append([]byte(nil), RecordHeader...)
	return AppendEntries(buf, sourceID, events, problems)
}

// DecodeRecord decodes a record. The returned events' Raw fields alias rec.
// A done entry (see [Redact]) is skipped: [DecodeRecordDone] reads it too.
func DecodeRecord(rec []byte) ([]Event, []Problem, error) {
	events, problems, _, err := DecodeRecordDone(rec)
	return events, problems, err
}

// DecodeRecordDone is [DecodeRecord] that also returns the consumers a
// rewritten record names as done with it ([DoneBy]).
func DecodeRecordDone(rec []byte) ([]Event, []Problem, []string, error) {
	if len(rec) < len(RecordHeader) || string(rec[:len(RecordHeader)]) != string(RecordHeader) {
		return nil, nil, nil, fmt.Errorf("%w: bad header", ErrCorrupt)
	}
	d := decoder{b: rec[len(RecordHeader):]}
	var events []Event
	var problems []Problem
	var done []string
	for len(d.b) > 0 && d.err == nil {
		kind, e, p, names := d.entry()
		switch kind {
		case kindEvent:
			events = append(events, e)
		case kindProblem:
			problems = append(problems, p)
		case kindDone:
			done = append(done, names...)
		}
	}
	if d.err != nil {
		return nil, nil, nil, d.err
	}
	return events, problems, done, nil
}

// entry decodes the next entry: an event, a problem or the names of a done
// entry, by its kind.
func (d *decoder) entry() (kind byte, e Event, p Problem, done []string) {
	kind = d.b[0]
	d.b = d.b[1:]
	switch kind {
	case kindEvent:
		e.SourceID = d.str()
		e.MessageID = d.str()
		e.Type = d.str()
		e.Name = d.str()
		e.UserID = d.str()
		e.AnonymousID = d.str()
		e.GroupID = d.str()
		e.PreviousID = d.str()
		e.Timestamp = d.time()
		e.OriginalTimestamp = d.time()
		e.SentAt = d.time()
		e.ReceivedAt = d.time()
		e.Raw = d.bytes()
	case kindProblem:
		p.SourceID = d.str()
		p.MessageID = d.str()
		p.Index = int(d.uvarint())
		p.Code = d.str()
		p.Field = d.str()
		p.Message = d.str()
		p.ReceivedAt = d.time()
		p.Raw = d.bytes()
		p.Type = d.str()
	case kindDone:
		n := d.uvarint()
		if n > uint64(len(d.b)) {
			d.err = fmt.Errorf("%w: done entry overruns record", ErrCorrupt)
			return
		}
		for range n {
			done = append(done, d.str())
		}
	default:
		d.err = fmt.Errorf("%w: unknown entry kind %d", ErrCorrupt, kind)
	}
	return
}

const zeroTime = math.MinInt64

func appendString(buf []byte, s string) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(s)))
	return append(buf, s...)
}

func appendBytes(buf []byte, b []byte) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(b)))
	return append(buf, b...)
}

func appendTime(buf []byte, t time.Time) []byte {
	if t.IsZero() {
		return binary.AppendVarint(buf, zeroTime)
	}
	return binary.AppendVarint(buf, t.UnixNano())
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = fmt.Errorf("%w: bad length", ErrCorrupt)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.err = fmt.Errorf("%w: field overruns record", ErrCorrupt)
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) str() string { return string(d.bytes()) }

func (d *decoder) time() time.Time {
	if d.err != nil {
		return time.Time{}
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = fmt.Errorf("%w: bad time", ErrCorrupt)
		return time.Time{}
	}
	d.b = d.b[n:]
	if v == zeroTime {
		return time.Time{}
	}
	return time.Unix(0, v).UTC()
}
