// Package apierror is the one error shape every tandem HTTP endpoint answers
// with: {"error": {"code", "message", "field"}} and the matching status.
package apierror

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// Error is an error a client sees.
type Error struct {
	Status     int    `json:"-"`
	Code       string `json:"code"`
	Message    string `json:"message"`
	Field      string `json:"field,omitempty"`
	RetryAfter int    `json:"-"` // seconds; sets Retry-After when > 0
}

func (e *Error) Error() string {
	if e.Field != "" {
		return e.Code + ": " + e.Field + ": " + e.Message
	}
	return e.Code + ": " + e.Message
}

// The errors every endpoint may give; handlers build others with [New] and
// [Field]. Codes are stable: clients branch on them.
var (
	ErrUnauthenticated = &Error{Status: 401, Code: "unauthenticated", Message: "missing or invalid credentials"}
	ErrForbidden       = &Error{Status: 403, Code: "forbidden", Message: "your role may not do this"}
	ErrNotFound        = &Error{Status: 404, Code: "not_found", Message: "no such resource"}
	ErrMethod          = &Error{Status: 405, Code: "method_not_allowed", Message: "method not allowed"}
	ErrTooLarge        = &Error{Status: 413, Code: "too_large", Message: "request body too large"}
	ErrUnavailable     = &Error{Status: 503, Code: "unavailable", Message: "cannot persist right now; retry later", RetryAfter: 1}
	ErrInternal        = &Error{Status: 500, Code: "internal", Message: "internal error"}
)

// New returns an error with the given status, code and message.
func New(status int, code, message string) *Error {
	return &Error{Status: status, Code: code, Message: message}
}

// Field returns a 400 naming the offending field.
func Field(field, code, message string) *Error {
	return &Error{Status: http.StatusBadRequest, Code: code, Field: field, Message: message}
}

// Write sends e.
func Write(w http.ResponseWriter, e *Error) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	if e.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	w.WriteHeader(e.Status)
	_ = json.NewEncoder(w).Encode(struct {
		Error *Error `json:"error"`
	}{e})
}
