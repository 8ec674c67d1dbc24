// Package apierror is the one error shape every tandem HTTP endpoint answers
// with: {"error": {"code", "message", "field"}} and the matching status.
//
// Every code a client can see is an entry of errors.json (code, HTTP
// status, description); `go generate ./apierror` renders it into the Code*
// constants of this package, docs/errors.md and the OpenAPI document's
// Error.code enum. A test fails when a code in use is missing from the
// table or a table entry is used nowhere.
//
// The packages below the HTTP layer return their own errors; the API layer
// turns them into the shape. This package imports none of them, so any
// package may use it.
package apierror

//go:generate go run gen.go

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"

)

// Error is an error a client sees.
type Error struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
	// Matches are the resources an ambiguous request could mean (409
	// ambiguous), so the client can pick one.
	Matches    []Match `json:"matches,omitempty"`
	RetryAfter int     `json:"-"` // seconds; sets Retry-After when > 0
}

// Match is one of the resources an ambiguous request could mean: an event,
// by its source and messageId.
type Match struct {
	Source    string `json:"source"`
	MessageID string `json:"messageId"`
}

func (e *Error) Error() string {
	if e.Field != "" {
		return e.Code + ": " + e.Field + ": " + e.Message
	}
	return e.Code + ": " + e.Message
}

// Entry is one code of the table (errors.json).
type Entry struct {
	Code        string
	Status      int
	Description string
	Note        string // why a code that overlaps another is kept
}

// Table returns every code a client can see, sorted by code.
func Table() []Entry { return append([]Entry(nil), table...) }

// Status is the HTTP status of code, or 500 for a code not in the table.
func Status(code string) int {
	for _, e := range table {
		if e.Code == code {
			return e.Status
		}
	}
	return http.StatusInternalServerError
}

// The errors every endpoint may give; handlers build others with [Of],
// [Field] and [New].
var (
	ErrUnauthenticated = &Error{Status: 401, Code: CodeUnauthenticated, Message: "missing or invalid credentials"}
	ErrForbidden       = &Error{Status: 403, Code: CodeForbidden, Message: "your role may not do this"}
	ErrNotFound        = &Error{Status: 404, Code: CodeNotFound, Message: "no such resource"}
	ErrMethod          = &Error{Status: 405, Code: CodeMethodNotAllowed, Message: "method not allowed"}
	ErrTooLarge        = &Error{Status: 413, Code: CodeTooLarge, Message: "request body too large"}
	ErrUnavailable     = &Error{Status: 503, Code: CodeUnavailable, Message: "cannot persist right now; retry later", RetryAfter: 1}
	ErrInternal        = &Error{Status: 500, Code: CodeInternal, Message: "internal error"}
)

// Of returns an error with code, its status from the table.
func Of(code, message string) *Error {
	return &Error{Status: Status(code), Code: code, Message: message}
}

// New returns an error with the given status, code and message.
func New(status int, code, message string) *Error {
	return &Error{Status: status, Code: code, Message: message}
}

// Field returns an error naming the offending field: a 400 unless the
// table gives code another status.
func Field(field, code, message string) *Error {
	st := http.StatusBadRequest
	if s := Status(code); s != http.StatusInternalServerError {
		st = s
	}
	return &Error{Status: st, Code: code, Field: field, Message: message}
}

// From turns an error into the error shape: an *Error (anywhere in the
// chain) as it is; a body over its limit as 413; context deadlines and
// cancellations as 503; anything else as 500 internal, which the caller
// should log (the client learns nothing of the cause). From(nil) is nil.
//
// The packages below the HTTP layer return their own errors and sentinels;
// the API layer maps those by their meaning first (api's errorShape) and
// hands the rest to From, so this package imports none of them.
func From(err error) *Error {
	if err == nil {
		return nil
	}
	var (
		ae  *Error
		mbe *http.MaxBytesError
	)
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.As(err, &mbe):
		return TooLarge(mbe.Limit)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		e := *ErrUnavailable
		return &e
	}
	return Of(CodeInternal, "internal error")
}

// After is err's message after the sentinel's, e.g. "source x is
// pending" from "imports: source not approved: source x is pending"; the
// sentinel's own words, without its package prefix, if nothing follows.
func After(err, sentinel error) string {
	msg, s := err.Error(), sentinel.Error()
	if rest, ok := strings.CutPrefix(msg, s+": "); ok && rest != "" {
		return rest
	}
	if _, bare, ok := strings.Cut(s, ": "); ok {
		return bare
	}
	return s
}

// TooLarge is the 413 for a body over limit bytes; the message says the
// limit.
func TooLarge(limit int64) *Error {
	return Of(CodeTooLarge, "request body over the limit of "+size(limit))
}

func size(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + " MiB"
	case n >= 1<<10 && n%(1<<10) == 0:
		return strconv.FormatInt(n>>10, 10) + " KiB"
	}
	return strconv.FormatInt(n, 10) + " bytes"
}

// Write sends e.
func Write(w http.ResponseWriter, e *Error) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Del("X-Content-Type-Options")
	if e.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	w.WriteHeader(e.Status)
	_ = json.NewEncoder(w).Encode(struct {
		Error *Error `json:"error"`
	}{e})
}
