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
		buf = appendEvent(buf, sourceID, &events[i])
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

// appendEvent appends e's entry, with sourceID.
func appendEvent(buf []byte, sourceID string, e *Event) []byte {
	return appendBytes(appendEventHead(buf, sourceID, e), e.Raw)
}

// appendEventHead appends e's entry up to its raw bytes, which come last.
func appendEventHead(buf []byte, sourceID string, e *Event) []byte {
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
	return appendTime(buf, e.ReceivedAt)
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
	return AppendRecord(nil, nil, rec)
}

// AppendRecord is [DecodeRecordDone] that appends the record's events and
// problems to the given slices (a reader gathering many records decodes
// them straight into one batch). On an error it returns the slices as they
// were given.
//
// An event's string fields other than its source share one allocation
// (the source is shared with the event before it when they are equal, the
// type is one of [Types]): a long-lived copy of one of them keeps the
// others' bytes, about a hundred, alive with it.
func AppendRecord(events []Event, problems []Problem, rec []byte) ([]Event, []Problem, []string, error) {
	if len(rec) < len(RecordHeader) || string(rec[:len(RecordHeader)]) != string(RecordHeader) {
		return events, problems, nil, fmt.Errorf("%w: bad header", ErrCorrupt)
	}
	d := decoder{b: rec[len(RecordHeader):]}
	ne, np := len(events), len(problems)
	var done []string
	var prevSource string
	for len(d.b) > 0 && d.err == nil {
		kind := d.b[0]
		d.b = d.b[1:]
		switch kind {
		case kindEvent:
			events = append(events, Event{})
			e := &events[len(events)-1]
			d.event(e, prevSource)
			prevSource = e.SourceID
		case kindProblem:
			problems = append(problems, d.problem())
		case kindDone:
			done = append(done, d.done()...)
		default:
			d.err = fmt.Errorf("%w: unknown entry kind %d", ErrCorrupt, kind)
		}
	}
	if d.err != nil {
		clear(events[ne:])
		clear(problems[np:])
		return events[:ne], problems[:np], nil, d.err
	}
	return events, problems, done, nil
}

// eventStrings is how many length-prefixed strings an event entry starts
// with: source, messageId, type, name, userId, anonymousId, groupId,
// previousId.
const eventStrings = 8

// event decodes an event entry (after its kind byte) into e; prevSource is
// the source of the record's event before, shared when e's is the same.
func (d *decoder) event(e *Event, prevSource string) {
	var ends [eventStrings + 1]int // ends[i+1]: where string i ends in d.b
	var starts [eventStrings]int
	pos := 0
	for i := range eventStrings {
		v, n := binary.Uvarint(d.b[pos:])
		if n <= 0 {
			d.err = fmt.Errorf("%w: bad length", ErrCorrupt)
			return
		}
		pos += n
		if v > uint64(len(d.b)-pos) {
			d.err = fmt.Errorf("%w: field overruns record", ErrCorrupt)
			return
		}
		starts[i] = pos
		pos += int(v)
		ends[i+1] = pos
	}
	b := d.b
	field := func(s string, i int) string { return s[starts[i]-starts[1] : ends[i+1]-starts[1]] }
	if src := b[starts[0]:ends[1]]; string(src) == prevSource {
		e.SourceID = prevSource
	} else {
		e.SourceID = string(src)
	}
	all := string(b[starts[1]:pos]) // messageId to previousId, one allocation
	e.MessageID = field(all, 1)
	if t, ok := knownType(field(all, 2)); ok {
		e.Type = t
	} else {
		e.Type = field(all, 2)
	}
	e.Name = field(all, 3)
	e.UserID = field(all, 4)
	e.AnonymousID = field(all, 5)
	e.GroupID = field(all, 6)
	e.PreviousID = field(all, 7)
	d.b = d.b[pos:]
	e.Timestamp = d.time()
	e.OriginalTimestamp = d.time()
	e.SentAt = d.time()
	e.ReceivedAt = d.time()
	e.Raw = d.bytes()
}

// problem decodes a problem entry (after its kind byte).
func (d *decoder) problem() (p Problem) {
	p.SourceID = d.str()
	p.MessageID = d.str()
	p.Index = int(d.uvarint())
	p.Code = d.str()
	p.Field = d.str()
	p.Message = d.str()
	p.ReceivedAt = d.time()
	p.Raw = d.bytes()
	p.Type = d.str()
	return p
}

// done decodes a done entry (after its kind byte): consumer names.
func (d *decoder) done() []string {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.err = fmt.Errorf("%w: done entry overruns record", ErrCorrupt)
		return nil
	}
	var names []string
	for range n {
		names = append(names, d.str())
	}
	return names
}

// entry decodes the next entry: an event, a problem or the names of a done
// entry, by its kind.
func (d *decoder) entry() (kind byte, e Event, p Problem, done []string) {
	kind = d.b[0]
	d.b = d.b[1:]
	switch kind {
	case kindEvent:
		d.event(&e, "")
	case kindProblem:
		p = d.problem()
	case kindDone:
		done = d.done()
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
