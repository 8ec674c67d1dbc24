package eventstore

import (
	"encoding/base64"
	"encoding/binary"
	"time"
)

// Cursor is the key of the last event of a List page, after which the next
// page starts: the order List sorts by. Stores put it in [Page.Next] with
// [Cursor.Encode] and read it back with [DecodeCursor].
type Cursor struct {
	Micros    int64 // event time, Unix microseconds (the stored precision)
	Source    string
	MessageID string
}

// Encode returns c as an opaque cursor: base64url(tag, varint Micros,
// uvarint len(Source), Source, MessageID). The tag is the store's own, so
// that a store refuses another store's cursors.
func (c Cursor) Encode(tag byte) string {
	b := make([]byte, 0, 1+2*binary.MaxVarintLen64+len(c.Source)+len(c.MessageID))
	b = append(b, tag)
	b = binary.AppendVarint(b, c.Micros)
	b = binary.AppendUvarint(b, uint64(len(c.Source)))
	b = append(b, c.Source...)
	b = append(b, c.MessageID...)
	return base64.RawURLEncoding.EncodeToString(b)
}

// DecodeCursor reads a cursor that [Cursor.Encode] wrote with tag; any
// other string gives [ErrBadCursor]. Source and MessageID may hold any
// bytes: a store that needs more (valid UTF-8, a time it can represent)
// checks that itself.
func DecodeCursor(s string, tag byte) (Cursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) < 1 || b[0] != tag {
		return Cursor{}, ErrBadCursor
	}
	b = b[1:]
	micros, n := binary.Varint(b)
	if n <= 0 {
		return Cursor{}, ErrBadCursor
	}
	b = b[n:]
	srcLen, n := binary.Uvarint(b)
	if n <= 0 || srcLen > uint64(len(b)-n) {
		return Cursor{}, ErrBadCursor
	}
	b = b[n:]
	return Cursor{Micros: micros, Source: string(b[:srcLen]), MessageID: string(b[srcLen:])}, nil
}

// CeilMicro rounds t up to a whole microsecond, the stored precision: a
// stored (truncated) time is >= t exactly when it is >= CeilMicro(t), so
// stores compare Query.From and Query.To in this form.
func CeilMicro(t time.Time) time.Time {
	if t.Nanosecond()%1000 == 0 {
		return t
	}
	return t.Truncate(time.Microsecond).Add(time.Microsecond)
}
