package event

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
	"unsafe"
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
// crypto-shredding) can be read beside this one. Version 1 records hold
// event entries that copy every lifted field (source, messageId, type,
// name, the ids) ahead of the event's JSON. Version 2 records, written
// since 2026-12-04, name the source once per chunk in a source entry and
// hold compact event entries: the event's JSON first, then each lifted
// field either as a reference (offset and length) into that JSON, where
// the JSON holds the value's bytes as they are, or as a copy; the times
// after the first as differences from it. Both are read.

// RecordHeader starts every record written by this version.
var RecordHeader = []byte{'T', 'R', 'C', 2}

// recordHeaderV1 starts the records written before the compact entries.
var recordHeaderV1 = []byte{'T', 'R', 'C', 1}

const (
	kindEvent   byte = 1 // version 1: every field copied
	kindProblem byte = 2
	// kindDone names the log consumers that have already processed a
	// record's entries: see [Redact].
	kindDone byte = 3
	// kindSource (version 2) sets the source of the compact event
	// entries that follow it.
	kindSource byte = 4
	// kindCompact (version 2) is an event whose lifted fields refer into
	// its JSON where they can.
	kindCompact byte = 5
)

// recordVersion returns rec's format version and its entries, or an error
// for a record without a known header.
func recordVersion(rec []byte) (int, []byte, error) {
	if len(rec) >= len(RecordHeader) {
		switch string(rec[:len(RecordHeader)]) {
		case string(RecordHeader):
			return 2, rec[len(RecordHeader):], nil
		case string(recordHeaderV1):
			return 1, rec[len(recordHeaderV1):], nil
		}
	}
	return 0, nil, fmt.Errorf("%w: bad header", ErrCorrupt)
}

// ErrCorrupt is returned for a record that cannot be decoded.
var ErrCorrupt = errors.New("event: corrupt record")

// AppendEntries appends the entries for events and problems, all from
// sourceID, to buf. The result is not a record on its own: prefix it with
// [RecordHeader].
func AppendEntries(buf []byte, sourceID string, events []Event, problems []Problem) []byte {
	if len(events) > 0 {
		buf = appendSource(buf, sourceID)
	}
	for i := range events {
		e := &events[i]
		buf = append(buf, kindCompact)
		start := len(buf)
		buf = appendBytes(buf, e.Raw)
		buf = appendEventTail(buf, rawAt(buf, start), e)
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

// appendSource appends a source entry: the compact events after it, up to
// the next one, are sourceID's.
func appendSource(buf []byte, sourceID string) []byte {
	return appendString(append(buf, kindSource), sourceID)
}

// rawAt returns the bytes appendBytes wrote at buf[start:].
func rawAt(buf []byte, start int) []byte {
	n, w := binary.Uvarint(buf[start:])
	return buf[start+w : start+w+int(n) : start+w+int(n)]
}

// minRef is the shortest field a compact entry refers to rather than
// copies: a reference takes two to four bytes.
const minRef = 4

// appendEventTail appends what follows a compact entry's JSON: e's lifted
// fields and times. raw is the JSON as the entry holds it (e.Raw, or e.Raw
// with the context defaults added); a field whose bytes e.Raw holds
// (the parser's strings point into the body) is written as a reference
// when raw holds the same bytes at its offset in e.Raw, or after the
// bytes added (an insertion before it), else copied.
func appendEventTail(buf []byte, raw []byte, e *Event) []byte {
	// Field by field rather than over a table of the seven: the table
	// cost more than the fields' own work.
	buf = appendField(buf, raw, e.Raw, e.MessageID)
	buf = appendField(buf, raw, e.Raw, e.Type)
	buf = appendField(buf, raw, e.Raw, e.Name)
	buf = appendField(buf, raw, e.Raw, e.UserID)
	buf = appendField(buf, raw, e.Raw, e.AnonymousID)
	buf = appendField(buf, raw, e.Raw, e.GroupID)
	buf = appendField(buf, raw, e.Raw, e.PreviousID)
	// Which times are set, then the first set one in full and the others
	// as differences from it (in two's complement: exact for any pair).
	var set byte
	if !e.ReceivedAt.IsZero() {
		set |= 1
	}
	if !e.SentAt.IsZero() {
		set |= 2
	}
	if !e.OriginalTimestamp.IsZero() {
		set |= 4
	}
	if !e.Timestamp.IsZero() {
		set |= 8
	}
	buf = append(buf, set)
	var base int64
	first := true
	for i, t := range [...]*time.Time{&e.ReceivedAt, &e.SentAt, &e.OriginalTimestamp, &e.Timestamp} {
		if set&(1<<i) == 0 {
			continue
		}
		v := t.UnixNano()
		if first {
			buf = binary.AppendVarint(buf, v)
			base, first = v, false
			continue
		}
		buf = binary.AppendVarint(buf, v-base)
	}
	return buf
}

// appendField appends one lifted field of a compact entry: a reference
// into raw when [refIn] finds one, else a copy.
func appendField(buf, raw, orig []byte, s string) []byte {
	if off, ok := refIn(raw, orig, s); ok {
		buf = binary.AppendUvarint(buf, uint64(len(s))<<1|1)
		return binary.AppendUvarint(buf, uint64(off))
	}
	buf = binary.AppendUvarint(buf, uint64(len(s))<<1)
	return append(buf, s...)
}

// refIn returns where raw holds s's bytes, when s's bytes lie in orig (the
// event's JSON before its defaults were added) and raw has them at the
// same offset or at that offset moved by the bytes added.
func refIn(raw, orig []byte, s string) (int, bool) {
	if len(s) < minRef || len(orig) < len(s) {
		return 0, false
	}
	o := uintptr(unsafe.Pointer(unsafe.StringData(s))) - uintptr(unsafe.Pointer(unsafe.SliceData(orig)))
	if o > uintptr(len(orig)-len(s)) {
		return 0, false
	}
	off := int(o)
	if off+len(s) <= len(raw) && string(raw[off:off+len(s)]) == s {
		return off, true
	}
	if off += len(raw) - len(orig); off >= 0 && off+len(s) <= len(raw) && string(raw[off:off+len(s)]) == s {
		return off, true
	}
	return 0, false
}

// appendEventV1 appends e's version 1 entry, with sourceID: what records
// held before version 2, for the tests that read those.
func appendEventV1(buf []byte, sourceID string, e *Event) []byte {
	return appendBytes(appendEventHeadV1(buf, sourceID, e), e.Raw)
}

// appendEventHeadV1 appends e's version 1 entry up to its raw bytes, which
// come last.
func appendEventHeadV1(buf []byte, sourceID string, e *Event) []byte {
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
	v, body, err := recordVersion(rec)
	if err != nil {
		return events, problems, nil, err
	}
	d := decoder{b: body, v2: v == 2}
	ne, np := len(events), len(problems)
	var done []string
	var prevSource string
	for len(d.b) > 0 && d.err == nil {
		kind := d.b[0]
		d.b = d.b[1:]
		switch {
		case kind == kindEvent:
			events = append(events, Event{})
			e := &events[len(events)-1]
			d.event(e, prevSource)
			prevSource = e.SourceID
		case kind == kindCompact && d.v2:
			events = append(events, Event{})
			d.compact(&events[len(events)-1])
		case kind == kindSource && d.v2:
			d.setSource()
		case kind == kindProblem:
			problems = append(problems, d.problem())
		case kind == kindDone:
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

// setSource decodes a source entry (after its kind byte).
func (d *decoder) setSource() {
	src := d.bytes()
	if d.err == nil && string(src) != d.source {
		d.source = string(src)
	}
	d.sourced = d.err == nil
}

// compactFields is how many lifted strings a compact entry has after its
// JSON: messageId, type, name, userId, anonymousId, groupId, previousId.
const compactFields = 7

// compact decodes a compact event entry (after its kind byte) into e. Its
// strings share one allocation, as version 1's do.
func (d *decoder) compact(e *Event) {
	if !d.sourced {
		d.err = fmt.Errorf("%w: event before its source", ErrCorrupt)
		return
	}
	raw := d.bytes()
	if d.err != nil {
		return
	}
	b := d.b
	pos := 0
	var pieces [compactFields][]byte
	total := 0
	for i := range pieces {
		tag, w := binary.Uvarint(b[pos:])
		if w <= 0 {
			d.err = fmt.Errorf("%w: bad length", ErrCorrupt)
			return
		}
		pos += w
		n := tag >> 1
		if tag&1 == 1 {
			off, w := binary.Uvarint(b[pos:])
			if w <= 0 {
				d.err = fmt.Errorf("%w: bad offset", ErrCorrupt)
				return
			}
			pos += w
			if off > uint64(len(raw)) || n > uint64(len(raw))-off {
				d.err = fmt.Errorf("%w: reference outside the event", ErrCorrupt)
				return
			}
			pieces[i] = raw[off : off+n]
		} else {
			if n > uint64(len(b)-pos) {
				d.err = fmt.Errorf("%w: field overruns record", ErrCorrupt)
				return
			}
			pieces[i] = b[pos : pos+int(n)]
			pos += int(n)
		}
		total += int(n)
	}
	if pos >= len(b) || b[pos] > 0xf {
		d.err = fmt.Errorf("%w: bad times", ErrCorrupt)
		return
	}
	set := b[pos]
	pos++
	var times [4]int64
	var base int64
	for i := range times {
		if set&(1<<i) == 0 {
			continue
		}
		v, w := binary.Varint(b[pos:])
		if w <= 0 {
			d.err = fmt.Errorf("%w: bad time", ErrCorrupt)
			return
		}
		pos += w
		if set&(1<<i-1) != 0 { // not the first set: a difference from it
			v += base
		} else {
			base = v
		}
		times[i] = v
	}
	d.b = b[pos:]
	var sb strings.Builder
	sb.Grow(total)
	for _, p := range pieces {
		sb.Write(p)
	}
	all := sb.String()
	at := 0
	field := func(i int) string {
		s := all[at : at+len(pieces[i])]
		at += len(pieces[i])
		return s
	}
	e.SourceID = d.source
	e.MessageID = field(0)
	if ty := field(1); ty != "" {
		if t, ok := knownType(ty); ok {
			e.Type = t
		} else {
			e.Type = ty
		}
	}
	e.Name = field(2)
	e.UserID = field(3)
	e.AnonymousID = field(4)
	e.GroupID = field(5)
	e.PreviousID = field(6)
	at4 := func(i int) time.Time {
		if set&(1<<i) == 0 {
			return time.Time{}
		}
		return time.Unix(0, times[i]).UTC()
	}
	e.ReceivedAt = at4(0)
	e.SentAt = at4(1)
	e.OriginalTimestamp = at4(2)
	e.Timestamp = at4(3)
	e.Raw = raw
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
	case kindSource:
		if d.v2 {
			d.setSource()
			return
		}
		d.err = fmt.Errorf("%w: unknown entry kind %d", ErrCorrupt, kind)
	case kindCompact:
		if d.v2 {
			d.compact(&e)
			return
		}
		d.err = fmt.Errorf("%w: unknown entry kind %d", ErrCorrupt, kind)
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
	v2  bool // a version 2 record: source and compact entries may follow
	// source is the source entry's before the compact entries, once
	// sourced.
	source  string
	sourced bool
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
