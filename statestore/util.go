package statestore

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"sync"
	"time"
)

// idEncoding is base32 with an alphabet in ASCII order (Crockford's), so
// that ids of equal length sort as their bytes do.
var idEncoding = base32.NewEncoding("0123456789abcdefghjkmnpqrstvwxyz").WithPadding(base32.NoPadding)

// NewID returns a new random text id with the given prefix, e.g.
// NewID("src") = "src_06bk4n9tq3e0rq5x2m8h7c1z" (prefix, underscore, 24
// characters). The first characters encode the creation time in
// milliseconds and the rest (72 bits) is random, so ids sort by creation
// time; within one process they are strictly increasing (ids of the same
// millisecond, or made while the clock stepped back, count up from the
// previous one). Lists therefore page in creation order by id alone.
func NewID(prefix string) string {
	idMu.Lock()
	b := nextID(time.Now().UnixMilli())
	idMu.Unlock()
	return prefix + "_" + idEncoding.EncodeToString(b[:])
}

var (
	idMu     sync.Mutex
	idLast   [15]byte // the previous id's bytes
	idLastMS int64    // and its milliseconds
)

// nextID returns the bytes of the next id at time now (Unix milliseconds):
// 48 bits of milliseconds in b[0:6], then 72 random bits. The caller holds
// idMu.
func nextID(now int64) [15]byte {
	var b [15]byte
	ms := now
	if ms > idLastMS {
		putMS(&b, ms)
		if _, err := rand.Read(b[6:]); err != nil {
			panic("statestore: crypto/rand failed: " + err.Error())
		}
	} else {
		// Count up from the previous id; a carry out of the random part
		// moves to the next millisecond.
		b, ms = idLast, idLastMS
		if !increment(b[6:]) {
			ms++
			putMS(&b, ms)
		}
	}
	idLast, idLastMS = b, ms
	return b
}

func putMS(b *[15]byte, ms int64) {
	var t [8]byte
	binary.BigEndian.PutUint64(t[:], uint64(ms))
	copy(b[:6], t[2:])
}

// increment adds one to the big-endian number in b, reporting false when it
// wrapped around to zero.
func increment(b []byte) bool {
	for i := len(b) - 1; i >= 0; i-- {
		b[i]++
		if b[i] != 0 {
			return true
		}
	}
	return false
}

// TimeToDB encodes t for a BIGINT column: nanoseconds since the Unix epoch,
// 0 for the zero time.
func TimeToDB(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// TimeFromDB decodes a [TimeToDB] value, in UTC.
func TimeFromDB(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}

// Page sizes for lists.
const (
	DefaultLimit = 50   // a limit of 0 or less means this
	MaxLimit     = 1000 // larger limits are lowered to this
)

// Limit returns limit bounded to 1..[MaxLimit], [DefaultLimit] for 0 or
// less.
func Limit(limit int) int {
	switch {
	case limit <= 0:
		return DefaultLimit
	case limit > MaxLimit:
		return MaxLimit
	}
	return limit
}

// EncodeCursor makes an opaque pagination cursor of the keyset values of
// the last item of a page.
func EncodeCursor(values ...string) string {
	b, err := json.Marshal(values)
	if err != nil {
		panic("statestore: encode cursor: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// DecodeCursor returns the n values of a cursor made by [EncodeCursor]. An
// empty cursor (the first page) gives nil values. Any other malformed
// cursor gives a *[FieldError] for field "cursor" that matches
// [ErrBadCursor].
func DecodeCursor(cursor string, n int) ([]string, error) {
	if cursor == "" {
		return nil, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(cursor)
	var values []string
	if err == nil {
		err = json.Unmarshal(b, &values)
	}
	if err == nil && len(values) != n {
		err = fmt.Errorf("%d values, want %d", len(values), n)
	}
	if err != nil {
		return nil, &FieldError{Field: "cursor", Message: "not a cursor this list issued", Err: ErrBadCursor}
	}
	return values, nil
}

// FieldError is an input error about one field of a request. Its Field is
// the JSON name of the field ("role", "monthlyCost", "cursor"), so that the
// API can answer 400 naming it. The concept packages return it (access,
// governance and quarantine re-export it as their FieldError).
type FieldError struct {
	Field   string // JSON field name
	Message string // what is wrong, for people
	Err     error  // an underlying sentinel such as ErrBadCursor, or nil
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Message }

// Unwrap returns the underlying sentinel, if any.
func (e *FieldError) Unwrap() error { return e.Err }
